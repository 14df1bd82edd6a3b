"""Entity extraction and masking for live call transcripts.

`extract(text)` finds order ids, account ids, amounts, dates, emails, phone numbers, card
numbers, zip codes and social security numbers in one utterance, as Whisper (tiny.en) writes
it: numbers come as digits ("47 29 38 10", "(415) 555-0101", "$19.99") or as spoken words
("four seven two nine, three eight one oh", "double five", "twenty dollars and fifty cents",
"march fifth", "jane dot doe at gmail dot com"). Each `Entity` keeps the exact substring, its
character offsets and a normalized value. `mask()` rewrites the text with the sensitive spans
(card numbers and SSNs by default) replaced; `mask_entities()` masks the entities themselves.

How it works: the text is split into tokens once; detectors run from the most specific
(written emails, formatted dates/SSNs/phones, "$" amounts) to the most generic (runs of
digits); each claims its tokens so later detectors never overlap earlier ones. Runs of
consecutive digits, digit words, "oh", "double X", teens and tens ("twenty one" -> 21) are
joined across spaces, commas and hyphens into one number, then classified by length, shape,
the Luhn check and the nearest context word ("order", "account", "phone", "card", "zip",
"social"...) up to 8 words before (or 5 after) the number.

Normalized values: ids, phones, cards, SSNs are digits only (phones as the 10-digit national
number, a leading country code 1 dropped); account ids with letters are upper-cased; zip codes
"94105" or "94105-1234"; amounts "20.00" (US dollars only); dates ISO "YYYY-MM-DD", the year of
a date said without one being the one that puts it nearest `today` (so in January "December
28th" is last December), "--MM-DD" when no year near `today` has that day (February 29th);
emails lower-cased with spoken "at"/"dot"/"underscore"/"dash" resolved.

Limits (rules, not a model): US formats only (phones, m/d/y dates, zip codes, dollars); a
number is classified from its own digits and a few words around it, so "my number is ..." with
ten digits is a phone, a bare 8-12 digit number an order id (a bare 10-digit one too, unless
written like a phone: "415-555-0101"), a Luhn-valid 13-19 digit number a card even after
"order number", and a lower-case word with digits ("cminh730", a username?) an account id only
after "account"; "next Friday" is the first Friday after today, "this
Friday" the first on or after today; a bare weekday ("on Monday"), times, percentages, non-USD
currencies and ordinals other than days of the month are not extracted; spoken prices are
ambiguous ("nine twenty dollars" is 9.20, "one hundred five" in a digit run is "1005"); spoken
emails take at most two whole words before "at". Every function is pure, linear in the input
(every look-around is bounded) and never raises on any string.
"""

from __future__ import annotations

import calendar
import datetime as dt
import re
from bisect import bisect_left, bisect_right
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import NamedTuple

__all__ = ["KINDS", "SENSITIVE_DEFAULT", "Entity", "extract", "mask", "mask_entities"]

KINDS = (
    "order_id",
    "account_id",
    "amount",
    "date",
    "email",
    "phone",
    "card_number",
    "zip_code",
    "ssn",
)
SENSITIVE_DEFAULT = frozenset({"card_number", "ssn"})

_DOTS = "••••"


@dataclass(frozen=True, slots=True)
class Entity:
    """One entity: `text` is exactly `input[start:end]`, `value` the normalized form."""

    kind: str
    text: str
    value: str
    start: int
    end: int

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "text": self.text,
            "value": self.value,
            "start": self.start,
            "end": self.end,
        }


# --------------------------------------------------------------------------- vocabulary

