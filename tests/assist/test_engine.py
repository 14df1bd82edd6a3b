"""The assist engine on a scripted call: real encoder, real sentiment model, shipped playbook."""

from __future__ import annotations

from typing import Any

import pytest

from assist.customers import SAMPLE_DIRECTORY, JsonDirectory, predict_reason
from assist.engine import AssistModels, CallAssist
from assist.events import Event


def say(call: CallAssist, channel: str, text: str, at: float = 0.0) -> list[dict[str, Any]]:
    masked, entities = call.scan(text)
    analysis = call.models.analyze([call.request(channel, masked)])[0]
    utterance = len(call.feedback) + int(at * 10)
    events: list[Event] = call.on_final(channel, utterance, masked, at, analysis, entities)
    return [e.to_dict() for e in events]


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e["type"] == kind]


@pytest.fixture
def call(assist_models: AssistModels) -> CallAssist:
    customer = assist_models.lookup({"caller": "(415) 555-0101"})
    return CallAssist(assist_models, "t-1", customer=customer, agent_name="Sam")


def test_customer_found_by_caller_number_with_predicted_reason(call: CallAssist) -> None:
    card = call.customer_card()
    assert card is not None and card["preferred_name"] == "Crystal" and card["tier"] == "gold"
    assert card["predicted_reason"]["intent"] == "refund_status"
    assert "CS-2291" in card["predicted_reason"]["because"]


def test_directory_lookup_keys_and_recent_history() -> None:
    directory = JsonDirectory(SAMPLE_DIRECTORY)
    assert directory.lookup({"from": "+12125550142"}).name == "Joseph Banter"  # type: ignore[union-attr]
    assert directory.lookup({"customer_id": "c-1003"}).tier == "bronze"  # type: ignore[union-attr]
    assert directory.lookup({"caller": "+1 999 555 0000"}) is None
    joe = directory.lookup({"email": "JBANTER@example.com"})
    assert joe is not None
    from datetime import date

    reason = predict_reason(joe, today=date(2026, 11, 23))
    assert reason is not None and reason.intent == "shipping_status"
    assert predict_reason(joe, today=date(2027, 6, 1)) is None  # history too old


def test_intent_reply_with_name_article_and_action(call: CallAssist) -> None:
    events = say(
        call,
        "customer",
        "Hi, I sent back some boots two weeks ago and I still haven't gotten my refund.",
        12.0,
    )
    intent = of(events, "intent")[0]
    assert intent["intent"] == "refund_status" and intent["confidence"] >= 0.6
    replies = [e for e in of(events, "suggestion") if e["kind"] == "reply"]
    assert replies and any("Crystal" in r["text"] for r in replies)
    assert "{" not in " ".join(r["text"] for r in replies)
    assert of(events, "action"), "a refund with no validated purchase yet suggests an action"
    assert of(events, "sentiment")[0]["channel"] == "customer"


def test_short_answers_are_read_with_what_the_customer_said_before(call: CallAssist) -> None:
    before = "so " * 30 + "I want to return the jacket I bought, it does not fit"
    say(call, "customer", before)
    short = call.request("customer", "yes the blue one")
    assert short.context == " ".join(before.split()[-24:])
    assert call.request("agent", "yes the blue one").context == ""
    long = "it is the jacket from the winter sale that I ordered on Monday and it arrived torn"
    assert call.request("customer", long).context == ""  # its own words say what it is


def test_agent_sentences_are_encoded_only_while_a_checklist_item_is_open(
    call: CallAssist,
) -> None:
    said = "Thanks for holding. I found your order. It ships today."
    assert call.request("agent", said).sentences
    split = call.models.analyze([call.request("agent", said)])[0]
    assert split.sentences.shape == (3, 384)
    # its sentiment is its sentences', averaged by words ("I found your order." weighs 4)
    parts = [
        r
        for _, r in call.models.classify_text(
            ["Thanks for holding.", "I found your order.", "It ships today."]
        )
    ]
    for label, p in split.sentiment.probabilities.items():
        expected = (
            3 * parts[0].probabilities[label]
            + 4 * parts[1].probabilities[label]
            + 3 * parts[2].probabilities[label]
        ) / 10
        assert abs(p - expected) < 2e-3, (label, p, expected)
    for state in call.checklist.values():
        state.done = True
    assert not call.request("agent", said).sentences
    analysis = call.models.analyze([call.request("agent", said)])[0]
    assert analysis.sentences.shape == (1, 384)  # the whole final, no sentence passes


