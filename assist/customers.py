"""Customer context: who is calling, before they say it.

`CustomerDirectory` is the interface a CRM adapter implements: `lookup(metadata)` gets the call's
`metadata` (from the native `start`, Twilio `customParameters`, AudioHook participant) and
returns a `Customer` or None. Keep it fast: it runs as the call starts, before `call.started`.

The default, `JsonDirectory`, reads a JSON file (`CALLCUE_CUSTOMERS`):

    {"customers": [{"id": "C-1001", "name": "Crystal Minh", "preferred_name": "Crystal",
                    "phones": ["+1 415 555 0101"], "email": "...", "account_id": "...",
                    "tier": "gold",
                    "open_cases": [{"id": "CS-2291", "intent": "refund_status",
                                    "summary": "...", "opened": "2026-11-18"}],
                    "past_calls": [{"date": "2026-11-18", "intent": "return_size",
                                    "summary": "..."}]}]}

Lookup keys in the metadata, in order: `customer_id`, `account_id`, `email`, then the caller's
number (`caller`, `from`, `ani`, `phone`; matched on its last 10 digits).

`predict_reason` is the guess shown before the customer speaks: the newest open case, else the
most frequent intent of calls in the last 14 days.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Protocol

SAMPLE_DIRECTORY = Path(__file__).parent / "playbooks" / "customers.json"
PHONE_KEYS = ("caller", "from", "ani", "phone", "caller_number")


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    summary: str
    intent: str = ""
    opened: str = ""


@dataclass(frozen=True, slots=True)
class PastCall:
    date: str
    intent: str = ""
    summary: str = ""


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    preferred_name: str = ""
    tier: str = "guest"
    phones: tuple[str, ...] = ()
    email: str = ""
    account_id: str = ""
    open_cases: tuple[Case, ...] = ()
    past_calls: tuple[PastCall, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def first_name(self) -> str:
        return self.preferred_name or (self.name.split()[0] if self.name else "")

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["preferred_name"] = self.first_name
        return data


@dataclass(frozen=True, slots=True)
class PredictedReason:
    intent: str
    because: str
    case_id: str = ""


class CustomerDirectory(Protocol):
    def lookup(self, metadata: Mapping[str, Any]) -> Customer | None: ...


def phone_key(value: str) -> str:
    digits = re.sub(r"\D", "", value)
    return digits[-10:] if len(digits) >= 10 else ""


class JsonDirectory:
    """Customers from a JSON file, indexed once at start (errors name the file and entry)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ValueError(f"{path}: cannot read the customer directory ({exc})") from exc
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}: not valid JSON ({exc})") from exc
        rows = data.get("customers") if isinstance(data, dict) else None
        if not isinstance(rows, list):
            raise ValueError(f'{path}: expected {{"customers": [...]}}')
        self.customers: list[Customer] = []
        self._index: dict[tuple[str, str], Customer] = {}
        for i, row in enumerate(rows):
            try:
                customer = _customer(row)
            except (TypeError, ValueError, KeyError) as exc:
                raise ValueError(f"{path}: customers[{i}]: {exc}") from exc
            self.customers.append(customer)
            self._index[("id", customer.id.lower())] = customer
            if customer.account_id:
                self._index[("account_id", customer.account_id.lower())] = customer
            if customer.email:
                self._index[("email", customer.email.lower())] = customer
            for phone in customer.phones:
                if phone_key(phone):
                    self._index[("phone", phone_key(phone))] = customer

    def lookup(self, metadata: Mapping[str, Any]) -> Customer | None:
        for meta_key, kind in (
            ("customer_id", "id"),
            ("account_id", "account_id"),
            ("email", "email"),
        ):
            value = metadata.get(meta_key)
            if isinstance(value, str) and (found := self._index.get((kind, value.lower()))):
                return found
        for meta_key in PHONE_KEYS:
            value = metadata.get(meta_key)
            key = phone_key(value) if isinstance(value, str) else ""
            if key and (found := self._index.get(("phone", key))):
                return found
        return None


def _customer(row: Any) -> Customer:
    if not isinstance(row, dict):
        raise TypeError("must be an object")
    for key in ("id", "name"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise ValueError(f"'{key}' must be a non-empty string")
    known = {
        "id",
        "name",
        "preferred_name",
        "tier",
        "phones",
        "email",
        "account_id",
        "open_cases",
        "past_calls",
    }
    return Customer(
        id=row["id"],
        name=row["name"],
        preferred_name=str(row.get("preferred_name") or ""),
        tier=str(row.get("tier") or "guest").lower(),
        phones=tuple(str(p) for p in row.get("phones") or ()),
        email=str(row.get("email") or ""),
        account_id=str(row.get("account_id") or ""),
        open_cases=tuple(
            Case(
                str(c["id"]),
                str(c.get("summary", "")),
                str(c.get("intent", "")),
                str(c.get("opened", "")),
            )
            for c in row.get("open_cases") or ()
        ),
        past_calls=tuple(
            PastCall(str(c.get("date", "")), str(c.get("intent", "")), str(c.get("summary", "")))
            for c in row.get("past_calls") or ()
        ),
        extra={k: v for k, v in row.items() if k not in known},
    )


def predict_reason(customer: Customer, today: date | None = None) -> PredictedReason | None:
    if customer.open_cases:
        case = max(customer.open_cases, key=lambda c: c.opened)
        if case.intent:
            opened = f", opened {case.opened}" if case.opened else ""
            return PredictedReason(
                case.intent, f"open case {case.id}{opened}: {case.summary}", case.id
            )
    today = today or date.today()
    recent = []
    for call in customer.past_calls:
        try:
            when = date.fromisoformat(call.date)
        except ValueError:
            continue
        if call.intent and today - when <= timedelta(days=14):
            recent.append(call.intent)
    if recent:
        intent, count = Counter(recent).most_common(1)[0]
        return PredictedReason(intent, f"{count} call(s) about it in the last 14 days")
    return None
