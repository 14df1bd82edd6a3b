"""The node: everything a callcue process loads before its port opens, wired together."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from assist.engine import AssistModels
from cluster.node import Cluster, ClusterOptions
from live.diarize import Speakers
from live.hub import EventHub
from live.metrics import Metrics
from live.recognition import Recognition
from live.session import CallLimits, Services
from live.webhooks import WebhookSender, parse_webhooks, shown
from models.remote import RemoteScheduler
from models.revise import Reviser, RevisionOptions
from models.scheduler import RecognitionScheduler
from models.vad import SileroVad
from models.whisper import WhisperEngine
from service.settings import Settings
from store.calls import CallStore, StoreWriter

log = logging.getLogger("callcue.node")


def cluster_options(settings: Settings) -> ClusterOptions:
    """The CALLCUE_REDIS_* and CALLCUE_NODE_* settings for `cluster.node`."""
    return ClusterOptions(
        url=settings.redis_url,
        prefix=settings.redis_prefix,
        node_id=settings.node_id,
        node_timeout=settings.node_timeout,
        stream_ttl=settings.redis_stream_ttl,
        buffer=settings.redis_buffer,
    )


M_ARENA_MAX = -8  # glibc's mallopt parameter


def limit_malloc_arenas(arenas: int) -> None:
    """Let glibc's malloc use at most `arenas` arenas (0, or MALLOC_ARENA_MAX in the
    environment: leave it be). By default every thread that allocates may get an arena of its
    own (up to 8 a core), each keeping memory it freed; Whisper's, onnxruntime's and the
    store's threads would hold about 100 MiB that way. Set before the models load (threads
    started later share the arenas there are); a no-op where malloc is not glibc's."""
    if arenas <= 0 or "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, arenas)
    except (OSError, AttributeError):  # not glibc
        log.debug("malloc arenas not limited: not glibc")


def load_services(
    settings: Settings,
    *,
    warmup: bool = True,
    store: bool = True,
    recover: bool = True,
    cluster: bool = False,
    webhooks: bool = False,
    live: bool = True,
) -> Services:
    """Load and warm every model and open the store (blocking: before the port opens).
    `recover`: mark calls a dead server left in progress as interrupted (the server only).
    `cluster`: join the other nodes on CALLCUE_REDIS_URL when it is set (the server only).
    `webhooks`: send the CALLCUE_WEBHOOKS deliveries (the server; any process that writes
    calls, such as an import, stores the deliveries for the server to send). `live`: calls
    arrive as they are spoken, so finals keep CALLCUE_FINAL_DEADLINE_MS; recordings
    (transcribe, import) have every final decoded at full beam by the finals' model."""
    limit_malloc_arenas(settings.malloc_arenas)
    metrics = Metrics()
    node = None
    if cluster and settings.redis_url:
        if store and not settings.database_url.startswith(("postgresql:", "postgres:")):
            raise ValueError(
                "CALLCUE_REDIS_URL makes this node one of several: they need one store "
                "they all share; set CALLCUE_DATABASE_URL to postgresql://..."
            )
        version = Cluster.check(settings.redis_url)
        log.info("Redis %s reachable; node of a multi-node service", version)
        node = Cluster(cluster_options(settings), metrics, backlog=settings.events_backlog)
        # (checked before the models load: a wrong URL fails in a second)
        # calls other nodes are running are in progress too: failed nodes' calls are
        # found through the registry instead (Cluster._reap)
        recover = False
    engine = WhisperEngine(settings.whisper)
    final_engine = WhisperEngine(settings.final_whisper) if settings.two_pass else engine
    remote = settings.recognition == "remote"
    warm = 0.0
    if warmup and not remote:
        if final_engine is engine:
            warm = engine.warmup()
        else:  # each engine warms only the windows it decodes in
            warm = engine.warmup(finals=False) + final_engine.warmup(partials=False)
    assist = None
    if settings.assist:
        assist = AssistModels.load(
            playbook_path=settings.playbook_path,
            customers_path=settings.customers_path,
            options=settings.assist_options,
        )
    call_store = CallStore(settings.database_url, recover=recover) if store else None
    hooks = parse_webhooks(settings.webhooks)
    if hooks and call_store is None:
        raise ValueError("CALLCUE_WEBHOOKS needs the call store: its deliveries are kept there")
    sender = None
    if hooks and call_store is not None:
        call_store.webhooks = {h.url: h.events for h in hooks}  # before the writer starts
        if webhooks:
            sender = WebhookSender(call_store, hooks, retry_seconds=settings.webhook_retry_seconds)
    scheduler: RecognitionScheduler
    if remote:  # decodes on `callcue worker` processes; the engine gives the tokenizer
        scheduler = RemoteScheduler(
            engine,
            settings.redis_url,
            prefix=settings.redis_prefix,
            node=node.node if node is not None else settings.node_id,
            final_engine=final_engine,
            final_deadline=settings.final_deadline_ms / 1000 if live else 0.0,
        )
    else:
        scheduler = RecognitionScheduler(
            engine,
            workers=engine.options.workers,
            max_batch=settings.asr_batch,
            final_engine=final_engine,
            final_deadline=settings.final_deadline_ms / 1000 if live else 0.0,
        )
    scheduler.start()
    reviser = None
    if settings.revise and not remote:
        reviser = Reviser(
            settings.final_whisper,
            RevisionOptions(seconds=float(settings.revise_seconds), beam_size=settings.beam_size),
        )
        if warmup:  # a server (not the CLI, which may never revise): load it before calls
            reviser.preload()
    hub = node.hub if node else EventHub(backlog=settings.events_backlog)
    # with a store, a call's oldest events (once written) are read back from it, not kept
    hub.keep_events = settings.events_kept if call_store else 0
    services = Services(
        recognition=Recognition(
            engine=engine,
            scheduler=scheduler,
            vad_model=SileroVad(),
            vad_options=settings.vad,
            streaming=settings.streaming,
            executor=ThreadPoolExecutor(
                max_workers=min(8, (os.cpu_count() or 2)), thread_name_prefix="callcue-vad"
            ),
            reviser=reviser,
        ),
        hub=hub,
        limits=CallLimits(
            max_calls=settings.max_calls,
            max_calls_per_key=settings.max_calls_per_key,
            max_call_seconds=float(settings.max_call_seconds),
            resume_seconds=float(settings.resume_seconds),
            idle_seconds=float(settings.idle_seconds),
        ),
        speakers=Speakers(default=settings.diarize, keep_prints=settings.voice_prints),
        metrics=metrics,
        cluster=node,
        store=call_store,
        writer=StoreWriter(call_store, settings.store_buffer) if call_store else None,
        recordings_dir=Path(settings.recordings_dir).expanduser()
        if store and settings.record_audio
        else None,
        assist=assist,
        warmup_seconds=warm,
        webhooks=sender,
    )
    if sender is not None:
        sender.start()
        log.info("webhooks: %d receivers (%s)", len(hooks), ", ".join(shown(h.url) for h in hooks))
    if node is not None:  # the cluster hands calls to this node's sessions
        node.attach(services.store, services.sessions)
    return services