_UNITS = {
    "zero": 0,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
}
_TEENS = {
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "seventeen": 17,
    "eighteen": 18,
    "nineteen": 19,
}
_TENS = {
    "twenty": 20,
    "thirty": 30,
    "forty": 40,
    "fourty": 40,
    "fifty": 50,
    "sixty": 60,
    "seventy": 70,
    "eighty": 80,
    "ninety": 90,
}
_SCALES = {"hundred": 100, "thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
_ZERO_WORDS = frozenset({"oh", "o"})  # "zero" is in _UNITS
_REPEAT = {"double": 2, "triple": 3}
_DIGIT_WORDS = frozenset({*_UNITS, *_TEENS, *_TENS, *_ZERO_WORDS, *_REPEAT, "hundred", "thousand"})
_SMALL_NUMBER_WORDS = frozenset({*_UNITS, *_TEENS, *_TENS})
_AMOUNT_WORDS = frozenset({*_UNITS, *_TEENS, *_TENS, *_SCALES, "a", "and"})
_CURRENCY = frozenset({"dollar", "dollars", "buck", "bucks"})
_CENTS = frozenset({"cent", "cents"})

_ORDINALS = {
    "first": 1,
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
    "eleventh": 11,
    "twelfth": 12,
    "thirteenth": 13,
    "fourteenth": 14,
    "fifteenth": 15,
    "sixteenth": 16,
    "seventeenth": 17,
    "eighteenth": 18,
    "nineteenth": 19,
    "twentieth": 20,
    "thirtieth": 30,
}
_ORDINAL_UNITS = frozenset({w for w, v in _ORDINALS.items() if v < 10})

_MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
    "jan": 1,
    "feb": 2,
    "apr": 4,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
# Month names that are also common words: only a date when capitalized or with an ordinal day.
_AMBIGUOUS_MONTHS = frozenset({"may", "march"})
_WEEKDAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
_RELATIVE_DAYS = {"today": 0, "tonight": 0, "yesterday": -1, "tomorrow": 1}
_WEEK_MODIFIERS = frozenset({"last", "next", "this", "coming", "past"})
_DATE_PREPOSITIONS = frozenset(
    {"on", "by", "before", "after", "until", "till", "since", "from", "through"}
)
# "on the third floor", "by the second call": ordinals that are not days of the month.
_NOT_A_DAY_AFTER = frozenset(
    {
        "time",
        "times",
        "floor",
        "one",
        "ones",
        "try",
        "attempt",
        "call",
        "page",
        "line",
        "item",
        "items",
        "option",
        "step",
        "place",
        "day",
        "week",
        "month",
        "year",
        "person",
        "number",
        "digit",
        "thing",
        "box",
        "order",
        "charge",
        "payment",
    }
)

# Context words for a number, looked up from the number outwards.
_CONTEXT = {
    "order": "order_id",
    "orders": "order_id",
    "purchase": "order_id",
    "receipt": "order_id",
    "confirmation": "order_id",
    "account": "account_id",
    "acct": "account_id",
    "phone": "phone",
    "cell": "phone",
    "mobile": "phone",
    "telephone": "phone",
    "callback": "phone",
    "call": "phone",
    "reach": "phone",
    "text": "phone",
    "fax": "phone",
    "landline": "phone",
    "card": "card_number",
    "credit": "card_number",
    "debit": "card_number",
    "visa": "card_number",
    "mastercard": "card_number",
    "amex": "card_number",
    "zip": "zip_code",
    "zipcode": "zip_code",
    "postal": "zip_code",
    "postcode": "zip_code",
    "social": "ssn",
    "ssn": "ssn",
    "security": "ssn",
}
_GENERIC_NUMBER = frozenset({"number", "no", "num", "#"})
_FILLERS = frozenset(
    {"uh", "um", "er", "ah", "eh", "hmm", "like", "so", "okay", "ok", "yeah", "yes", "well"}
)
_SENTENCE_END = frozenset({".", "?", "!", ";"})
_JOINERS = frozenset({"-", ",", "–"})

_ID_WORDS = frozenset({"id", "number", "no", "num", "#", "code"})
_LEAD_FILLERS = frozenset(
    {"is", "it's", "its", "it", "was", "be", "would", "will", "that's", ":", "-", *_FILLERS}
)

_TLDS = frozenset(
    {
        "com",
        "net",
        "org",
        "edu",
        "gov",
        "mil",
        "io",
        "co",
        "us",
        "uk",
        "ca",
        "info",
        "biz",
        "me",
        "ai",
        "app",
        "dev",
        "tv",
        "de",
        "fr",
        "au",
        "nl",
        "es",
        "ie",
        "nz",
        "mx",
        "br",
        "jp",
        "in",
        "xyz",
        "email",
    }
)
_DOMAIN_STOP = frozenset({"the", "a", "an", "this", "that", "my", "your", "our", "home", "work"})
_EMAIL_SEPARATORS = {
    "dot": ".",
    ".": ".",
    "underscore": "_",
    "_": "_",
    "dash": "-",
    "hyphen": "-",
    "-": "-",
}
_EMAIL_STOP = frozenset(
    {
        "is",
        "was",
        "it's",
        "its",
        "it",
        "my",
        "our",
        "your",
        "his",
        "her",
        "their",
        "the",
        "a",
        "an",
        "email",
        "mail",
        "address",
        "at",
        "to",
        "me",
        "us",
        "send",
        "sent",
        "and",
        "or",
        "but",
        "be",
        "use",
        "using",
        "that",
        "that's",
        "this",
        "i",
        "i'm",
        "you",
        "we",
        "they",
        "on",
        "in",
        "from",
        "for",
        "of",
        "with",
        "reach",
        "contact",
        "write",
        "please",
        "can",
        "could",
        "would",
        "should",
        "just",
        "also",
        "then",
        "here",
        "there",
        "home",
        "work",
        "look",
        "looking",
        "check",
        *_FILLERS,
    }
)

# --------------------------------------------------------------------------- regexes

_TOKEN_RE = re.compile(r"[A-Za-z0-9]+(?:['’][A-Za-z]+)*|\S")
_ORDINAL_SUFFIX_RE = re.compile(r"([0-9]{1,2})(?:st|nd|rd|th)")
_EMAIL_RE = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}"
    r"@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){1,8}"
)
_ISO_DATE_RE = re.compile(
    r"(?<![0-9A-Za-z/.-])([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})(?![0-9A-Za-z/-])"
)
_US_DATE_RE = re.compile(
    r"(?<![0-9A-Za-z/.-])([0-9]{1,2})([/-])([0-9]{1,2})\2([0-9]{4}|[0-9]{2})(?![0-9A-Za-z/-])"
)
_SSN_RE = re.compile(r"(?<![0-9A-Za-z-])[0-9]{3}-[0-9]{2}-[0-9]{4}(?![0-9A-Za-z-])")
_PHONE_RE = re.compile(
    r"(?<![0-9A-Za-z+])(?:\+?1[ .-]?)?(?:\([0-9]{3}\)[ .-]?|[0-9]{3}[ .-])[0-9]{3}[ .-][0-9]{4}"
    r"(?![0-9A-Za-z])"
)
_NUMBER = r"([0-9]{1,3}(?:,[0-9]{3}){1,4}|[0-9]{1,12})(?:\.([0-9]{1,2}))?(?![0-9])"
_DOLLAR_SIGN_RE = re.compile(
    r"(?<![0-9A-Za-z$])\$ ?" + _NUMBER + r"(?: ?(hundred|thousand|million|billion|k)\b)?"
    r"(?: ?(?:dollars?|bucks|usd)\b)?",
    re.IGNORECASE,
)
_DIGIT_DOLLARS_RE = re.compile(
    r"(?<![0-9A-Za-z.,$])" + _NUMBER + r" ?(?:(hundred|thousand|million|billion) )?"
    r"(?:dollars?|bucks|usd)\b",
    re.IGNORECASE,
)
_SCALE_SUFFIX = {"hundred": 100, "thousand": 1_000, "k": 1_000, "million": 10**6, "billion": 10**9}


# --------------------------------------------------------------------------- tokens


class _Tok(NamedTuple):
    text: str
    low: str
    start: int
    end: int
    kind: str  # "d" digits, "w" ASCII word, "m" letters and digits, "p" anything else


class _Hit(NamedTuple):
    start: int
    end: int
    kind: str
    value: str


