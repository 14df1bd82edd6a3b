"""The Starlette app: pages, static files, health, metrics, live calls, the REST API and the
three ingest endpoints plus the screens' event streams, behind the edge and rate-limit
middleware. `server.py` runs it under uvicorn."""

from __future__ import annotations

import mimetypes
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from gateway.api import api_routes, error
from gateway.auth import READ, Authorizer, CallLinks, Denied, allowed_hosts
from gateway.edge import EdgeMiddleware
from gateway.ingest import check_origin, refuse_unauthorized, serve_native_ingest
from gateway.integrations import make_authenticator, serve_audiohook, serve_twilio
from gateway.limits import RateLimitMiddleware
from gateway.screens import serve_call_events
from live.session import Services
from service.settings import Settings

VERSION = "0.1.0"
WEB = Path(__file__).resolve().parent.parent / "web"
# The pages are ES modules, which a browser runs only when served as JavaScript (nosniff forbids
# guessing): .js is that whatever the host's mime.types (or Windows registry) says.
mimetypes.add_type("text/javascript", ".js")


def build_app(services: Services, settings: Settings) -> Starlette:
    authorizer = Authorizer(
        settings.token_roles,
        settings.ingest_key_names,
        CallLinks(settings.link_secret, settings.link_ttl),
    )

    async def healthz(request: Request) -> JSONResponse:
        finals, partials = services.recognition.scheduler.depths
        return JSONResponse(
            {
                "status": "ok",
                "version": VERSION,
                # names as configured, not paths on this machine
                "model": settings.model,
                "final_model": settings.final_model,
                "device": settings.device,
                "compute_type": settings.compute_type,
                "active_calls": len(services.sessions),
                "queue": {"finals": finals, "partials": partials},
                "store": store_health(services),
                **({"cluster": services.cluster.health()} if services.cluster else {}),
            }
        )

    async def metrics(request: Request) -> PlainTextResponse:
        return PlainTextResponse(
            services.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
        )

    async def live_calls(request: Request) -> JSONResponse:
        try:
            authorizer.check(request.headers, request.query_params, READ, "list live calls")
        except Denied as denied:
            return error(denied.status, denied.code, denied.message)
        calls = [session.live_summary() for session in list(services.sessions.values())]
        if services.cluster is None:
            return JSONResponse({"calls": calls})
        everywhere = await services.cluster.live_calls()
        if everywhere is None:  # Redis is away: this node's calls, and say so
            node = services.cluster.node
            rows = [{**call, "node": node} for call in calls]
            return JSONResponse({"calls": rows, "cluster": "unreachable"})
        return JSONResponse({"calls": everywhere})

    def page(name: str) -> Callable[[Request], Awaitable[FileResponse]]:
        async def serve(request: Request) -> FileResponse:
            return FileResponse(WEB / name, media_type="text/html; charset=utf-8")

        return serve

    async def ingest(ws: WebSocket) -> None:
        await serve_native_ingest(ws, services, settings, authorizer)

    auth = make_authenticator(settings)

    async def audiohook(ws: WebSocket) -> None:
        await serve_audiohook(ws, services, settings, auth)

    async def twilio(ws: WebSocket) -> None:
        await serve_twilio(ws, services, settings)

    async def events(ws: WebSocket) -> None:
        call_id = ws.path_params["call_id"]
        try:
            if (denied := check_origin(ws, settings)) is not None:
                raise denied
            authorizer.check(ws.headers, ws.query_params, READ, "watch calls", call_id=call_id)
        except Denied as denied:
            services.metrics.auth_failures.inc(1, "events")
            await refuse_unauthorized(ws, denied)
            return
        await serve_call_events(ws, services, call_id)

    return Starlette(
        middleware=[
            Middleware(
                EdgeMiddleware,
                hosts=allowed_hosts(settings.allowed_hosts, bool(settings.token_roles)),
                origins=settings.origins,
                metrics=services.metrics,
            ),
            Middleware(
                RateLimitMiddleware,
                per_minute=settings.rate_limit,
                metrics=services.metrics,
                known=authorizer.known,
            ),
        ],
        routes=[
            Route("/", page("index.html")),
            Route("/agent/{call_id}", page("agent.html")),
            Route("/supervisor", page("supervisor.html")),
            Route("/qa", page("qa.html")),
            Route("/qa/agents", page("qa-agents.html")),  # (before /qa/{call_id})
            Route("/qa/{call_id}", page("qa-call.html")),
            Mount("/static", StaticFiles(directory=WEB), name="static"),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/v1/calls/live", live_calls),
            *(
                api_routes(
                    services.store,
                    authorizer,
                    lambda cid: cid in services.sessions,
                    lambda cid: cid in services.revising,
                )
                if services.store is not None
                else []
            ),
            WebSocketRoute("/v1/ingest", ingest),
            WebSocketRoute("/v1/audiohook", audiohook),
            WebSocketRoute("/v1/twilio", twilio),
            WebSocketRoute("/v1/calls/{call_id}/events", events),
        ],
    )


def store_health(services: Services) -> dict[str, object]:
    writer = services.writer
    if writer is None:
        return {"status": "off"}
    return {
        "status": "unreachable" if writer.unreachable else "ok",
        "buffered": len(writer.pending),
        "dropped": writer.dropped,
        "last_error": writer.last_error if writer.failing else "",
    }
