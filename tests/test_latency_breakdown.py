"""The latency benchmark's server-side breakdown reads the histograms the server exports."""

from __future__ import annotations

from benchmarks.latency import breakdown, parse_figures
from live.metrics import Metrics


def test_breakdown_is_the_mean_of_what_was_observed_between_two_scrapes() -> None:
    metrics = Metrics()
    metrics.decode.observe(0.5, "final")
    before = parse_figures(metrics.render())
    for seconds in (0.2, 0.4):
        metrics.decode.observe(seconds, "final")
    metrics.decode.observe(0.1, "partial")
    metrics.latency.observe(0.9, "final")
    after = parse_figures(metrics.render())
    figures = breakdown(before, after)
    assert figures["decode_final"] == {"mean_s": 0.3, "n": 2}
    assert figures["decode_partial"] == {"mean_s": 0.1, "n": 1}
    assert figures["latency_final"] == {"mean_s": 0.9, "n": 1}
    assert "latency_partial" not in figures  # nothing observed: left out, not 0


def test_breakdown_counts_the_finals_decoded_cheaper_between_two_scrapes() -> None:
    from live.measures import measure_scheduler
    from models.scheduler import RecognitionScheduler

    metrics = Metrics()
    scheduler = RecognitionScheduler(engine=object())  # type: ignore[arg-type]  # never started
    measure_scheduler(metrics, scheduler)
    cheaper = scheduler.stats.finals_cheaper
    cheaper["greedy"] = 2
    before = parse_figures(metrics.render())
    cheaper["greedy"], cheaper["partials_model"] = 5, 1
    figures = breakdown(before, parse_figures(metrics.render()))
    assert figures["finals_greedy"] == 3 and figures["finals_partials_model"] == 1