def _tokenize(text: str) -> list[_Tok]:
    toks = []
    for m in _TOKEN_RE.finditer(text):
        s = m.group()
        if s[0].isascii() and s[0].isalnum():
            kind = "d" if s.isdigit() else ("m" if any(c.isdigit() for c in s) else "w")
        else:
            kind = "p"
        toks.append(_Tok(s, s.lower(), m.start(), m.end(), kind))
    return toks


class _Doc:
    """The tokens of one utterance and which of them an entity already claimed."""

    __slots__ = ("ends", "found", "free", "starts", "text", "toks")

    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokenize(text)
        self.starts = [t.start for t in self.toks]
        self.ends = [t.end for t in self.toks]
        self.free = [True] * len(self.toks)
        self.found: list[Entity] = []

    def low(self, i: int) -> str:
        """The lower-cased token at i, or "" when out of range or already claimed."""
        if 0 <= i < len(self.toks) and self.free[i]:
            return self.toks[i].low
        return ""

    def tok_range(self, start: int, end: int) -> range:
        return range(bisect_right(self.ends, start), bisect_left(self.starts, end))

    def claim(self, hit: _Hit) -> None:
        span = self.tok_range(hit.start, hit.end)
        if not span or not all(self.free[i] for i in span):
            return
        for i in span:
            self.free[i] = False
        text = self.text[hit.start : hit.end]
        self.found.append(Entity(hit.kind, text, hit.value, hit.start, hit.end))

    def hit(self, first: int, last: int, kind: str, value: str) -> _Hit:
        """A hit spanning tokens first..last inclusive."""
        return _Hit(self.toks[first].start, self.toks[last].end, kind, value)


# --------------------------------------------------------------------------- numbers


def _cardinal(words: Sequence[str]) -> int | None:
    """The value of a whole spoken cardinal ("a hundred and twenty"), None if it is not one."""
    if list(words) == ["zero"]:
        return 0
    total, cur, last, big = 0, 0, "", 10**12
    for idx, w in enumerate(words):
        more = idx + 1 < len(words)
        if w == "a":
            if idx != 0 or not more or words[idx + 1] not in _SCALES:
                return None
            cur, last = 1, "a"
        elif w == "and":
            if last not in ("hundred", "big") or not more:
                return None
            last = "and"
        elif w in _UNITS and w != "zero":
            if last not in ("", "tens", "hundred", "big", "and"):
                return None
            cur, last = cur + _UNITS[w], "unit"
        elif w in _TEENS or w in _TENS:
            if last not in ("", "hundred", "big", "and") or cur % 100:
                return None
            cur, last = (
                cur + _TEENS.get(w, 0) + _TENS.get(w, 0),
                ("teen" if w in _TEENS else "tens"),
            )
        elif w == "hundred":
            if last not in ("unit", "teen", "tens", "a") or not 1 <= cur <= 99:
                return None
            cur, last = cur * 100, "hundred"
        elif w in _SCALES:
            scale = _SCALES[w]
            if last not in ("unit", "teen", "tens", "hundred", "a") or scale >= big:
                return None
            total, cur, last, big = total + cur * scale, 0, "big", scale
        else:
            return None
    return None if last in ("", "a", "and") else total + cur


def _two_digits(words: Sequence[str]) -> int | None:
    """ "twenty", "twenty one", "fifteen", "oh five" -> 20, 21, 15, 5."""
    if len(words) == 1:
        return _TEENS.get(words[0], _TENS.get(words[0]))
    if len(words) == 2 and words[1] in _UNITS and words[1] != "zero":
        if words[0] in _TENS:
            return _TENS[words[0]] + _UNITS[words[1]]
        if words[0] in _ZERO_WORDS:
            return _UNITS[words[1]]
    return None


def _spoken_money(words: Sequence[str]) -> Decimal | None:
    """A spoken dollar figure: a cardinal, "a", or a price like "fifteen ninety nine" (15.99)."""
    if list(words) == ["a"]:
        return Decimal(1)
    whole = _cardinal(words)
    if whole is not None:
        return Decimal(whole)
    for cut in range(1, len(words)):
        dollars, cents = _cardinal(words[:cut]), _two_digits(words[cut:])
        if dollars is not None and 1 <= dollars <= 99 and cents is not None:
            return Decimal(dollars) + Decimal(cents) / 100
    return None


def _money(value: Decimal) -> str:
    return f"{value:.2f}"


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _words_before(doc: _Doc, k: int, allowed: frozenset[str], limit: int) -> list[int]:
    """Indices of the free tokens in `allowed` right before k (hyphens skipped), in order."""
    out: list[int] = []
    j = k - 1
    while j >= 0 and len(out) < limit:
        low = doc.low(j)
        if low == "-" and out and doc.low(j - 1) in allowed:  # "twenty-one"
            j -= 1
            continue
        if low not in allowed:
            break
        out.append(j)
        j -= 1
    return out[::-1]


def _words_after(doc: _Doc, k: int, allowed: frozenset[str], limit: int) -> list[int]:
    out: list[int] = []
    j = k
    while j < len(doc.toks) and len(out) < limit:
        low = doc.low(j)
        if low == "-" and out and doc.low(j + 1) in allowed:
            j += 1
            continue
        if low not in allowed:
            break
        out.append(j)
        j += 1
    return out


# --------------------------------------------------------------------------- context


def _context_word(doc: _Doc, j: int) -> tuple[str | None, bool, bool]:
    """(kind named by token j, whether it is a generic "number", whether the scan must stop)."""
    if not doc.free[j]:
        return None, False, True
    tok = doc.toks[j]
    if tok.kind == "p":
        stop = tok.low in _SENTENCE_END and not (tok.low == "." and doc.low(j - 1) == "no")
        return None, False, stop
    if tok.kind != "w" or tok.low in _DIGIT_WORDS:
        return None, False, True
    return _CONTEXT.get(tok.low), tok.low in _GENERIC_NUMBER, False


