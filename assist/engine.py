"""The assist engine: each final utterance → intent, sentiment, entities, replies, articles,
next best actions, checklist and alerts.

- `AssistModels` (one per server): encoder, intent head trained from the playbook at start,
  sentiment head, playbook embeddings (articles, checklist examples), customer directory.
  `analyze` is the only blocking, model-running call; it takes a batch of texts.
- `CallAssist` (one per call): the call's state (current intent, sentiment trend, entities seen,
  checklist, what was shown, dismissed or used) and the rules. Pure logic, no I/O: it turns an
  analysed utterance into events.

`live.session` runs `analyze` in its own thread, batching the finals of all calls that are
waiting, so assist work never holds up transcripts.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from assist.categories import CategoryMatcher, Match, Utterance
from assist.customers import Customer, CustomerDirectory, JsonDirectory, predict_reason
from assist.entities import SENSITIVE_DEFAULT, Entity, extract, mask, mask_entities
from assist.events import (
    ActionEvent,
    AlertEvent,
    CallScored,
    CallWrapup,
    CategoryMatched,
    ChecklistEvent,
    EntitiesEvent,
    Event,
    FeedbackEvent,
    IntentEvent,
    SentimentEvent,
    SuggestionEvent,
)
from assist.playbook import ActionRule, Conditions, Playbook, Reply, load_playbook, template_slots
from assist.scorecard import score_call
from assist.wrapup import predict
from models.classifiers import IntentClassifier, IntentResult, SentimentModel, SentimentResult
from models.encoder import Encoded, TextEncoder
from models.train_intents import find_artifact

log = logging.getLogger("callcue.assist")

SENTENCE = re.compile(r"(?<=[.?!])\s+")
CONTEXT_FOR_WORDS = 12  # customer finals this short are also read with the previous one
CONTEXT_WORDS = 24  # words of the previous customer final they are read with
# A closing intent ("thanks, bye") closes a call once the customer has asked for something
# (another intent) or after this long: before that it is no intent. At a call's start a
# greeting is read as thanks ("Hi, good morning." is the shipped playbook's closing intent to
# the tuned head), and a closing stage there would bring the closing's actions (recap) and
# replies ("anything else?") to the agent's screen before the call has begun.
CLOSING_AFTER_S = 60.0
FEEDBACK_ACTIONS = ("shown", "copied", "accepted", "dismissed", "done")
FEEDBACK_KINDS = ("reply", "article", "action")


@dataclass(frozen=True, slots=True)
class AssistOptions:
    intent_threshold: float | None = None  # None: the playbook's, else the model default
    mask_kinds: frozenset[str] = SENSITIVE_DEFAULT
    alert_negative_streak: int = 2  # consecutive negative customer utterances → alert
    alert_trend_below: float = -0.35  # customer rolling sentiment below this → alert
    alert_drop: float = 0.8  # one utterance this far below the trend → alert
    trend_weight: float = 0.4  # weight of the newest utterance in the rolling trend
    replies_per_turn: int = 2
    articles_per_turn: int = 1
    article_min_similarity: float = 0.42
    checklist_min_similarity: float = 0.7
    resurface_after: int = 4  # customer turns before an ignored suggestion may come back


@dataclass(frozen=True, slots=True)
class Analysis:
    embedding: np.ndarray
    intent: IntentResult | None  # customer utterances only
    context_intent: IntentResult | None  # with the previous customer utterance prepended
    sentiment: SentimentResult
    sentences: np.ndarray  # [S, 384] embeddings of the sentences (agent checklist)


@dataclass(frozen=True, slots=True)
class Request:
    channel: str
    text: str
    context: str = ""  # previous customer utterance (customer only)
    sentences: bool = True  # agent: encode each sentence for the checklist (none left: no)


class AssistModels:
    """Everything assist needs loaded, shared by all calls. Build with `load` (blocking)."""

    def __init__(
        self,
        encoder: TextEncoder,
        playbook: Playbook,
        sentiment: SentimentModel,
        directory: CustomerDirectory | None = None,
        options: AssistOptions | None = None,
    ) -> None:
        started = time.perf_counter()
        self.encoder = encoder
        self.playbook = playbook
        self.sentiment = sentiment
        self.directory = directory
        self.options = options or AssistOptions()
        threshold = self.options.intent_threshold or playbook.intent_threshold
        self.intents = IntentClassifier.train(encoder, *playbook.intent_examples())
        if threshold is not None:
            self.intents.threshold = threshold
        self.articles = encoder.embed([f"{a.title}. {a.body}" for a in playbook.articles])
        examples = [(item.id, e) for item in playbook.checklist for e in item.examples]
        self.checklist_rows: dict[str, list[int]] = {}  # item id → its rows of examples
        for row, (item_id, _) in enumerate(examples):
            self.checklist_rows.setdefault(item_id, []).append(row)
        self.checklist_examples = encoder.embed([e for _, e in examples])
        self.ready_seconds = time.perf_counter() - started
        log.info(
            "assist ready: playbook %r (%d intents, %d replies, %d articles, %d actions, "
            "%d checklist items) in %.1fs",
            playbook.name,
            len(playbook.intents),
            len(playbook.replies),
            len(playbook.articles),
            len(playbook.actions),
            len(playbook.checklist),
            self.ready_seconds,
        )

    @classmethod
    def load(
        cls,
        *,
        playbook_path: Any = None,
        customers_path: Any = None,
        options: AssistOptions | None = None,
        threads: int = 1,
        tuned_intents: bool = True,
    ) -> AssistModels:
        """`tuned_intents` False: the frozen features even where `callcue train` has tuned
        the playbook (benchmarks compare the two)."""
        playbook = load_playbook(playbook_path)
        directory = JsonDirectory(customers_path) if customers_path else None
        sentiment = SentimentModel.load()
        texts, labels = playbook.intent_examples()
        intent_branch = find_artifact(texts, labels) if sentiment.branch and tuned_intents else None
        if intent_branch is None and tuned_intents:
            log.warning(
                "playbook %r: its intents are not tuned (intents from frozen features, less "
                "accurate); `callcue train %s` tunes them in about a minute",
                playbook.name,
                playbook_path or "",
            )
        # one encoder pass serves all: the sentiment model's and the playbook's tuned layers
        # are branches of the encoder graph (base outputs unchanged for articles and checklist)
        encoder = TextEncoder(threads=threads, branch=sentiment.branch, intent_branch=intent_branch)
        return cls(encoder, playbook, sentiment, directory, options)

    def lookup(self, metadata: dict[str, Any]) -> Customer | None:
        if self.directory is None:
            return None
        try:
            return self.directory.lookup(metadata)
        except Exception:  # a broken CRM must not break the call
            log.exception("customer lookup failed")
            return None

    def analyze(self, requests: Sequence[Request]) -> list[Analysis]:
        """Encode every text (with contexts and agent sentences) in one batch. Blocking.

        An agent's final of several sentences is read sentence by sentence (the checklist
        needs each): its sentiment is theirs averaged by words, and the whole text is not
        encoded again (the encoder's cost grows with the words; an agent's turn is long)."""
        texts: list[str] = []
        # (text row or -1, context row or -1, sentence rows, sentence weights)
        slots: list[tuple[int, int, list[int], list[float]]] = []
        sentiment_rows: list[int] = []
        intent_rows: list[int] = []  # a customer's utterances and their contexts
        for request in requests:
            parts: list[str] = []
            if request.channel == "agent" and request.sentences:
                parts = [p for p in SENTENCE.split(request.text) if p.strip()]
            if len(parts) > 1:
                rows = list(range(len(texts), len(texts) + len(parts)))
                texts.extend(parts)
                sentiment_rows.extend(rows)
                slots.append((-1, -1, rows, [len(p.split()) for p in parts]))
                continue
            row = len(texts)
            texts.append(request.text)
            sentiment_rows.append(row)
            context_row = -1
            if request.context:
                context_row = len(texts)
                texts.append(f"{request.context} {request.text}")
            if request.channel == "customer":
                intent_rows.extend(r for r in (row, context_row) if r >= 0)
            slots.append((row, context_row, [], []))
        # the sentiment branch runs for the utterances (or their sentences), not the contexts;
        # the intent branch for what a customer said
        encoded = self.encoder.encode(texts, sentiment_rows=sentiment_rows, intent_rows=intent_rows)
        intents = self.intents.classify(encoded, texts=texts)
        sentiments = self.sentiment.classify(encoded)
        out = []
        for request, (row, context_row, sentence_rows, weights) in zip(
            requests, slots, strict=True
        ):
            customer = request.channel == "customer"
            if row < 0:  # read sentence by sentence
                sentences = encoded.embedding[sentence_rows]
                mean = np.average(sentences, axis=0, weights=weights)
                out.append(
                    Analysis(
                        embedding=mean / max(float(np.linalg.norm(mean)), 1e-9),
                        intent=None,
                        context_intent=None,
                        sentiment=self.sentiment.combine(
                            [sentiments[r] for r in sentence_rows], weights
                        ),
                        sentences=sentences,
                    )
                )
                continue
            out.append(
                Analysis(
                    embedding=encoded.embedding[row],
                    intent=intents[row] if customer else None,
                    context_intent=intents[context_row] if customer and context_row >= 0 else None,
                    sentiment=sentiments[row],
                    sentences=encoded.embedding[[row]],
                )
            )
        return out

    def classify_text(self, texts: Sequence[str]) -> list[tuple[IntentResult, SentimentResult]]:
        encoded: Encoded = self.encoder.encode(list(texts))
        return list(
            zip(
                self.intents.classify(encoded, texts=texts),
                self.sentiment.classify(encoded),
                strict=True,
            )
        )


@dataclass
class ChecklistState:
    done: bool = False
    utterance: int | None = None
    at: float | None = None


@dataclass
class Shown:
    turn: int  # customer turn when last shown
    feedback: str = "shown"


@dataclass
class CallAssist:
    """Per-call assist state and rules. `on_final` returns the events to publish, in order."""

    models: AssistModels
    call_id: str
    customer: Customer | None = None
    agent_name: str = ""
    intent: str | None = None
    intent_confidence: float = 0.0
    closing: bool = False
    trend: dict[str, float] = field(default_factory=dict)
    streak: dict[str, int] = field(default_factory=dict)
    last_customer_text: str = ""
    customer_turns: int = 0
    entities: dict[str, str] = field(default_factory=dict)
    checklist: dict[str, ChecklistState] = field(default_factory=dict)
    shown: dict[str, Shown] = field(default_factory=dict)  # suggestion/action id → state
    fired: set[str] = field(default_factory=set)
    holding: set[str] = field(default_factory=set)  # action rules whose conditions held last
    alerting: set[str] = field(default_factory=set)
    recent: list[np.ndarray] = field(default_factory=list)  # customer embeddings, newest last
    feedback: list[tuple[str, str, str]] = field(default_factory=list)
    elapsed: float = 0.0
    alerts: int = 0
    categories: CategoryMatcher = field(init=False)
    intents_seen: dict[str, int] = field(default_factory=dict)  # customer intents: times

    def __post_init__(self) -> None:
        for item in self.models.playbook.checklist:
            self.checklist.setdefault(item.id, ChecklistState())
        self.categories = CategoryMatcher(self.models.playbook.categories)

    @property
    def options(self) -> AssistOptions:
        return self.models.options

    @property
    def stage(self) -> str:
        if self.closing:
            return "closing"
        return "middle" if self.intent else "opening"

    def customer_card(self) -> dict[str, Any] | None:
        if self.customer is None:
            return None
        card = self.customer.to_json()
        reason = predict_reason(self.customer)
        if reason is not None:
            label = self._label(reason.intent)
            card["predicted_reason"] = {
                "intent": reason.intent,
                "label": label,
                "because": reason.because,
                "case_id": reason.case_id,
            }
        else:
            card["predicted_reason"] = None
        return card

    # ---------------------------------------------------------------- entities / PII (sync)
    def scan(self, text: str) -> tuple[str, list[Entity]]:
        """Entities of `text` and the text with secrets masked (fast: runs before publishing)."""
        found = extract(text)
        kinds = self.options.mask_kinds
        if any(e.kind in kinds for e in found):
            return mask(text, found, kinds), mask_entities(found, kinds)
        return text, found

    # ---------------------------------------------------------------- per utterance
    def request(self, channel: str, text: str) -> Request:
        """What to encode for a final. A short customer answer ("yes, the blue one") is also
        read after the end of the previous customer utterance; a longer one carries its own
        intent, and its context pass would only cost time (the encoder's cost grows with
        the words). An agent's final is split into sentences for the checklist while an
        item is still open."""
        context = ""
        if channel == "customer" and len(text.split()) <= CONTEXT_FOR_WORDS:
            context = " ".join(self.last_customer_text.split()[-CONTEXT_WORDS:])
        # an agent's sentences are encoded one by one only while a checklist item is open
        pending = any(not state.done for state in self.checklist.values())
        return Request(channel, text, context, sentences=pending)

    def on_final(
        self,
        channel: str,
        utterance: int,
        text: str,
        end: float,
        analysis: Analysis | None,
        entities: Sequence[Entity],
        language: str = "en",
        start: float | None = None,
    ) -> list[Event]:
        """The events a final gives. `analysis` None: the text is not English (`language`),
        which the models do not read: intent and sentiment say they are unavailable instead
        of guessing, and only the playbook's phrase rules (checklist keywords, category
        phrases) run. `start`: when the final began (categories' time windows; else `end`)."""
        self.elapsed = max(self.elapsed, end)
        if analysis is None:
            events = self._not_read(channel, utterance, text, entities, language)
        else:
            events = self._read(channel, utterance, text, analysis, entities)
        intent = next((e.intent for e in events if isinstance(e, IntentEvent)), None)
        sentiment = next(
            (e.score for e in events if isinstance(e, SentimentEvent) and not e.unavailable), None
        )
        said = Utterance(
            channel,
            utterance,
            end if start is None else start,
            end,
            text,
            intent,
            sentiment,
            tuple(e.kind for e in entities),
        )
        return events + self._matched(self.categories.on_utterance(said))

    def on_time(
        self, now: float, longest_silence: tuple[float, float], overtalk: float
    ) -> list[Event]:
        """Categories decided by the call's time and figures (silences, overtalk, what was
        not said in the first N s)."""
        return self._matched(self.categories.on_time(now, longest_silence, overtalk))

    def on_end(
        self, duration: float, longest_silence: tuple[float, float], overtalk: float
    ) -> list[Event]:
        """Categories decided when the call is over."""
        return self._matched(self.categories.on_end(duration, longest_silence, overtalk))

    def scored(self, figures: dict[str, Any]) -> CallScored | None:
        """The playbook's scorecard for this call, from the categories it matched, its
        checklist and its analytics `figures` (None: the playbook has no scorecard)."""
        items = self.models.playbook.scorecard
        if not items:
            return None
        result = score_call(
            items,
            self.categories.matched,
            {item_id: state.done for item_id, state in self.checklist.items()},
            figures,
        )
        return CallScored(call_id=self.call_id, score=result["score"], items=tuple(result["items"]))

    def wrapup(self) -> CallWrapup | None:
        """The predicted disposition and an after-call note (None: the playbook has no
        dispositions)."""
        playbook = self.models.playbook
        prediction = predict(playbook.dispositions, self.intents_seen, self.categories.matched)
        if prediction is None:
            return None
        chosen = prediction.disposition
        return CallWrapup(
            call_id=self.call_id,
            disposition=chosen.id,
            label=chosen.label,
            reason=prediction.reason,
            note=self.after_call_note(chosen.label),
            alternatives=tuple({"id": d.id, "label": d.label} for d in prediction.alternatives),
            choices=tuple({"id": d.id, "label": d.label} for d in playbook.dispositions),
        )

    def after_call_note(self, disposition: str) -> str:
        """A few lines for the CRM: why they called, what was said and done, the outcome."""
        lines = []
        if self.customer is not None:
            lines.append(f"Customer: {self.customer.name} ({self.customer.id}).")
        ranked = sorted(self.intents_seen.items(), key=lambda kv: -kv[1])
        if ranked:
            lines.append(f"Reason for the call: {self._label(ranked[0][0])}.")
            if len(ranked) > 1:
                also = ", ".join(self._label(i) for i, _ in ranked[1:4])
                lines.append(f"Also discussed: {also}.")
        if self.entities:
            details = ", ".join(
                f"{kind.replace('_', ' ')} {value}" for kind, value in self.entities.items()
            )
            lines.append(f"Details: {details}.")
        filled = (self.fill(r.action) for r in self.models.playbook.actions if r.id in self.fired)
        actions = [a for a in filled if a]
        if actions:
            lines.append("Suggested actions: " + "; ".join(actions[:5]) + ".")
        if self.checklist:
            done = sum(s.done for s in self.checklist.values())
            lines.append(f"Checklist: {done} of {len(self.checklist)} items done.")
        if self.categories.matched:
            flags = ", ".join(
                c.label or c.name
                for c in self.models.playbook.categories
                if c.name in self.categories.matched
            )
            lines.append(f"Flags: {flags}.")
        lines.append(f"Disposition: {disposition}.")
        return "\n".join(lines)

    def _matched(self, matches: list[Match]) -> list[Event]:
        events: list[Event] = []
        for m in matches:
            category = m.category
            label = category.label or category.name.replace("_", " ")
            events.append(
                CategoryMatched(
                    call_id=self.call_id,
                    name=category.name,
                    label=label,
                    channel=m.channel,
                    start=m.start,
                    end=m.end,
                    utterance=m.utterance,
                    text=m.text,
                    absent=category.absent,
                )
            )
            if category.alert:
                said = f': "{m.text}"' if m.text else ""
                events.append(self._alert("category", category.alert, f"{label}{said}", m.channel))
        return events

    def _read(
        self,
        channel: str,
        utterance: int,
        text: str,
        analysis: Analysis,
        entities: Sequence[Entity],
    ) -> list[Event]:
        events = self._entities(channel, utterance, entities)
        events += self._sentiment(channel, utterance, analysis.sentiment)
        if channel == "customer":
            self.customer_turns += 1
            self.last_customer_text = text
            self.recent = [*self.recent[-2:], analysis.embedding]
            events += self._intent(channel, utterance, analysis)
            events += self._replies(channel, utterance)
            events += self._articles(channel, utterance)
        elif channel == "agent":
            events += self._checklist(utterance, text, analysis.sentences)
        events += self._actions(channel, utterance)
        return events

    def _entities(self, channel: str, utterance: int, entities: Sequence[Entity]) -> list[Event]:
        """Remember the entities a final named; the event that lists them (none: no event)."""
        if not entities:
            return []
        for entity in entities:
            self.entities[entity.kind] = entity.value
        return [
            EntitiesEvent(
                call_id=self.call_id,
                channel=channel,
                utterance=utterance,
                entities=tuple(e.to_json() for e in entities),
            )
        ]

    def _not_read(
        self,
        channel: str,
        utterance: int,
        text: str,
        entities: Sequence[Entity],
        language: str,
    ) -> list[Event]:
        why = f"the intent and sentiment models read English only; this is {language}"
        events = self._entities(channel, utterance, entities)
        events.append(
            SentimentEvent(
                call_id=self.call_id,
                channel=channel,
                utterance=utterance,
                label="",
                score=0.0,
                probabilities={},
                trend=self.trend.get(channel, 0.0),
                negative_streak=self.streak.get(channel, 0),
                unavailable=why,
            )
        )
        if channel == "customer":
            self.customer_turns += 1
            self.last_customer_text = text
            events.append(
                IntentEvent(
                    call_id=self.call_id,
                    channel=channel,
                    utterance=utterance,
                    intent=None,
                    label="",
                    confidence=0.0,
                    top=(),
                    current=self.intent,
                    current_label=self._label(self.intent),
                    stage=self.stage,
                    unavailable=why,
                )
            )
        elif channel == "agent":
            events += self._checklist(utterance, text, np.zeros((0, 1), dtype=np.float32))
        return events

    def _label(self, intent_id: str | None) -> str:
        return self.models.playbook.label(intent_id)

    def _intent(self, channel: str, utterance: int, analysis: Analysis) -> list[Event]:
        result = analysis.intent
        assert result is not None
        if result.intent is None and analysis.context_intent and analysis.context_intent.intent:
            result = analysis.context_intent  # a short answer read with what came before
        if result.intent is not None and not self._may_close(result.intent):
            result = replace(result, intent=None)  # (a greeting taken for thanks: see above)
        if result.intent is not None:
            self.intent = result.intent
            self.intent_confidence = result.confidence
            self.intents_seen[result.intent] = self.intents_seen.get(result.intent, 0) + 1
            if self.models.playbook.intent(result.intent).closing:
                self.closing = True
        return [
            IntentEvent(
                call_id=self.call_id,
                channel=channel,
                utterance=utterance,
                intent=result.intent,
                label=self._label(result.intent),
                confidence=result.confidence,
                top=tuple(
                    {"intent": s.intent, "label": self._label(s.intent), "confidence": s.confidence}
                    for s in result.top
                ),
                current=self.intent,
                current_label=self._label(self.intent),
                stage=self.stage,
            )
        ]

    def _may_close(self, intent: str) -> bool:
        """Whether `intent` may be taken: any intent but a closing one, which needs a request
        before it or `CLOSING_AFTER_S` of call."""
        playbook = self.models.playbook
        if not playbook.intent(intent).closing or self.elapsed >= CLOSING_AFTER_S:
            return True
        return any(not playbook.intent(seen).closing for seen in self.intents_seen)

    def _sentiment(self, channel: str, utterance: int, result: SentimentResult) -> list[Event]:
        o = self.options
        previous = self.trend.get(channel)
        trend = (
            result.score
            if previous is None
            else round(o.trend_weight * result.score + (1 - o.trend_weight) * previous, 4)
        )
        self.trend[channel] = trend
        streak = self.streak.get(channel, 0) + 1 if result.label == "negative" else 0
        self.streak[channel] = streak
        events: list[Event] = [
            SentimentEvent(
                call_id=self.call_id,
                channel=channel,
                utterance=utterance,
                label=result.label,
                score=result.score,
                probabilities=result.probabilities,
                trend=trend,
                negative_streak=streak,
            )
        ]
        if channel != "customer":
            return events
        if previous is not None and result.score - previous <= -o.alert_drop:
            events.append(
                self._alert(
                    "sentiment_drop",
                    "warning",
                    "Customer sentiment dropped sharply on the last utterance",
                    channel,
                )
            )
        negative = streak >= o.alert_negative_streak or trend < o.alert_trend_below
        if negative and "negative_sentiment" not in self.alerting:
            self.alerting.add("negative_sentiment")
            why = (
                f"{streak} negative utterances in a row"
                if streak >= o.alert_negative_streak
                else f"rolling sentiment {trend:+.2f}"
            )
            events.append(
                self._alert(
                    "negative_sentiment",
                    "critical" if trend < -0.6 else "warning",
                    f"Customer is upset ({why})",
                    channel,
                )
            )
        elif not negative and trend > 0 and "negative_sentiment" in self.alerting:
            self.alerting.discard("negative_sentiment")  # re-armed once the customer recovers
        return events

    def _alert(self, code: str, severity: str, message: str, channel: str) -> AlertEvent:
        self.alerts += 1
        return AlertEvent(
            call_id=self.call_id, code=code, severity=severity, message=message, channel=channel
        )

    # ---------------------------------------------------------------- conditions and slots
    def holds(self, when: Conditions) -> bool:
        customer_trend = self.trend.get("customer", 0.0)
        checks = (
            not when.intent or self.intent in when.intent,
            when.sentiment is None or self._last_label() == when.sentiment,
            when.sentiment_trend_below is None
            or ("customer" in self.trend and customer_trend < when.sentiment_trend_below),
            when.negative_streak_at_least is None
            or self.streak.get("customer", 0) >= when.negative_streak_at_least,
            all(k in self.entities for k in when.entities),
            not any(k in self.entities for k in when.missing_entities),
            not when.stage or self.stage in when.stage,
            all(self.checklist.get(i, ChecklistState()).done for i in when.checklist_done),
            not any(self.checklist.get(i, ChecklistState()).done for i in when.checklist_missing),
            not when.customer_tier
            or (self.customer.tier if self.customer else "guest") in when.customer_tier,
            when.has_open_case is None
            or bool(self.customer and self.customer.open_cases) == when.has_open_case,
            when.min_call_seconds is None or self.elapsed >= when.min_call_seconds,
        )
        return all(checks)

    def _last_label(self) -> str | None:
        streak = self.streak.get("customer")
        if streak is None:
            return None
        if streak > 0:
            return "negative"
        trend = self.trend.get("customer", 0.0)
        return "positive" if trend > 0.3 else "neutral"

    def slot_values(self) -> dict[str, str]:
        values = {k: v for k, v in self.entities.items()}
        customer = self.customer
        if customer is not None:
            values.update(
                preferred_name=customer.first_name, customer_name=customer.name, tier=customer.tier
            )
            if customer.account_id:
                values.setdefault("account_id", customer.account_id)
            if customer.email:
                values.setdefault("email", customer.email)
            if customer.open_cases:
                case = max(customer.open_cases, key=lambda c: c.opened)
                values["open_case"] = f"{case.id} ({case.summary})"
        if self.agent_name:
            values["agent_name"] = self.agent_name
        if self.intent:
            values["intent_label"] = self._label(self.intent)
        return {k: v for k, v in values.items() if v}

    def fill(self, text: str, fallback: str = "") -> str | None:
        values = self.slot_values()
        for template in (text, fallback):
            if template and all(s in values for s in template_slots(template)):
                return template.format(**values)
        return None

    # ---------------------------------------------------------------- suggestions
    def _may_show(self, key: str) -> bool:
        shown = self.shown.get(key)
        if shown is None:
            return True
        if shown.feedback in ("dismissed", "accepted", "copied", "done"):
            return False  # used or dismissed: never again in this call
        return self.customer_turns - shown.turn >= self.options.resurface_after

    def _replies(self, channel: str, utterance: int) -> list[Event]:
        if not self.intent:
            return []
        ranked: list[tuple[float, Reply, str]] = []
        for reply in self.models.playbook.replies:
            if self.intent not in reply.intents or not self._may_show(f"reply:{reply.id}"):
                continue
            if not self.holds(reply.when):
                continue
            text = self.fill(reply.text, reply.fallback)
            if text is None:
                continue
            score = self.intent_confidence * (1 + 0.1 * reply.when.specificity)
            ranked.append((score, reply, text))
        ranked.sort(key=lambda r: -r[0])
        events: list[Event] = []
        for score, reply, text in ranked[: self.options.replies_per_turn]:
            self.shown[f"reply:{reply.id}"] = Shown(self.customer_turns)
            events.append(
                SuggestionEvent(
                    call_id=self.call_id,
                    kind="reply",
                    id=reply.id,
                    channel=channel,
                    utterance=utterance,
                    score=round(score, 4),
                    intent=self.intent,
                    reason=f"customer intent: {self._label(self.intent)}",
                    text=text,
                )
            )
        return events

    def _articles(self, channel: str, utterance: int) -> list[Event]:
        articles = self.models.playbook.articles
        if not articles or not self.recent:
            return []
        query = np.mean(self.recent, axis=0)
        query = query / max(float(np.linalg.norm(query)), 1e-9)
        scores = self.models.articles @ query
        ranked = []
        for index in np.argsort(-scores):
            article = articles[int(index)]
            score = float(scores[index]) + (0.1 if self.intent in article.intents else 0.0)
            if score < self.options.article_min_similarity:
                continue
            if self._may_show(f"article:{article.id}"):
                ranked.append((score, article))
        ranked.sort(key=lambda r: -r[0])
        events: list[Event] = []
        for score, article in ranked[: self.options.articles_per_turn]:
            self.shown[f"article:{article.id}"] = Shown(self.customer_turns)
            events.append(
                SuggestionEvent(
                    call_id=self.call_id,
                    kind="article",
                    id=article.id,
                    channel=channel,
                    utterance=utterance,
                    score=round(score, 4),
                    intent=self.intent,
                    reason="matches what the customer said"
                    + (f" ({self._label(self.intent)})" if self.intent in article.intents else ""),
                    title=article.title,
                    body=article.body,
                    link=article.link,
                )
            )
        return events

    def _actions(self, channel: str, utterance: int) -> list[Event]:
        fired: list[tuple[ActionRule, str, str]] = []
        holding = set()
        for rule in self.models.playbook.actions:
            if not self.holds(rule.when):
                continue
            holding.add(rule.id)
            key = f"action:{rule.id}"
            if rule.once and rule.id in self.fired:
                continue
            if not rule.once and rule.id in self.holding:
                continue  # still holding since it fired: not news
            shown = self.shown.get(key)
            if shown is not None and shown.feedback in ("dismissed", "done"):
                continue
            action = self.fill(rule.action)
            reason = self.fill(rule.reason)
            if action is None or reason is None:
                continue
            fired.append((rule, action, reason))
        self.holding = holding
        events: list[Event] = []
        for rule, action, reason in sorted(fired, key=lambda f: f[0].priority):
            self.fired.add(rule.id)
            self.shown[f"action:{rule.id}"] = Shown(self.customer_turns)
            events.append(
                ActionEvent(
                    call_id=self.call_id,
                    id=rule.id,
                    action=action,
                    reason=reason,
                    priority=rule.priority,
                    channel=channel,
                    utterance=utterance,
                )
            )
        return events

    # ---------------------------------------------------------------- checklist
    def _checklist(self, utterance: int, text: str, sentences: np.ndarray) -> list[Event]:
        lowered = text.lower()
        changed = []
        if sentences.size:
            similarity = sentences @ self.models.checklist_examples.T  # [S, examples]
            best = similarity.max(axis=0) if similarity.size else np.zeros(0)
        else:  # nothing encoded (a language the encoder does not read): keywords only
            best = np.zeros(0)
        for item in self.models.playbook.checklist:
            state = self.checklist[item.id]
            if state.done or (item.due == "before_closing" and self.stage == "opening"):
                continue  # a closing item said while the call is opening is not the closing
            hit = any(k in lowered for k in item.keywords)
            if not hit and best.size:
                rows = self.models.checklist_rows.get(item.id, [])
                hit = (
                    bool(rows) and float(best[rows].max()) >= self.options.checklist_min_similarity
                )
            if hit:
                state.done, state.utterance, state.at = True, utterance, round(self.elapsed, 2)
                changed.append(item.id)
        if not changed:
            return []
        return [self.checklist_event(changed)]

    def checklist_event(self, changed: Collection[str] = (), *, final: bool = False) -> Event:
        items = []
        for item in self.models.playbook.checklist:
            state = self.checklist[item.id]
            items.append(
                {
                    "id": item.id,
                    "label": item.label,
                    "due": item.due,
                    "done": state.done,
                    "utterance": state.utterance,
                    "at": state.at,
                }
            )
        return ChecklistEvent(
            call_id=self.call_id,
            items=tuple(items),
            changed=tuple(changed),
            stage=self.stage,
            final=final,
        )

    # ---------------------------------------------------------------- feedback
    def on_feedback(self, message: dict[str, Any]) -> FeedbackEvent:
        """Record a screen's feedback; raises ValueError naming what is wrong with it."""
        target = message.get("id")
        kind = message.get("kind")
        action = message.get("action")
        if kind not in FEEDBACK_KINDS:
            raise ValueError(f"feedback 'kind' must be one of {', '.join(FEEDBACK_KINDS)}")
        if action not in FEEDBACK_ACTIONS:
            raise ValueError(f"feedback 'action' must be one of {', '.join(FEEDBACK_ACTIONS)}")
        if not isinstance(target, str) or not target:
            raise ValueError("feedback needs the 'id' of the suggestion or action")
        key = f"{kind}:{target}"
        if key not in self.shown:
            raise ValueError(f"no {kind} '{target}' was shown in this call")
        if action != "shown":
            self.shown[key].feedback = action
        self.feedback.append((kind, target, action))
        return FeedbackEvent(call_id=self.call_id, target=target, kind=kind, action=action)
