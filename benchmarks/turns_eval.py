"""Turns that carry no request: does the engine leave them without an intent?

    python benchmarks/turns_eval.py [--turns benchmarks/data/customer_turns.csv]
        [--playbook PLAYBOOK] [--frozen] [--json] [--save NAME]

`benchmarks/data/customer_turns.csv` holds customer turns of real conversations, labelled by
hand: `request` yes (the turn asks for something the agent acts on; `intent` is the shipped
retail playbook's intent for it where the playbook has one) or no (greetings, thanks,
backchannels, answers such as a name, an e-mail address or an order number; thanks and
farewells have the playbook's closing intent `thanks_goodbye` as `intent`). Sources: the
customer turns of the three ABCD sample dialogues (`abcd:…`, MIT; the retail playbook's own
domain) and the customer channel of the real recorded calls in ../shared/data/audio
(`call:…`, transcribed offline by `callcue transcribe`: an auto-repair shop, and an online
store's general questions (how orders ship, how to track them) that the retail playbook's
intents, each a specific problem, do not name; their requests count for rejection only).

Prints `no_intent_rejected` (turns with no request and no expected intent that get none),
`expected_right` (turns with an expected intent that get it), `requests_given_an_intent` (the
calls' requests, outside the playbook's domain: how often some intent is shown anyway) and
every turn's answer. `--frozen`: the playbook's intents without `callcue train`'s tuning.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import write_result

TURNS = Path(__file__).parent / "data" / "customer_turns.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--turns", type=Path, default=TURNS)
    parser.add_argument("--playbook", type=Path)
    parser.add_argument("--frozen", action="store_true", help="untuned intents")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--save", help="also write benchmarks/results/<SAVE>.json")
    args = parser.parse_args()

    from assist.engine import AssistModels

    with args.turns.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    models = AssistModels.load(playbook_path=args.playbook, tuned_intents=not args.frozen)
    results = [intent for intent, _ in models.classify_text([r["text"] for r in rows])]
    pairs = list(zip(rows, results, strict=True))
    no_intent = [x for r, x in pairs if r["request"] == "no" and not r["intent"]]
    expected = [(r, x) for r, x in pairs if r["intent"]]
    outside = [x for r, x in pairs if r["request"] == "yes" and not r["intent"]]

    def rate(hits: int, total: int) -> float:
        return round(hits / max(1, total), 4)

    answers = [
        {
            "source": r["source"],
            "text": r["text"],
            "request": r["request"],
            "expected": r["intent"] or None,
            "intent": x.intent,
            "top": x.top[0].intent,
            "confidence": x.confidence,
        }
        for r, x in zip(rows, results, strict=True)
    ]
    payload: dict[str, object] = {
        "playbook": models.playbook.name,
        "tuned": models.intents.tuned,
        "turns": len(rows),
        "no_intent_turns": len(no_intent),
        "no_intent_rejected": rate(sum(x.intent is None for x in no_intent), len(no_intent)),
        "expected_turns": len(expected),
        "expected_right": rate(sum(x.intent == r["intent"] for r, x in expected), len(expected)),
        "outside_requests": len(outside),
        "requests_given_an_intent": rate(sum(x.intent is not None for x in outside), len(outside)),
        "answers": answers,
    }
    if args.save:
        write_result(args.save, payload)
    if args.json:
        print(json.dumps(payload))
        return
    for r, x in pairs:
        want = r["intent"] or ("(any)" if r["request"] == "yes" else "-")
        mark = "ok" if (x.intent or "-") == want or (want == "(any)") else "--"
        print(f"{mark} {want:<24} {x.intent or '-':<24} {r['text'][:60]}")
    print(json.dumps({k: v for k, v in payload.items() if k != "answers"}, indent=2))


if __name__ == "__main__":
    main()
