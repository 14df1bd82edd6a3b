"""Transcript exports (JSON, plain text, WebVTT, SRT, CSV) and the post-call summary, built from
what the store holds."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from typing import Any

from assist.analytics import CallAnalytics

FORMATS = {
    "json": "application/json",
    "txt": "text/plain; charset=utf-8",
    "vtt": "text/vtt; charset=utf-8",
    "srt": "application/x-subrip; charset=utf-8",
    "csv": "text/csv; charset=utf-8",
}


def _clock(seconds: float, sep: str) -> str:
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{ms:03d}"


def _speaker(channel: str) -> str:
    return channel.capitalize()


def export(call: dict[str, Any], utterances: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps({"call": call, "utterances": utterances}, ensure_ascii=False, indent=2)
    if fmt == "txt":
        head = f"Call {call['id']} — {call['started_at']} — {call['source']}\n\n"
        return head + "".join(
            f"[{_clock(u['start'], '.')[:-4]}] {_speaker(u['channel'])}: {u['text']}\n"
            for u in utterances
        )
    if fmt == "vtt":
        cues = "".join(
            f"\n{_clock(u['start'], '.')} --> {_clock(u['end'], '.')}\n"
            f"{_voice(u['channel'])}{_vtt(_cue(u['text']))}\n"
            for u in utterances
        )
        return "WEBVTT\n" + cues
    if fmt == "srt":
        return "".join(
            f"{i}\n{_clock(u['start'], ',')} --> {_clock(u['end'], ',')}\n"
            f"{_speaker(u['channel'])}: {_cue(u['text'])}\n\n"
            for i, u in enumerate(utterances, 1)
        )
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(
            ["call_id", "channel", "utterance", "start", "end", "text", "confidence", "language"]
        )
        for u in utterances:
            writer.writerow(
                [
                    call["id"],
                    u["channel"],
                    u["utterance"],
                    f"{u['start']:.2f}",
                    f"{u['end']:.2f}",
                    u["text"],
                    u["confidence"],
                    u.get("language", "en"),
                ]
            )
        return out.getvalue()
    raise ValueError(f"unknown format {fmt!r} (formats: {', '.join(FORMATS)})")


def _voice(channel: str) -> str:
    """The WebVTT voice tag; a channel ending in '--' would make '-->' with its '>'."""
    return _no_arrow(f"<v {_speaker(channel)}>")


def _vtt(text: str) -> str:
    """WebVTT cue text is markup: escape &, < and >."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _cue(text: str) -> str:
    """Cue text may not contain a blank line or '-->'."""
    return _no_arrow(" ".join(text.split()))


def _no_arrow(text: str) -> str:
    """`text` without '-->' (one pass is not enough: '--->' becomes '-->')."""
    while "-->" in text:
        text = text.replace("-->", "->")
    return text


def analytics(
    call: dict[str, Any], utterances: list[dict[str, Any]], events: list[dict[str, Any]]
) -> dict[str, Any]:
    """`GET /v1/calls/{id}/analytics`: the call's figures from its stored finals (revised
    words where a revision changed them) and sentiment events (`assist.analytics`), the
    categories it matched, and the `timeline` of who talked when, overtalk and silences the
    QA page draws."""
    figures = CallAnalytics(tuple(call.get("channels") or ()))
    # a resumed call restarts its clock and utterance numbers: the figures are its last part's
    last = max((u.get("segment", 1) for u in utterances), default=1)
    utterances = [u for u in utterances if u.get("segment", 1) == last]
    since = min((u["seq"] for u in utterances), default=0)
    for u in utterances:
        figures.add_final(u["channel"], u["utterance"], u["start"], u["end"], u["words"], u["text"])
    for event in events:
        if event["type"] == "sentiment" and event.get("label") and event["seq"] > since:
            # ("" label: not read, another language)
            figures.add_sentiment(event["channel"], event["utterance"], float(event["score"]))
    duration = float(call.get("duration") or 0.0)
    keep = ("name", "label", "channel", "start", "end", "text", "utterance", "absent")
    return {
        "call_id": call["id"],
        **figures.summary(duration),
        "categories": [
            {k: e.get(k) for k in keep} for e in events if e["type"] == "category.matched"
        ],
        "timeline": figures.timeline(duration),
    }