def test_out_of_scope_utterance_has_no_intent(call: CallAssist) -> None:
    events = say(call, "customer", "what's the capital of mongolia")
    assert of(events, "intent")[0]["intent"] is None


@pytest.mark.parametrize("said", ["I'm here.", "Okay.", "Hello?", "Yes, I'm still on the line."])
def test_a_turn_with_no_request_has_no_intent(call: CallAssist, said: str) -> None:
    events = say(call, "customer", said)
    assert of(events, "intent")[0]["intent"] is None


def test_thanks_keeps_the_closing_intent_whose_examples_say_it(call: CallAssist) -> None:
    """The tuned head calls "Okay." the closing intent too (its shortest examples); only a word
    of thanks or farewell that the intent's own examples use lets a phatic turn keep it."""
    for said in ("Thank you so much.", "Okay, bye."):  # (a minute in: see the next test)
        assert of(say(call, "customer", said, 70.0), "intent")[0]["intent"] == "thanks_goodbye"


def test_a_request_after_a_filler_still_gets_its_intent(call: CallAssist) -> None:
    assert call.models.intents.tuned  # the shipped playbook's tuned intents
    events = say(call, "customer", "Okay. I was charged twice for the same order, can you fix it?")
    assert of(events, "intent")[0]["intent"] is not None


def test_entities_and_card_number_masked(call: CallAssist) -> None:
    masked, entities = call.scan(
        "my order is five two six three zero eight five one nine one "
        "and my card is 4111 1111 1111 1111"
    )
    assert "4111" not in masked and "••••1111" in masked
    kinds = {e.kind: e.value for e in entities}
    assert kinds["order_id"] == "5263085191"
    assert kinds["card_number"] == "••••1111"
    events = say(call, "customer", "the order number is 5263085191")
    assert of(events, "entities")[0]["entities"][0]["value"] == "5263085191"
    assert call.slot_values()["order_id"] == "5263085191"


def test_dismissed_suggestion_never_comes_back(call: CallAssist) -> None:
    first = [
        e["id"]
        for e in of(
            say(call, "customer", "where is my refund, I returned the boots weeks ago"),
            "suggestion",
        )
        if e["kind"] == "reply"
    ]
    assert first
    call.on_feedback({"type": "feedback", "kind": "reply", "id": first[0], "action": "dismissed"})
    seen = set()
    for _ in range(call.options.resurface_after + 2):  # long enough for ignored ones to return
        events = say(call, "customer", "can you check on my refund please")
        seen |= {e["id"] for e in of(events, "suggestion") if e["kind"] == "reply"}
    assert first[0] not in seen
    assert first[1:] == [] or first[1] in seen  # the one merely ignored may come back


def test_feedback_errors_name_the_problem(call: CallAssist) -> None:
    with pytest.raises(ValueError, match="'kind' must be one of"):
        call.on_feedback({"kind": "joke", "id": "x", "action": "dismissed"})
    with pytest.raises(ValueError, match="'action' must be one of"):
        call.on_feedback({"kind": "reply", "id": "x", "action": "liked"})
    with pytest.raises(ValueError, match="was shown in this call"):
        call.on_feedback({"kind": "reply", "id": "never_shown", "action": "accepted"})


def test_checklist_ticks_on_agent_channel_only(call: CallAssist) -> None:
    assert not of(say(call, "customer", "is this call being recorded?"), "checklist")
    events = say(
        call,
        "agent",
        "Thanks for calling Example Retail, this is Sam. Just so you "
        "know, this call may be recorded for quality and training purposes.",
    )
    checklist = of(events, "checklist")[0]
    done = {i["id"] for i in checklist["items"] if i["done"]}
    assert "recording_disclosure" in done
    assert "closing_thanks" not in done and "recap" not in done  # the call is only opening