def _context(doc: _Doc, first: int, last: int) -> str | None:
    """The kind named by the nearest context word before (else after) tokens first..last.

    "number" when only a generic "number" was said ("my number is ...").
    """
    generic = False
    before = range(first - 1, max(first - 25, -1), -1)
    after = range(last + 1, min(last + 16, len(doc.toks)))
    for indices, limit in ((before, 8), (after, 5)):
        words = 0
        for j in indices:
            kind, is_generic, stop = _context_word(doc, j)
            if stop or words >= limit:
                break
            if kind is not None:
                return kind
            generic = generic or is_generic
            if doc.toks[j].kind == "w" and doc.toks[j].low not in _FILLERS:
                words += 1
    return "number" if generic else None


# --------------------------------------------------------------------------- dates


def _safe_date(year: int, month: int, day: int) -> dt.date | None:
    try:
        return dt.date(year, month, day)
    except ValueError:
        return None


def _infer_year(month: int, day: int, today: dt.date) -> str | None:
    """ISO date of month/day in the year that puts it nearest today; None if never valid."""
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(2000, month)[1]:
        return None
    options = [_safe_date(today.year + d, month, day) for d in (-1, 0, 1)]
    valid = [d for d in options if d is not None]
    if not valid:
        return f"--{month:02d}-{day:02d}"
    return min(valid, key=lambda d: abs((d - today).days)).isoformat()