def summary(call: dict[str, Any], events: list[dict[str, Any]]) -> dict[str, Any]:
    """Reason for the call, intents, entities, actions suggested and taken, sentiment arc and
    checklist result, from the stored events of a call."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["type"], []).append(event)
    intents = [e for e in by_type.get("intent", []) if e.get("intent")]
    counts = Counter(e["intent"] for e in intents)
    labels = {e["intent"]: e.get("label", "") for e in intents}
    started = (by_type.get("call.started") or [{}])[0]
    predicted = (started.get("customer") or {}).get("predicted_reason")
    reason = None
    if intents:
        first = intents[0]
        reason = {
            "intent": first["intent"],
            "label": first.get("label", ""),
            "said_at": first.get("utterance"),
            "source": "first customer intent",
        }
    elif predicted:
        reason = {
            "intent": predicted["intent"],
            "label": predicted.get("label", ""),
            "source": "predicted from the customer's history",
        }
    entities: dict[str, list[str]] = {}
    for event in by_type.get("entities", []):
        for entity in event.get("entities", []):
            values = entities.setdefault(entity["kind"], [])
            if entity["value"] not in values:
                values.append(entity["value"])
    feedback = by_type.get("feedback", [])
    taken = {
        (f["kind"], f["target"]) for f in feedback if f["action"] in ("accepted", "done", "copied")
    }
    dismissed = {(f["kind"], f["target"]) for f in feedback if f["action"] == "dismissed"}

    def status(kind: str, ident: str) -> str:
        if (kind, ident) in taken:
            return "taken"
        return "dismissed" if (kind, ident) in dismissed else "shown"

    actions = [
        {
            "id": a["id"],
            "action": a["action"],
            "reason": a["reason"],
            "priority": a["priority"],
            "status": status("action", a["id"]),
        }
        for a in by_type.get("action", [])
    ]
    suggestions = [
        {
            "kind": s["kind"],
            "id": s["id"],
            "status": status(s["kind"], s["id"]),
            "text": s.get("text") or s.get("title", ""),
        }
        for s in by_type.get("suggestion", [])
    ]
    arc = [
        {
            "utterance": s["utterance"],
            "ts": s["ts"],
            "label": s["label"],
            "score": s["score"],
            "trend": s["trend"],
        }
        for s in by_type.get("sentiment", [])
        if s.get("channel") == "customer"
    ]
    checklists = by_type.get("checklist", [])
    final = next((c for c in reversed(checklists) if c.get("final")), None) or (
        checklists[-1] if checklists else None
    )
    checklist = None
    if final is not None:
        items = final["items"]
        checklist = {
            "done": [i["id"] for i in items if i["done"]],
            "missed": [i["id"] for i in items if not i["done"]],
            "complete": all(i["done"] for i in items),
            "items": items,
        }
    return {
        "call_id": call["id"],
        "started_at": call["started_at"],
        "duration": call["duration"],
        "outcome": call["outcome"],
        "agent": call["agent"],
        "customer": {"id": call["customer_id"], "name": call["customer_name"]},
        "reason": reason,
        "intents": [
            {"intent": i, "label": labels[i], "utterances": n} for i, n in counts.most_common()
        ],
        "entities": entities,
        "actions": actions,
        "suggestions": suggestions,
        "sentiment": {
            "arc": arc,
            "start": arc[0]["trend"] if arc else None,
            "end": arc[-1]["trend"] if arc else None,
            "lowest": min((a["trend"] for a in arc), default=None),
        },
        "alerts": [
            {"code": a["code"], "message": a["message"], "ts": a["ts"]}
            for a in by_type.get("alert", [])
        ],
        "checklist": checklist,
        "utterances": len(by_type.get("transcript.final", [])),
    }
