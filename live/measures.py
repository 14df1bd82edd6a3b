"""What each shared object of a node exports to `/metrics`: one function per object, called
once when the node is wired (`Services`). The values are read when `/metrics` is scraped."""

from __future__ import annotations

from collections.abc import Callable

from live.diarize import Speakers
from live.metrics import Metrics
from live.webhooks import WebhookSender
from models.revise import Reviser
from models.scheduler import RecognitionScheduler
from models.whisper import WhisperEngine
from store.calls import StoreWriter


def measure_scheduler(m: Metrics, scheduler: RecognitionScheduler) -> None:
    """Its queue, its pressure, and the work it had to let go."""
    stats = scheduler.stats
    m.labelled_gauge(
        "callcue_queue_depth",
        "Recognition jobs waiting",
        ("kind",),
        lambda: [(("final",), scheduler.depths[0]), (("partial",), scheduler.depths[1])],
    )
    m.gauge("callcue_scheduler_pressure", "0 idle, 1 busy, 2 overloaded", scheduler.pressure)
    m.labelled_gauge(
        "callcue_finals_overdue_total",
        "Finals that waited in the queue past their budget",
        (),
        lambda: [((), stats.finals_overdue)],
        kind="counter",
    )
    m.labelled_gauge(
        "callcue_finals_cheaper_total",
        "Finals decoded a cheaper way to meet CALLCUE_FINAL_DEADLINE_MS",
        ("way",),
        lambda: [((way,), n) for way, n in stats.finals_cheaper.items()],
        kind="counter",
    )
    m.labelled_gauge(
        "callcue_partials_dropped_total",
        "Partials not decoded: superseded while queued, or skipped under load",
        ("reason",),
        lambda: [
            (("superseded",), stats.partials_dropped),
            (("load",), stats.partials_skipped),
        ],
        kind="counter",
    )


def measure_engines(
    m: Metrics, engines: list[WhisperEngine], audio_seconds: Callable[[], float]
) -> None:
    """The Whisper models' time per second of call audio (`audio_seconds`: received so far,
    all channels), and their recoveries."""
    m.gauge(
        "callcue_real_time_factor",
        "Whisper decode seconds per second of call audio received (all channels)",
        lambda: sum(e.stats.busy_seconds for e in engines) / max(audio_seconds(), 1e-9),
    )
    m.labelled_gauge(
        "callcue_prompt_echoes_total",
        "Decodes that repeated the channel's previous words and were done again without them",
        (),
        lambda: [((), sum(e.stats.prompt_echoes for e in engines))],
        kind="counter",
    )
    m.labelled_gauge(
        "callcue_prompt_loops_total",
        "Finals that looped on a few words after the channel's previous words and were done "
        "again without them",
        (),
        lambda: [((), sum(e.stats.prompt_loops for e in engines))],
        kind="counter",
    )
    m.labelled_gauge(
        "callcue_finals_continued_total",
        "Finals that stopped more than 1 s before their audio and had the rest decoded",
        (),
        lambda: [((), sum(e.stats.tails_recovered for e in engines))],
        kind="counter",
    )


def measure_writer(m: Metrics, writer: StoreWriter | None) -> None:
    """The store's writer: what waits for the store, what it lost, what failed (0 without a
    store, so that dashboards see the series either way)."""
    m.gauge(
        "callcue_store_buffered_events",
        "Events waiting in memory for the store to come back",
        lambda: len(writer.pending) if writer is not None else 0,
    )
    m.labelled_gauge(
        "callcue_store_dropped_total",
        "Events the store could not keep: an outage outlasted CALLCUE_STORE_BUFFER",
        (),
        lambda: [((), writer.dropped if writer is not None else 0)],
        kind="counter",
    )
    m.labelled_gauge(
        "callcue_store_errors_total",
        "Store writes that failed (the events are kept in memory and retried)",
        (),
        lambda: [((), writer.failures if writer is not None else 0)],
        kind="counter",
    )


def measure_reviser(m: Metrics, reviser: Reviser) -> None:
    """Revision: stretches done, skipped and failed, what waits, finals it changed."""
    stats = reviser.stats
    m.labelled_gauge(
        "callcue_revisions_total",
        "Stretches of channel audio revised by the accurate model (skipped: too many "
        "waited; failed: the decode raised)",
        ("outcome",),
        lambda: [
            (("done",), stats.done),
            (("skipped",), stats.skipped),
            (("failed",), stats.failed),
        ],
        kind="counter",
    )
    m.gauge(
        "callcue_revision_backlog_seconds",
        "Seconds of call audio waiting for revision",
        lambda: stats.pending_seconds,
    )
    m.labelled_gauge(
        "callcue_finals_revised_total",
        "Finals whose text a revision changed (transcript.revised sent)",
        (),
        lambda: [((), stats.changed)],
        kind="counter",
    )


def measure_speakers(m: Metrics, speakers: Speakers) -> None:
    """Diarization: the CPU its voice prints took."""
    m.labelled_gauge(
        "callcue_diarization_cpu_seconds_total",
        "CPU seconds spent on voice prints for diarized (one-channel) calls",
        (),
        lambda: [((), round(speakers.cpu_seconds, 3))],
        kind="counter",
    )


def measure_webhooks(m: Metrics, sender: WebhookSender) -> None:
    m.labelled_gauge(
        "callcue_webhook_deliveries_total",
        "Webhook delivery attempts by outcome (delivered, retried, failed: given up)",
        ("outcome",),
        lambda: [((k,), v) for k, v in sorted(sender.counts.items())],
        kind="counter",
    )
