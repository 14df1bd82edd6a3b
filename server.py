"""The callcue process: settings, models loaded before the port opens, routes. No business logic."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import mimetypes
import socket
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from assist.playbook import PlaybookError
from gateway.api import api_routes, error
from gateway.auth import READ, Authorizer, CallLinks, Denied, allowed_hosts
from gateway.connections import with_header_timeout
from gateway.edge import EdgeMiddleware
from gateway.ingest import check_origin, refuse_unauthorized, serve_native_ingest
from gateway.integrations import make_authenticator, serve_audiohook, serve_twilio
from gateway.limits import RateLimitMiddleware
from gateway.logs import install as redact_logged_secrets
from gateway.screens import serve_call_events
from live.session import Services
from service.node import load_services
from service.settings import SETTINGS, Settings, SettingsError

log = logging.getLogger("callcue")
__version__ = "0.1.0"


LOOPBACK = ("127.0.0.1", "::1", "localhost")
WEB = Path(__file__).resolve().parent / "web"
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
        finals, partials = services.scheduler.depths
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
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


class DrainingServer(uvicorn.Server):
    """uvicorn, plus a graceful stop on SIGTERM/SIGINT: stop accepting, end every call in
    progress (its last finals, then `call.ended`, stored), then close what is left. The
    process then exits 0 (uvicorn would re-raise the signal and skip the store's close)."""

    def __init__(self, config: uvicorn.Config, services: Services, timeout: float) -> None:
        super().__init__(config)
        self.services = services
        self.drain_timeout = timeout

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for listener in self.servers:
            listener.close()  # no new connections from here on
        calls = len(self.services.sessions)
        if calls:
            log.info(
                "stopping: ending %d call(s) in progress (up to %.0fs)", calls, self.drain_timeout
            )
        left = await self.services.drain(self.drain_timeout, lambda: self.force_exit)
        if left:
            log.warning("stopping: %d call(s) did not finish in time", left)
        if self.services.cluster is not None:
            await self.services.cluster.stop()  # the events of the calls just ended go out
        await super().shutdown(sockets)


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


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        parser.add_argument(
            f"--{setting.name.replace('_', '-')}",
            dest=setting.name,
            default=None,
            help=f"{setting.help} (env {setting.env}, default {setting.default!r})",
        )


def serve(settings: Settings) -> int:
    # Threads hand the GIL over every 1 ms instead of 5: the assist encoder's thread takes it
    # back several times per utterance (tokenizer, two onnxruntime runs, numpy) and each
    # wait behind the event loop or a decode worker's Python cost up to the whole interval
    # (a 37-word utterance: 26 ms alone, 51 ms beside a busy Python thread at 5 ms, 29 ms at 1)
    sys.setswitchinterval(0.001)
    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.info(
        "loading models (partials %s, finals %s, %s/%s)...",
        settings.model,
        settings.final_model,
        settings.device,
        settings.compute_type,
    )
    if not settings.token_roles and settings.host not in LOOPBACK:
        log.warning(
            "no access token is configured (CALLCUE_ADMIN_TOKEN / CALLCUE_TOKENS): binding to "
            "127.0.0.1 instead of %s; set a token to serve other machines",
            settings.host,
        )
        settings = dataclasses.replace(settings, host="127.0.0.1")
    elif not settings.token_roles:
        log.info("no access token configured: REST and screens are open on loopback only")
    try:
        services = load_services(settings, cluster=True, webhooks=True)
    except (PlaybookError, ValueError, RuntimeError) as exc:
        print(f"callcue: cannot start: {exc}", file=sys.stderr)
        return 2
    if services.store is not None:
        log.info("call store: %s", services.store.describe())
    log.info(
        "Whisper loaded in %.1fs, warmed up in %.1fs",
        services.engine.load_seconds,
        services.warmup_seconds,
    )
    app = build_app(services, settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        ws="websockets-sansio",
        # Frames up to 4x the limit still reach the protocol, which answers them with a clear
        # `frame_too_large` error; beyond that the websocket layer closes with 1009 by itself.
        ws_max_size=settings.max_frame_bytes * 4 + 65_536,
        ws_per_message_deflate=False,
        lifespan="off",
        log_level=settings.log_level,
        access_log=False,
        ssl_certfile=settings.tls_certfile or None,
        ssl_keyfile=settings.tls_keyfile or None,
        timeout_graceful_shutdown=5,
        http=with_header_timeout(float(settings.header_timeout)),
        limit_concurrency=settings.max_connections or None,
    )
    redact_logged_secrets()  # after uvicorn.Config: it (re)configures its loggers
    server = DrainingServer(config, services, settings.shutdown_timeout)
    http, ws = ("https", "wss") if settings.tls_certfile else ("http", "ws")

    async def announce() -> None:
        # printed once the socket is bound so scripts can wait for this line
        import asyncio

        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.05)
        for sock in server.servers[0].sockets if server.servers else []:
            host, port = sock.getsockname()[:2]
            base = f"{http}://{host}:{port}"
            print(
                f"callcue ready on {base}\n"
                f"  start a test call:      {base}/  (opens its agent screen)\n"
                f"  agent screen of a call: {base}/agent/CALL_ID\n"
                f"  supervisor wallboard:   {base}/supervisor\n"
                f"  QA review:              {base}/qa\n"
                f"  ingest:                 {ws}://{host}:{port}/v1/ingest  "
                f"(AudioHook /v1/audiohook, Twilio /v1/twilio)",
                flush=True,
            )
            break

    async def retention() -> None:
        import asyncio

        while settings.retention_days and services.store is not None:
            try:
                await asyncio.to_thread(services.store.purge, settings.retention_days)
            except Exception:
                log.exception("retention purge failed")
            await asyncio.sleep(3600)

    async def run() -> None:
        import asyncio

        if services.cluster is not None:
            try:
                await services.cluster.start()
            except Exception as exc:
                raise SystemExit(f"callcue: cannot start: Redis: {exc}") from None
        task = asyncio.create_task(announce())
        purge = asyncio.create_task(retention())
        idle = asyncio.create_task(services.watch_idle())
        await server.serve()
        task.cancel()
        purge.cancel()
        idle.cancel()

    import asyncio

    try:
        asyncio.run(run())
    finally:
        services.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="callcue serve", description="Run the callcue server.")
    add_setting_flags(parser)
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(overrides={k: v for k, v in vars(args).items() if v is not None})
    except SettingsError as exc:
        print(f"callcue: bad setting: {exc}", file=sys.stderr)
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
