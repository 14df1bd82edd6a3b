"""Prometheus metrics without a dependency: counters, gauges and histograms, text format 0.0.4."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable

LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32)


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = ",".join(f'{n}="{v}"' for n, v in zip(names, values, strict=True))
    return "{" + pairs + "}"


class _Metric:
    kind = "untyped"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        self.name, self.help, self.label_names = name, help, labels
        self._lock = threading.Lock()

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def render(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {} if labels else {(): 0.0}

    def inc(self, amount: float = 1.0, *labels: str) -> None:
        with self._lock:
            self._values[labels] = self._values.get(labels, 0.0) + amount

    def value(self, *labels: str) -> float:
        return self._values.get(labels, 0.0)

    def render(self) -> list[str]:
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {v:g}"
            for k, v in sorted(self._values.items())
        ]


class Gauge(_Metric):
    """A gauge read from a callback at scrape time (label values → number)."""

    kind = "gauge"

    def __init__(
        self,
        name: str,
        help: str,
        read: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
        labels: tuple[str, ...] = (),
        kind: str = "gauge",
    ) -> None:
        super().__init__(name, help, labels)
        self.read = read
        self.kind = kind  # "counter" for totals kept elsewhere and read at scrape time

    def render(self) -> list[str]:
        return self.header() + [
            f"{self.name}{_labels(self.label_names, k)} {v:g}" for k, v in self.read()
        ]


class Histogram(_Metric):
    kind = "histogram"

    def __init__(
        self,
        name: str,
        help: str,
        buckets: tuple[float, ...] = LATENCY_BUCKETS,
        labels: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, help, labels)
        self.buckets = buckets
        self._data: dict[tuple[str, ...], tuple[list[int], float, int]] = {}

    def observe(self, value: float, *labels: str) -> None:
        with self._lock:
            counts, total, n = self._data.get(labels, ([0] * len(self.buckets), 0.0, 0))
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    counts[i] += 1
            self._data[labels] = (counts, total + value, n + 1)

    def count(self, *labels: str) -> int:
        return self._data.get(labels, ([], 0.0, 0))[2]

    def render(self) -> list[str]:
        lines = self.header()
        for key, (counts, total, n) in sorted(self._data.items()):
            for bound, c in zip(self.buckets, counts, strict=True):
                le = _labels((*self.label_names, "le"), (*key, f"{bound:g}"))
                lines.append(f"{self.name}_bucket{le} {c}")
            inf = _labels((*self.label_names, "le"), (*key, "+Inf"))
            lines.append(f"{self.name}_bucket{inf} {n}")
            lines.append(f"{self.name}_sum{_labels(self.label_names, key)} {total:.6g}")
            lines.append(f"{self.name}_count{_labels(self.label_names, key)} {n}")
        return lines


class Metrics:
    """Every metric callcue exports; gauges are bound to live objects by `bind_gauges`."""

    def __init__(self) -> None:
        self.calls = Counter("callcue_calls_total", "Calls started", ("source",))
        self.refused = Counter("callcue_calls_refused_total", "Calls refused", ("reason",))
        self.latency = Histogram(
            "callcue_latency_seconds",
            "Server-side latency: audio received to partial/final emitted (stage=partial|final); "
            "final published to its assist events published (stage=assist)",
            labels=("stage",),
        )
        self.decode = Histogram(
            "callcue_decode_seconds", "Wall time of one Whisper decode", labels=("kind",)
        )
        self.batch = Histogram(
            "callcue_model_batch_size",
            "Channels decoded in one model call (kind=final|partial); utterances encoded in one "
            "assist batch (kind=assist)",
            BATCH_BUCKETS,
            labels=("kind",),
        )
        self.assist_errors = Counter(
            "callcue_assist_errors_total", "Assist batches that failed (their calls go on)"
        )
        self.feedback = Counter(
            "callcue_feedback_total", "Feedback from screens", ("kind", "action")
        )
        self.recognition_errors = Counter(
            "callcue_recognition_errors_total",
            "Utterances Whisper failed to decode (an error event is sent; the call goes on)",
            ("kind",),
        )
        self.limited = Counter(
            "callcue_limit_rejections_total",
            "Requests, messages or calls stopped by a limit",
            ("limit",),
        )
        self.auth_failures = Counter(
            "callcue_auth_failures_total",
            "Connections and requests refused for missing or bad credentials or origin",
            ("endpoint",),
        )
        self.gauges: list[Gauge] = []

    def gauge(self, name: str, help: str, read: Callable[[], float]) -> None:
        self.gauges.append(Gauge(name, help, lambda: [((), read())]))

    def labelled_gauge(
        self,
        name: str,
        help: str,
        labels: tuple[str, ...],
        read: Callable[[], Iterable[tuple[tuple[str, ...], float]]],
        kind: str = "gauge",
    ) -> None:
        self.gauges.append(Gauge(name, help, read, labels, kind))

    def render(self) -> str:
        lines: list[str] = []
        for metric in (
            self.calls,
            self.refused,
            self.latency,
            self.decode,
            self.batch,
            self.assist_errors,
            self.feedback,
            self.recognition_errors,
            self.limited,
            self.auth_failures,
            *self.gauges,
        ):
            lines += metric.render()
        return "\n".join(lines) + "\n"


def finite(value: float) -> float:
    return value if math.isfinite(value) else 0.0
