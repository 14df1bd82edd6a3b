"""The callcue process: flags → settings → the node (models loaded, store opened before the port
opens) → the app (`gateway.app`) → uvicorn, with a graceful drain on SIGTERM. No business logic."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import socket
import sys
from types import FrameType

import uvicorn

from assist.playbook import PlaybookError
from gateway.app import VERSION, build_app
from gateway.connections import with_header_timeout
from gateway.logs import install as redact_logged_secrets
from live.session import Services
from service.node import load_services
from service.settings import SETTINGS, Settings, SettingsError

log = logging.getLogger("callcue")
__version__ = VERSION


LOOPBACK = ("127.0.0.1", "::1", "localhost")


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


def add_setting_flags(parser: argparse.ArgumentParser) -> None:
    groups: dict[str, argparse._ArgumentGroup] = {}
    for setting in SETTINGS:
        if setting.group not in groups:
            groups[setting.group] = parser.add_argument_group(f"{setting.group} settings")
        groups[setting.group].add_argument(
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
        services.recognition.engine.load_seconds,
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
