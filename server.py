"""The callcue process: settings, models loaded before the port opens, routes. No business logic."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket

from assist.api import api_routes, error
from assist.auth import READ, Authorizer, Denied
from assist.ingest import serve_native_ingest
from assist.integrations import make_authenticator, serve_audiohook, serve_twilio
from assist.playbook import PlaybookError
from assist.screens import serve_call_events
from assist.session import Services
from assist.settings import SETTINGS, Settings, SettingsError

log = logging.getLogger("callcue")
__version__ = "0.1.0"


LOOPBACK = ("127.0.0.1", "::1", "localhost")
WEB = Path(__file__).resolve().parent / "web"


def build_app(services: Services, settings: Settings) -> Starlette:
    authorizer = Authorizer(settings.token_roles)

    async def healthz(request: Request) -> JSONResponse:
        finals, partials = services.scheduler.depths
        return JSONResponse(
            {
                "status": "ok",
                "version": __version__,
                "model": services.engine.model_path,
                "device": settings.device,
                "compute_type": settings.compute_type,
                "active_calls": len(services.sessions),
                "queue": {"finals": finals, "partials": partials},
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
        return JSONResponse({"calls": calls})

    def page(name: str) -> Callable[[Request], Awaitable[FileResponse]]:
        async def serve(request: Request) -> FileResponse:
            return FileResponse(WEB / name, media_type="text/html; charset=utf-8")

        return serve

    async def ingest(ws: WebSocket) -> None:
        await serve_native_ingest(ws, services, settings.max_frame_bytes)

    auth = make_authenticator(settings)

    async def audiohook(ws: WebSocket) -> None:
        await serve_audiohook(ws, services, settings, auth)

    async def twilio(ws: WebSocket) -> None:
        await serve_twilio(ws, services, settings)

    async def events(ws: WebSocket) -> None:
        try:
            authorizer.check(ws.headers, ws.query_params, READ, "watch calls")
        except Denied as denied:
            # accepted, then closed with a reason a browser can read (a refused handshake
            # shows only "1006")
            await ws.accept()
            await ws.send_json({"type": "error", "code": denied.code, "message": denied.message})
            await ws.close(4401 if denied.status == 401 else 4403, denied.code)
            return
        await serve_call_events(ws, services, ws.path_params["call_id"])

    return Starlette(
        routes=[
            Route("/", page("index.html")),
            Route("/agent/{call_id}", page("agent.html")),
            Route("/supervisor", page("supervisor.html")),
            Route("/qa", page("qa.html")),
            Route("/qa/{call_id}", page("qa-call.html")),
            Mount("/static", StaticFiles(directory=WEB), name="static"),
            Route("/healthz", healthz),
            Route("/metrics", metrics),
            Route("/v1/calls/live", live_calls),
            *(
                api_routes(services.store, authorizer, lambda cid: cid in services.sessions)
                if services.store is not None
                else []
            ),
            WebSocketRoute("/v1/ingest", ingest),
            WebSocketRoute("/v1/audiohook", audiohook),
            WebSocketRoute("/v1/twilio", twilio),
            WebSocketRoute("/v1/calls/{call_id}/events", events),
        ]
    )


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for setting in SETTINGS:
        parser.add_argument(
            f"--{setting.name.replace('_', '-')}",
            dest=setting.name,
            default=None,
            help=f"{setting.help} (env {setting.env}, default {setting.default!r})",
        )


def serve(settings: Settings) -> int:
    import uvicorn

    logging.basicConfig(
        level=settings.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    log.info(
        "loading models (%s, %s/%s)...", settings.model, settings.device, settings.compute_type
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
        services = Services.load(settings)
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
    )
    server = uvicorn.Server(config)

    async def announce() -> None:
        # printed once the socket is bound so scripts can wait for this line
        import asyncio

        while not server.started:  # noqa: ASYNC110 - uvicorn offers a flag, not an event
            await asyncio.sleep(0.05)
        for sock in server.servers[0].sockets if server.servers else []:
            host, port = sock.getsockname()[:2]
            base = f"http://{host}:{port}"
            print(
                f"callcue ready on {base}\n"
                f"  start a test call:      {base}/  (opens its agent screen)\n"
                f"  agent screen of a call: {base}/agent/CALL_ID\n"
                f"  supervisor wallboard:   {base}/supervisor\n"
                f"  QA review:              {base}/qa\n"
                f"  ingest:                 ws://{host}:{port}/v1/ingest  "
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

        task = asyncio.create_task(announce())
        purge = asyncio.create_task(retention())
        await server.serve()
        task.cancel()
        purge.cancel()

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
