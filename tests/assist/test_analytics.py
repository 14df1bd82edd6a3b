"""Call analytics on timelines whose answers are worked out by hand."""

from __future__ import annotations

import pytest

from assist.analytics import CallAnalytics, utterance_spans


def words(*spans: tuple[float, float]) -> list[dict[str, float]]:
    return [{"start": s, "end": e} for s, e in spans]


def two_party() -> CallAnalytics:
    """agent 0-4, customer 5-10 (agent "mm-hmm" 7-7.4 inside), agent 9.5-12 (cuts in),
    customer 15-16, agent 18-20; the call lasts 22 s."""
    calls = CallAnalytics(("customer", "agent"))
    calls.add_final("agent", 1, 0.0, 4.0, words((0.0, 1.0), (1.2, 2.0), (2.1, 4.0)), "a b c")
    calls.add_final("customer", 1, 5.0, 10.0, words((5.0, 7.0), (7.2, 10.0)), "d e")
    calls.add_final("agent", 2, 7.0, 7.4, words((7.0, 7.4)), "mm-hmm")
    calls.add_final("agent", 3, 9.5, 12.0, words((9.5, 12.0)), "f")
    calls.add_final("customer", 2, 15.0, 16.0, words((15.0, 16.0)), "g")
    calls.add_final("agent", 4, 18.0, 20.0, words((18.0, 20.0)), "h")
    return calls


def test_talk_silence_overtalk_of_a_two_party_call() -> None:
    figures = two_party().summary(22.0)
    assert figures["duration_seconds"] == 22.0
    assert figures["talk_seconds"] == {"customer": 6.0, "agent": 8.9}
    # nobody talks 4-5, 12-15, 16-18, 20-22
    assert figures["silence_seconds"] == 8.0
    assert figures["longest_silence_seconds"] == 3.0
    # both talk 7-7.4 (the "mm-hmm") and 9.5-10
    assert figures["overtalk_seconds"] == pytest.approx(0.9)
    # the agent cut in at 9.5 with 0.5 s of overlap; the 0.4 s "mm-hmm" is overtalk only
    assert figures["interruptions"] == {"customer": 0, "agent": 1}


def test_agent_response_after_each_customer_turn() -> None:
    response = two_party().summary(22.0)["agent_response_seconds"]
    # customer ends at 10 -> agent already talking since 9.5: 0; ends at 16 -> agent at 18: 2
    assert response == {"p50": 1.0, "max": 2.0, "count": 2}


def test_pace_counts_words_over_talk_time() -> None:
    figures = two_party().summary(22.0)
    assert figures["words_per_minute"]["customer"] == pytest.approx(3 / 6.0 * 60, abs=0.1)
    assert figures["words_per_minute"]["agent"] == pytest.approx(6 / 8.9 * 60, abs=0.1)


def test_a_one_channel_call_has_no_overtalk_and_no_response_time() -> None:
    calls = CallAnalytics(("caller",))
    calls.add_final("caller", 1, 1.0, 3.0, words((1.0, 3.0)), "x")
    calls.add_final("caller", 2, 2.5, 5.0, words((2.5, 5.0)), "y")  # overlaps its own speech
    figures = calls.summary(6.0)
    assert figures["overtalk_seconds"] == 0.0
    assert figures["interruptions"] == {"caller": 0}
    assert figures["agent_response_seconds"] is None
    assert figures["talk_seconds"] == {"caller": 4.0}
    assert figures["silence_seconds"] == 2.0


def test_a_revision_replaces_the_final_it_revises() -> None:
    calls = CallAnalytics(("customer", "agent"))
    calls.add_final("customer", 1, 0.0, 4.0, words((0.0, 4.0)), "one")
    calls.add_final("customer", 1, 0.0, 4.0, words((0.0, 1.0), (3.0, 4.0)), "one two")
    figures = calls.summary(4.0)
    assert figures["talk_seconds"]["customer"] == 2.0  # the pause of 2 s is not talk
    assert figures["silence_seconds"] == 2.0


def test_pauses_inside_an_utterance_under_the_join_gap_are_talk() -> None:
    assert utterance_spans(0.0, 3.0, [(0.0, 1.0), (1.3, 2.0)]) == [(0.0, 2.0)]
    assert utterance_spans(0.0, 3.0, [(0.0, 1.0), (1.6, 2.0)]) == [(0.0, 1.0), (1.6, 2.0)]
    assert utterance_spans(0.5, 3.0, []) == [(0.5, 3.0)]  # no word timings: all of it


def test_sentiment_start_and_end_average_the_first_and_last_three() -> None:
    calls = CallAnalytics(("customer", "agent"))
    scores = [-0.9, -0.6, -0.3, 0.0, 0.3, 0.6, 0.9]
    for i in range(1, len(scores) + 1):
        calls.add_final("customer", i, i * 2.0, i * 2.0 + 1, words((i * 2.0, i * 2.0 + 1)), "w")
    for i, score in reversed(list(enumerate(scores, 1))):  # in any order: by time
        calls.add_sentiment("customer", i, score)
    figures = calls.summary(20.0)["sentiment"]
    assert figures == {"customer_start": -0.6, "customer_end": 0.6}


def test_duration_is_at_least_the_last_word() -> None:
    calls = CallAnalytics(("customer",))
    calls.add_final("customer", 1, 0.0, 5.0, words((0.0, 5.0)), "x")
    assert calls.summary(0.0)["duration_seconds"] == 5.0


def test_timeline_marks_talk_overtalk_and_silences() -> None:
    timeline = two_party().timeline(22.0, min_silence=2.0)
    assert timeline["talk"]["customer"] == [[5.0, 10.0], [15.0, 16.0]]
    assert timeline["talk"]["agent"] == [[0.0, 4.0], [7.0, 7.4], [9.5, 12.0], [18.0, 20.0]]
    assert timeline["overtalk"] == [[7.0, 7.4], [9.5, 10.0]]
    assert timeline["silences"] == [[12.0, 15.0], [16.0, 18.0], [20.0, 22.0]]  # 4-5: under 2 s


def test_backchannels_neither_start_nor_answer_a_turn() -> None:
    calls = CallAnalytics(("customer", "agent"))
    calls.add_final("agent", 1, 0.0, 10.0, words((0.0, 10.0)), "a long explanation")
    calls.add_final("customer", 1, 9.0, 9.3, words((9.0, 9.3)), "ok")  # while the agent talks
    calls.add_final("agent", 2, 10.6, 14.0, words((10.6, 14.0)), "and so")
    calls.add_final("customer", 2, 15.0, 18.0, words((15.0, 18.0)), "I see, but")
    calls.add_final("agent", 3, 18.5, 18.8, words((18.5, 18.8)), "mm-hmm")  # in a pause
    calls.add_final("customer", 3, 19.0, 22.0, words((19.0, 22.0)), "what about")
    calls.add_final("agent", 4, 23.5, 26.0, words((23.5, 26.0)), "that is")
    response = calls.summary(26.0)["agent_response_seconds"]
    # one customer turn (15-22, the "mm-hmm" inside it) answered 1.5 s after it ended
    assert response == {"p50": 1.5, "max": 1.5, "count": 1}