def test_negative_streak_raises_one_alert(call: CallAssist) -> None:
    alerts = []
    for text in (
        "this is ridiculous, I've called three times already",
        "nobody ever helps me and I'm sick of it",
        "honestly this is the worst service I've ever had",
    ):
        alerts += of(say(call, "customer", text), "alert")
    assert [a["code"] for a in alerts if a["code"] == "negative_sentiment"] == [
        "negative_sentiment"
    ]
    assert call.streak["customer"] >= 2


def test_a_call_keeps_at_most_its_feedback_limit() -> None:
    """CallSession.feedback past MAX_FEEDBACK_PER_CALL: refused, counted, nothing published."""
    from types import SimpleNamespace

    from live.metrics import Metrics
    from live.session import MAX_FEEDBACK_PER_CALL, CallSession, FeedbackLimit

    published: list[object] = []
    metrics = Metrics()
    stub: Any = SimpleNamespace(
        assist_state=SimpleNamespace(
            on_feedback=lambda m: SimpleNamespace(kind="reply", action="shown")
        ),
        feedback_count=MAX_FEEDBACK_PER_CALL - 1,
        services=SimpleNamespace(metrics=metrics),
        publish=published.append,
    )
    CallSession.feedback(stub, {"type": "feedback"})
    assert len(published) == 1 and stub.feedback_count == MAX_FEEDBACK_PER_CALL
    with pytest.raises(FeedbackLimit, match=str(MAX_FEEDBACK_PER_CALL)):
        CallSession.feedback(stub, {"type": "feedback"})
    assert len(published) == 1
    assert 'callcue_limit_rejections_total{limit="feedback"} 1' in metrics.render()


def test_categories_match_from_what_the_models_read(call: CallAssist) -> None:
    events = say(call, "customer", "This is ridiculous, I want to cancel my account.", at=12.0)
    matches = {m["name"]: m for m in of(events, "category.matched")}
    matched = matches["cancel_risk"]  # (and very_unhappy, by its sentiment)
    assert matched["label"] == "Cancel risk"
    assert matched["channel"] == "customer" and "cancel my account" in matched["text"]
    alerts = [a for a in of(events, "alert") if a["code"] == "category"]
    assert alerts and alerts[0]["severity"] == "warning"
    assert "Cancel risk" in alerts[0]["message"]
    # the shipped playbook's disclosure was never given in the first 60 s: decided once the
    # agent's speech after them has been read
    assert call.on_time(61.0, (20.0, 25.0), 0.0) == []
    say(call, "agent", "Let me look into that for you.", at=62.0)
    [missing] = [e.to_dict() for e in call.on_time(63.0, (20.0, 25.0), 0.0)]
    assert (missing["name"], missing["absent"], missing["end"]) == (
        "no_early_disclosure",
        True,
        60.0,
    )
    [silence] = [e.to_dict() for e in call.on_end(90.0, (40.0, 65.0), 0.0) if e.type != "alert"]
    assert silence["name"] == "long_silence" and (silence["start"], silence["end"]) == (40, 65)


def test_a_greeting_taken_for_thanks_does_not_close_the_call(call: CallAssist) -> None:
    """The tuned head reads "Hi, good morning." as the closing intent: at the start of a call
    that has had no request it is no intent, and the call stays in its opening (no recap, no
    "anything else?"). Thanks after a request closes it, as does thanks after a minute."""
    greeting = of(say(call, "customer", "Hi, good morning.", 2.0), "intent")[0]
    assert greeting["top"][0]["intent"] == "thanks_goodbye"  # what the head said
    assert greeting["intent"] is None and greeting["stage"] == "opening"
    assert call.stage == "opening" and not call.intents_seen
    say(call, "customer", "I still haven't gotten my refund for the boots I sent back.", 10.0)
    thanks = of(say(call, "customer", "Thank you so much.", 30.0), "intent")[0]
    assert thanks["intent"] == "thanks_goodbye" and thanks["stage"] == "closing"
    late = CallAssist(call.models, "t-2")
    later = of(say(late, "customer", "Thank you so much.", 75.0), "intent")[0]
    assert later["intent"] == "thanks_goodbye" and later["stage"] == "closing"