def _infer_month(day: int, today: dt.date) -> str | None:
    """ISO date of day-of-month in the month (previous, this, next) that puts it nearest today."""
    valid = []
    for delta in (-1, 0, 1):
        months = today.year * 12 + today.month - 1 + delta
        found = _safe_date(months // 12, months % 12 + 1, day)
        if found is not None:
            valid.append(found)
    if not valid:
        return None
    return min(valid, key=lambda d: abs((d - today).days)).isoformat()


def _date_value(month: int, day: int, year: int | None, today: dt.date) -> str | None:
    if year is None:
        return _infer_year(month, day, today)
    found = _safe_date(year, month, day)
    return found.isoformat() if found else None


def _month_at(doc: _Doc, i: int) -> tuple[int, int] | None:
    """(month, next token index) when token i names a month."""
    month = _MONTHS.get(doc.low(i))
    if month is None:
        return None
    nxt = i + 1
    if doc.low(nxt) == "." and len(doc.low(i)) <= 4:
        nxt += 1
    return month, nxt


def _day_at(doc: _Doc, i: int) -> tuple[int, bool, int] | None:
    """(day of month, said as an ordinal, next index) for "5", "5th", "fifth", "twenty first"."""
    low = doc.low(i)
    if not low:
        return None
    kind = doc.toks[i].kind
    day, ordinal, nxt = 0, False, i + 1
    if kind == "d" and len(low) <= 2:
        day = int(low)
    elif kind == "m" and (m := _ORDINAL_SUFFIX_RE.fullmatch(low)):
        day, ordinal = int(m.group(1)), True
    elif low in ("twenty", "thirty"):
        j = i + 2 if doc.low(i + 1) == "-" else i + 1
        unit = doc.low(j)
        if unit in _ORDINAL_UNITS:
            day, ordinal, nxt = _TENS[low] + _ORDINALS[unit], True, j + 1
        elif unit in _UNITS and unit != "zero":
            day, nxt = _TENS[low] + _UNITS[unit], j + 1
        else:
            day = _TENS[low]
    elif low in _ORDINALS:
        day, ordinal = _ORDINALS[low], True
    elif low in _TEENS or (low in _UNITS and low != "zero"):
        day = _TEENS.get(low, _UNITS.get(low, 0))
    return (day, ordinal, nxt) if 1 <= day <= 31 else None


def _two_digits_at(doc: _Doc, i: int) -> tuple[int, int] | None:
    """A spoken 2-digit group at i ("twenty six", "oh five", "fifteen"): (value, next)."""
    low = doc.low(i)
    if low in _TEENS:
        return _TEENS[low], i + 1
    if low in _TENS or low in _ZERO_WORDS:
        j = i + 2 if doc.low(i + 1) == "-" else i + 1
        unit = doc.low(j)
        if unit in _UNITS and unit != "zero":
            return _TENS.get(low, 0) + _UNITS[unit], j + 1
        return (_TENS[low], i + 1) if low in _TENS else None
    return None


def _year_at(doc: _Doc, i: int) -> tuple[int, int] | None:
    """(year, next) for "2026", "twenty twenty six", "two thousand and five" (optional comma)."""
    if doc.low(i) == ",":
        i += 1
    low = doc.low(i)
    if low.isdigit():
        return (int(low), i + 1) if len(low) == 4 and 1900 <= int(low) <= 2099 else None
    if low in ("twenty", "nineteen"):
        rest = _two_digits_at(doc, i + 1)
        if rest is not None:
            return (2000 if low == "twenty" else 1900) + rest[0], rest[1]
    if low == "two" and doc.low(i + 1) == "thousand":
        j = i + 3 if doc.low(i + 2) == "and" else i + 2
        rest = _two_digits_at(doc, j)
        if rest is None and doc.low(j) in _UNITS and doc.low(j) != "zero":
            rest = _UNITS[doc.low(j)], j + 1
        return (2000 + rest[0], rest[1]) if rest else (2000, i + 2)
    return None


def _relative_days(doc: _Doc, i: int, weekday_today: int) -> tuple[int, int] | None:
    """(days from today, last token index) for "yesterday", "the day after tomorrow",
    "last Monday", "this coming friday" at i."""
    low = doc.low(i)
    if low == "day" and doc.low(i + 1) in ("before", "after"):
        target = "yesterday" if doc.low(i + 1) == "before" else "tomorrow"
        if doc.low(i + 2) == target:
            return (-2 if target == "yesterday" else 2), i + 2
    if low in _RELATIVE_DAYS:
        return _RELATIVE_DAYS[low], i
    if low not in _WEEK_MODIFIERS:
        return None
    j = i + 2 if doc.low(i + 1) in ("coming", "past") else i + 1
    weekday = _WEEKDAYS.get(doc.low(j))
    if weekday is None:
        return None
    if low == "last" or "past" in (low, doc.low(i + 1)):
        return -((weekday_today - weekday) % 7 or 7), j
    ahead = (weekday - weekday_today) % 7
    return (ahead or 7 if low == "next" else ahead), j


def _relative_at(doc: _Doc, i: int, today: dt.date) -> tuple[_Hit, int] | None:
    found = _relative_days(doc, i, today.weekday())
    if found is None:
        return None
    try:
        value = (today + dt.timedelta(days=found[0])).isoformat()
    except OverflowError:  # today is date.min or date.max
        return None
    return doc.hit(i, found[1], "date", value), found[1] + 1


def _with_year(
    doc: _Doc, first: int, nxt: int, month: int, day: int, today: dt.date
) -> tuple[_Hit, int] | None:
    year = _year_at(doc, nxt)
    value = _date_value(month, day, year[0] if year else None, today)
    if value is None:
        return None
    end = year[1] if year else nxt
    return doc.hit(first, end - 1, "date", value), end


def _month_first_at(doc: _Doc, i: int, today: dt.date) -> tuple[_Hit, int] | None:
    """ "March 5th", "march fifth, 2026", "December the 1st", "May 3 twenty twenty six"."""
    found = _month_at(doc, i)
    if found is None:
        return None
    month, j = found
    if doc.low(j) == "the":
        j += 1
    day = _day_at(doc, j)
    if day is None:
        return None
    tok = doc.toks[i]
    spoken_cardinal = not day[1] and doc.toks[j].kind == "w"  # "you may one day"
    if tok.low in _AMBIGUOUS_MONTHS and spoken_cardinal and not tok.text[0].isupper():
        return None
    return _with_year(doc, i, day[2], month, day[0], today)


def _day_of_month_at(doc: _Doc, i: int, today: dt.date) -> tuple[_Hit, int] | None:
    """ "the 5th of March", "fifth of may, 2025"."""
    j = i + 1 if doc.low(i) == "the" else i
    day = _day_at(doc, j)
    if day is None or not day[1] or doc.low(day[2]) != "of":
        return None
    found = _month_at(doc, day[2] + 1)
    if found is None:
        return None
    return _with_year(doc, i, found[1], found[0], day[0], today)


def _bare_ordinal_at(doc: _Doc, i: int, today: dt.date) -> tuple[_Hit, int] | None:
    """ "on the twelfth", "by the 3rd": a day of this, last or next month."""
    if doc.low(i) not in _DATE_PREPOSITIONS or doc.low(i + 1) != "the":
        return None
    day = _day_at(doc, i + 2)
    if day is None or not day[1]:
        return None
    after = doc.low(day[2])
    if after in _NOT_A_DAY_AFTER or (after == "of" and _month_at(doc, day[2] + 1)):
        return None
    value = _infer_month(day[0], today)
    if value is None:
        return None
    return doc.hit(i + 1, day[2] - 1, "date", value), day[2]


def _spoken_dates(doc: _Doc, today: dt.date) -> list[_Hit]:
    hits = []
    i = 0
    while i < len(doc.toks):
        found = (
            _relative_at(doc, i, today)
            or _month_first_at(doc, i, today)
            or _day_of_month_at(doc, i, today)
            or _bare_ordinal_at(doc, i, today)
        )
        if found is None:
            i += 1
        else:
            hits.append(found[0])
            i = found[1]
    return hits


def _numeric_dates(doc: _Doc, today: dt.date) -> list[_Hit]:
    hits = []
    for m in _ISO_DATE_RE.finditer(doc.text):
        iso = _safe_date(int(m.group(1)), int(m.group(2)), int(m.group(3)))
        if iso is not None and 1900 <= iso.year <= 2099:
            hits.append(_Hit(m.start(), m.end(), "date", iso.isoformat()))
    for m in _US_DATE_RE.finditer(doc.text):
        year = int(m.group(4))
        year = year + 2000 if year < 100 else year
        us = _safe_date(year, int(m.group(1)), int(m.group(3)))
        if us is not None and 1900 <= us.year <= 2099:
            hits.append(_Hit(m.start(), m.end(), "date", us.isoformat()))
    return hits


# --------------------------------------------------------------------------- amounts


def _cents_after(doc: _Doc, j: int) -> tuple[int, int] | None:
    """(cents, index of the "cents" token) for "and fifty cents", "50 cents" starting at j."""
    if doc.low(j) == "and":
        j += 1
    low = doc.low(j)
    if low.isdigit():
        cents, nxt = (int(low) if len(low) <= 2 else None), j + 1
    else:
        idx = _words_after(doc, j, _SMALL_NUMBER_WORDS, 3)
        cents, nxt = _cardinal([doc.toks[k].low for k in idx]), (idx[-1] + 1 if idx else j)
    if cents is not None and 1 <= cents <= 99 and doc.low(nxt) in _CENTS:
        return cents, nxt
    return None


def _cents_tail(doc: _Doc, j: int) -> tuple[int, int] | None:
    """(cents, last index) for "fifty" in "a dollar fifty." (a 2-digit group ending the phrase)."""
    found = _two_digits_at(doc, j)
    if found is None or found[0] < 10:
        return None
    after = found[1]
    if after < len(doc.toks) and doc.toks[after].kind != "p":
        return None
    return found[0], after - 1


def _with_cents(doc: _Doc, start: int, end: int, value: Decimal, whole: bool) -> _Hit:
    """The amount hit, extended over a following "and fifty cents" (or "a dollar fifty.")
    when the value is whole."""
    if whole:
        j = bisect_left(doc.starts, end)
        cents = _cents_after(doc, j) or _cents_tail(doc, j)
        if cents is not None:
            value += Decimal(cents[0]) / 100
            end = doc.toks[cents[1]].end
    return _Hit(start, end, "amount", _money(value))


def _digit_amounts(doc: _Doc, today: dt.date) -> list[_Hit]:
    """ "$20", "$1,250.00", "$2 million", "19.99 dollars", "45 bucks"."""
    hits = []
    for regex in (_DOLLAR_SIGN_RE, _DIGIT_DOLLARS_RE):
        for m in regex.finditer(doc.text):
            value = Decimal(m.group(1).replace(",", ""))
            if m.group(2):
                value += Decimal(m.group(2).ljust(2, "0")) / 100
            if m.group(3):
                value *= _SCALE_SUFFIX[m.group(3).lower()]
            hits.append(_with_cents(doc, m.start(), m.end(), value, not m.group(2)))
    return hits


def _spoken_amounts(doc: _Doc, today: dt.date) -> list[_Hit]:
    """ "twenty dollars and fifty cents", "a hundred and twenty bucks", "fifty cents"."""
    hits = []
    for k, tok in enumerate(doc.toks):
        if not doc.free[k]:
            continue
        if tok.low in _CURRENCY:
            idx = _words_before(doc, k, _AMOUNT_WORDS, 10)
            words = [doc.toks[j].low for j in idx]
            for s in range(len(words)):
                value = _spoken_money(words[s:])
                if value is not None:
                    whole = value == value.to_integral_value()
                    hits.append(_with_cents(doc, doc.toks[idx[s]].start, tok.end, value, whole))
                    break
        elif tok.low in _CENTS:
            idx = _words_before(doc, k, _SMALL_NUMBER_WORDS, 3)
            cents = _cardinal([doc.toks[j].low for j in idx]) if idx else None
            if not idx and k and doc.low(k - 1).isdigit() and len(doc.low(k - 1)) <= 2:
                idx, cents = [k - 1], int(doc.low(k - 1))
            if cents is not None and 1 <= cents <= 99:
                hits.append(doc.hit(idx[0], k, "amount", _money(Decimal(cents) / 100)))
    return hits


# --------------------------------------------------------------------------- emails


def _written_emails(doc: _Doc, today: dt.date) -> list[_Hit]:
    hits = []
    for m in _EMAIL_RE.finditer(doc.text):
        tld = m.group().rsplit(".", 1)[-1]
        if len(tld) >= 2 and tld.isalpha():
            hits.append(_Hit(m.start(), m.end(), "email", m.group().lower()))
    return hits


def _email_separator(doc: _Doc, j: int) -> str | None:
    """The email character token j stands for; a written "." only inside a word ("jane.doe")."""
    sep = _EMAIL_SEPARATORS.get(doc.low(j))
    if sep is None or doc.toks[j].kind == "w":
        return sep
    toks = doc.toks
    glued = 0 < j < len(toks) - 1 and toks[j - 1].end == toks[j].start == toks[j + 1].start - 1
    return sep if glued else None


def _label_at(doc: _Doc, j: int) -> tuple[str, int] | None:
    """("my-company", last token index) for a domain label "my dash company" at j."""
    parts: list[str] = []
    while len(parts) < 4:
        low = doc.low(j)
        if not low or doc.toks[j].kind == "p":
            break
        parts.append(low)
        nxt = doc.low(j + 2)
        if _email_separator(doc, j + 1) != "-" or not nxt or doc.toks[j + 2].kind == "p":
            break
        j += 2
    return ("-".join(parts), j) if parts else None


def _domain_after(doc: _Doc, i: int) -> tuple[str, int] | None:
    """("gmail.com", last token index) for "gmail dot com" / "gmail.com" starting at i."""
    labels: list[str] = []
    best: tuple[str, int] | None = None
    j = i
    while len(labels) < 6:
        label = _label_at(doc, j)
        if label is None or (not labels and label[0] in _DOMAIN_STOP):
            break
        labels.append(label[0])
        j = label[1]
        if len(labels) > 1 and label[0] in _TLDS:
            best = ".".join(labels), j
        if _email_separator(doc, j + 1) != ".":
            break
        j += 2
    return best


def _local_before(doc: _Doc, a: int) -> tuple[str, int] | None:
    """("jane.doe", first token index) for the spoken local part right before "at"."""
    parts: list[str] = []
    first = a
    names = 0
    j = a - 1
    while j >= 0 and len(parts) < 10:
        low = doc.low(j)
        sep = _email_separator(doc, j)
        tok = doc.toks[j]
        if sep is not None:
            parts.append(sep)
        elif not low or tok.kind == "p" or low in _EMAIL_STOP or "'" in low:
            break
        elif low in _UNITS:
            parts.append(str(_UNITS[low]))
        else:
            names += int(tok.kind == "w" and len(low) > 1)
            if names > 2:
                break
            parts.append(low)
        first = j
        j -= 1
    while parts and parts[-1] in ".-_":
        parts.pop()
        first += 1
    local = "".join(reversed(parts)).strip(".-_")
    return (local, first) if local else None


def _spoken_emails(doc: _Doc, today: dt.date) -> list[_Hit]:
    """ "jane dot doe at gmail dot com", "j doe at example.com"."""
    hits = []
    for a, tok in enumerate(doc.toks):
        if tok.low != "at" or not doc.free[a]:
            continue
        domain = _domain_after(doc, a + 1)
        local = _local_before(doc, a) if domain else None
        if domain and local:
            hits.append(doc.hit(local[1], domain[1], "email", f"{local[0]}@{domain[0]}"))
    return hits


# --------------------------------------------------------------------------- account ids


def _is_alnum_id(tok: _Tok) -> bool:
    return (
        tok.kind == "m"
        and 8 <= len(tok.text) <= 12
        and tok.text.isalnum()
        and any(c.isalpha() for c in tok.text)
    )


def _alnum_accounts(doc: _Doc, today: dt.date) -> list[_Hit]:
    """Tokens like "ZKE1FAB5V0": 8-12 letters and digits, both present; one with lower-case
    letters ("cminh730", likely a username) only after "account"."""
    return [
        doc.hit(i, i, "account_id", tok.text.upper())
        for i, tok in enumerate(doc.toks)
        if doc.free[i]
        and _is_alnum_id(tok)
        and (tok.text.isupper() or _context(doc, i, i) == "account_id")
    ]


def _spelled_piece(doc: _Doc, k: int) -> tuple[str, int] | None:
    """One spelled character group at k: "z", "one", "oh", "double five", "ZKE", "5V0"."""
    low = doc.low(k)
    tok = doc.toks[k] if low else None
    if tok is None or tok.kind == "p":
        return None
    if tok.kind in ("d", "m"):
        return tok.text.upper(), k + 1
    if low in _UNITS:
        return str(_UNITS[low]), k + 1
    if low == "oh":
        return "0", k + 1
    if low in _REPEAT and doc.low(k + 1) not in _REPEAT:
        nxt = _spelled_piece(doc, k + 1)
        if nxt and len(nxt[0]) == 1:
            return nxt[0] * _REPEAT[low], nxt[1]
        return None
    if len(low) == 1:
        after = doc.low(k + 1)
        pronoun = low in ("a", "i") and len(after) > 1 and after.isalpha()
        if pronoun and after not in _DIGIT_WORDS:
            return None
        return low.upper(), k + 1
    if len(low) <= 4 and tok.text.isupper():
        return tok.text, k + 1
    return None


def _spelled_accounts(doc: _Doc, today: dt.date) -> list[_Hit]:
    """After "account id/number": "z k e one f a b five v zero", "ZKE 1 FAB 5 V 0"."""
    hits = []
    for i, tok in enumerate(doc.toks):
        if tok.low not in ("account", "acct") or not doc.free[i]:
            continue
        j = i + 1
        while j - i <= 6 and (doc.low(j) in _ID_WORDS or doc.low(j) in _LEAD_FILLERS):
            j += 1
        chars: list[str] = []
        first, last, k = j, -1, j
        while len("".join(chars)) <= 12:
            if doc.low(k) in (*_JOINERS, ".") and last >= 0:
                k += 1
                continue
            piece = _spelled_piece(doc, k)
            if piece is None:
                break
            chars.append(piece[0])
            last, k = piece[1] - 1, piece[1]
        spelled = "".join(chars)
        has_letter = any(c.isalpha() for c in spelled)
        if 8 <= len(spelled) <= 12 and has_letter and any(c.isdigit() for c in spelled):
            hits.append(doc.hit(first, last, "account_id", spelled))
    return hits


# --------------------------------------------------------------------------- digit runs


class _Piece(NamedTuple):
    first: int  # token indices, inclusive
    last: int
    digits: str
    sep: str  # joiners between the previous piece and this one
    spoken: bool
    oh: bool  # a lone "oh"/"o", a zero only next to other spoken digits


def _scaled(doc: _Doc, i: int, digit: str, spoken: bool) -> _Piece:
    """A single digit, or "eight hundred" (800), "one hundred twenty" (120), "two thousand"."""
    scale = doc.low(i + 1)
    if digit != "0" and scale == "hundred":
        fill = _two_digits_at(doc, i + 2)
        if fill is not None and fill[0] >= 10:
            return _Piece(i, fill[1] - 1, f"{digit}{fill[0]:02d}", "", True, False)
        return _Piece(i, i + 1, digit + "00", "", True, False)
    if digit != "0" and scale == "thousand":
        return _Piece(i, i + 1, digit + "000", "", True, False)
    return _Piece(i, i, digit, "", spoken, False)


def _digit_item(doc: _Doc, i: int) -> _Piece | None:
    low = doc.low(i)
    if not low:
        return None
    if doc.toks[i].kind == "d":
        if len(low) == 1:
            return _scaled(doc, i, low, False)
        return _Piece(i, i, low, "", False, False)
    if low in _UNITS:
        return _scaled(doc, i, str(_UNITS[low]), True)
    if low in _ZERO_WORDS:
        return _Piece(i, i, "0", "", True, True)
    if low in _TEENS or low in _TENS:
        found = _two_digits_at(doc, i)
        if found is not None:
            return _Piece(i, found[1] - 1, str(found[0]), "", True, False)
    if low in _REPEAT and doc.low(i + 1) not in _REPEAT:
        nxt = _digit_item(doc, i + 1)
        if nxt is not None and len(nxt.digits) == 1:
            return _Piece(i, nxt.last, nxt.digits * _REPEAT[low], "", True, False)
    return None


def _trim_oh(doc: _Doc, pieces: list[_Piece]) -> list[_Piece]:
    """Drop an "oh" at either end unless it sits right next to another spoken digit."""
    lo, hi = 0, len(pieces)
    while lo < hi and pieces[lo].oh:
        glued = lo + 1 < hi and not pieces[lo + 1].sep and pieces[lo + 1].spoken
        if glued and doc.toks[pieces[lo].first].text != "Oh":  # "Oh, ..." starts a sentence
            break
        lo += 1
    while lo < hi and pieces[hi - 1].oh:
        if hi - 1 > lo and not pieces[hi - 1].sep and pieces[hi - 2].spoken:
            break
        hi -= 1
    kept = pieces[lo:hi]
    if kept:
        kept[0] = kept[0]._replace(sep="")
    return kept


def _digit_runs(doc: _Doc) -> list[list[_Piece]]:
    """Maximal runs of digit pieces joined by spaces, commas or hyphens."""
    runs = []
    i, n = 0, len(doc.toks)
    while i < n:
        item = _digit_item(doc, i)
        if item is None:
            i += 1
            continue
        pieces = [item]
        k = item.last + 1
        while k < n:
            m = k
            while m < n and m - k < 2 and doc.low(m) in _JOINERS:
                m += 1
            nxt = _digit_item(doc, m)
            if nxt is None:
                break
            pieces.append(nxt._replace(sep="".join(t.low for t in doc.toks[k:m])))
            k = nxt.last + 1
        runs.append(_trim_oh(doc, pieces))
        i = k
    return [run for run in runs if run]


def _groups(pieces: Sequence[_Piece]) -> list[str]:
    """The written or spoken digit groups ("415-555-0101" -> ["415", "555", "0101"])."""
    groups: list[str] = []
    prev: _Piece | None = None
    for p in pieces:
        new_group = prev is None or bool(p.sep) or not (p.spoken and prev.spoken)
        if new_group:
            groups.append(p.digits)
        else:
            groups[-1] += p.digits
        prev = p
    return groups


_PHONE_SHAPES = ([3, 3, 4], [1, 3, 3, 4])
_YEAR_RE = re.compile(r"(?:19|20)[0-9]{2}")


def _classify(groups: list[str], ctx: str | None) -> tuple[str, str] | None:
    """(kind, value) of a digit run given its groups and context word, None if nothing."""
    digits = "".join(groups)
    n = len(digits)
    shape = [len(g) for g in groups]
    if ctx == "ssn":
        return ("ssn", digits) if n == 9 else None
    if ctx == "zip_code":
        if n in (5, 9):
            return "zip_code", digits if n == 5 else f"{digits[:5]}-{digits[5:]}"
        return None
    if 13 <= n <= 19 and _luhn(digits):
        return "card_number", digits
    if ctx == "card_number":
        return None
    if ctx == "order_id":
        return ("order_id", digits) if 6 <= n <= 20 else None
    if ctx == "account_id":
        return ("account_id", digits) if 6 <= n <= 17 else None
    phone_like = n == 10 or (n == 11 and digits[0] == "1")
    if phone_like and (ctx is not None or shape in _PHONE_SHAPES):
        return "phone", digits[-10:]
    if shape == [3, 2, 4]:
        return "ssn", digits
    if all(_YEAR_RE.fullmatch(g) for g in groups):  # "in 2019, 2020"
        return None
    if 8 <= n <= 12:
        return "order_id", digits
    return None


def _split_at_commas(pieces: list[_Piece]) -> list[list[_Piece]]:
    segments: list[list[_Piece]] = [[]]
    for p in pieces:
        if "," in p.sep:
            segments.append([p._replace(sep="")])
        else:
            segments[-1].append(p)
    return segments


def _run_hits(doc: _Doc, today: dt.date) -> list[_Hit]:
    """Classify each digit run; a run that is nothing whole is retried split at its commas."""
    hits = []
    for run in _digit_runs(doc):
        ctx = _context(doc, run[0].first, run[-1].last)
        found = _classify(_groups(run), ctx)
        if found is not None:
            hits.append(doc.hit(run[0].first, run[-1].last, *found))
            continue
        segments = _split_at_commas(run)
        for n, seg in enumerate(segments if len(segments) > 1 else []):
            seg_ctx = ctx if n == 0 else _context(doc, seg[0].first, seg[-1].last)
            found = _classify(_groups(seg), seg_ctx)
            if found is not None:
                hits.append(doc.hit(seg[0].first, seg[-1].last, *found))
    return hits


# --------------------------------------------------------------------------- formatted


def _formatted_ssns(doc: _Doc, today: dt.date) -> list[_Hit]:
    return [
        _Hit(m.start(), m.end(), "ssn", m.group().replace("-", ""))
        for m in _SSN_RE.finditer(doc.text)
    ]


def _formatted_phones(doc: _Doc, today: dt.date) -> list[_Hit]:
    """ "(415) 555-0101", "+1 415 555 0101", "415.555.0101", unless said to be another id."""
    hits = []
    for m in _PHONE_RE.finditer(doc.text):
        span = doc.tok_range(m.start(), m.end())
        if not span:
            continue
        ctx = _context(doc, span.start, span.stop - 1)
        if ctx in ("order_id", "account_id", "card_number", "ssn", "zip_code"):
            continue
        digits = "".join(c for c in m.group() if c.isdigit())
        hits.append(_Hit(m.start(), m.end(), "phone", digits[-10:]))
    return hits


# --------------------------------------------------------------------------- public API

_DETECTORS = (
    _written_emails,
    _numeric_dates,
    _formatted_ssns,
    _formatted_phones,
    _digit_amounts,
    _spoken_emails,
    _spoken_amounts,
    _spoken_dates,
    _alnum_accounts,
    _spelled_accounts,
    _run_hits,
)


def extract(text: str, *, today: dt.date | None = None) -> list[Entity]:
    """All entities in `text`, sorted by start, never overlapping.

    `today` anchors relative dates and the year of dates said without one (default: the
    local date now).
    """
    if not text or not isinstance(text, str):
        return []
    ref = today if today is not None else dt.date.today()
    doc = _Doc(text)
    for detect in _DETECTORS:
        for hit in detect(doc, ref):
            doc.claim(hit)
    return sorted(doc.found, key=lambda e: (e.start, e.end))


def _last4(entity: Entity) -> str:
    digits = "".join(c for c in entity.value if c.isdigit()) or "".join(
        c for c in entity.text if c.isdigit()
    )
    return digits[-4:]


def _mask_label(entity: Entity) -> str:
    if entity.kind == "card_number":
        return f"[card {_DOTS}{_last4(entity)}]"
    if entity.kind == "ssn":
        return f"[ssn {_DOTS}]"
    return f"[{entity.kind}]"


def mask(text: str, entities: Sequence[Entity], kinds: Collection[str] = SENSITIVE_DEFAULT) -> str:
    """`text` with each entity of a masked kind replaced by its mask, the rest unchanged.

    Spans are taken from the entities' offsets (those of `extract(text)`); entities outside
    the text or overlapping an earlier masked one are skipped.
    """
    chosen = sorted(
        (e for e in entities if e.kind in kinds and 0 <= e.start < e.end <= len(text)),
        key=lambda e: (e.start, -e.end),
    )
    out: list[str] = []
    pos = 0
    for e in chosen:
        if e.start < pos:
            continue
        out.append(text[pos : e.start])
        out.append(_mask_label(e))
        pos = e.end
    out.append(text[pos:])
    return "".join(out)


def mask_entities(
    entities: Sequence[Entity], kinds: Collection[str] = SENSITIVE_DEFAULT
) -> list[Entity]:
    """The same entities, those of a masked kind with `text` set to the mask and `value` to
    "••••1234" (cards, last four kept) or "••••"; offsets still refer to the original text."""
    out = []
    for e in entities:
        if e.kind in kinds:
            value = _DOTS + _last4(e) if e.kind == "card_number" else _DOTS
            e = replace(e, text=_mask_label(e), value=value)
        out.append(e)
    return out
