"""Who is the agent on a mixed (one-channel) call: evidence from what each speaker says.

A diarized call knows its speakers only as voices (0, 1, ...). What an agent says gives them
away: the greeting and self-introduction ("thank you for calling", "my name is", "how can I
help"), the playbook's checklist keywords (by definition what the agent says), and the
agent's own name. What a customer says points the other way ("I'm calling about", "my
order"), and so, more weakly, does how each speaks: for the company to the customer ("we",
"our", "you") or about themselves ("I", "my"). `RoleEvidence` keeps a score per speaker;
`roles` names the agent: the speaker with the most agent evidence, or, with none either way,
the one heard first (the agent answers an inbound call). Every other speaker is the
customer. Where the agent's voice print is kept (from their two-channel calls,
`CALLCUE_VOICE_PRINTS`), the voice matching it decides. Of three voices, one that says no
agent phrase and was heard only before both others spoke is a recorded prompt (an IVR's menu
before the agent answers; the diarizer finds it): the company's side, the agent's line, and
the other two are told apart as on a call of two.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from assist.categories import has_phrase, words_of

# what an agent says: an opening only an agent says counts double ("my name is", "let me
# check" are heard from customers too)
AGENT_OPENINGS: tuple[str, ...] = (
    "thank you for calling",
    "thanks for calling",
    "thank you for contacting",
    "thanks for contacting",
    "how can i help",
    "how may i help",
    "how can i assist",
    "how may i assist",
    "what can i do for you",
    "you've reached",
    "you have reached",
    "is there anything else i can",
    "anything else i can help",
    "thank you for holding",
    "thanks for holding",
    "this call may be recorded",
    "this call is recorded",
)
AGENT_PHRASES: tuple[str, ...] = (
    "my name is",
    "my name's",
    "speaking how",
    "can i have your",
    "can i get your",
    "could i get your",
    "may i have your",
    "let me check",
    "let me look",
    "let me pull up",
    "i can help you with",
    "one moment please",
    "thank you for your patience",
    "have a great day",
    "have a nice day",
)
CUSTOMER_PHRASES: tuple[str, ...] = (
    "i'm calling",
    "i am calling",
    "i was calling",
    "i called",
    "calling about",
    "calling because",
    "i need to",
    "i'd like to",
    "i would like to",
    "i want to",
    "my order",
    "my account",
    "my car",
    "can you help me",
    "could you help me",
    "i have a question",
    "i have a problem",
)
# The same in the other languages most heard on contact-center lines (a call in any language
# Whisper knows can be diarized), from the usual openings and requests of service calls in each.
# Accents are ignored when matching (Whisper drops and adds them); Japanese, Chinese (both
# scripts: Whisper writes either) and Thai put no spaces between words, so their phrases are
# found anywhere in the text.
AGENT_OPENINGS += (
    # German
    "vielen dank für ihren anruf",
    "danke für ihren anruf",
    "was kann ich für sie tun",
    "wie kann ich ihnen helfen",
    "sie sprechen mit",
    # French
    "merci de votre appel",
    "merci pour votre appel",
    "merci d'avoir appelé",
    "que puis-je faire pour vous",
    "comment puis-je vous aider",
    "en quoi puis-je vous aider",
    # Spanish
    "gracias por llamar",
    "gracias por comunicarse",
    "en qué puedo ayudarle",
    "en qué le puedo ayudar",
    "cómo puedo ayudarle",
    "cómo le puedo ayudar",
    # Portuguese
    "obrigado por ligar",
    "obrigada por ligar",
    "em que posso ajudar",
    "como posso ajudar",
    # Italian
    "grazie per aver chiamato",
    "come posso aiutarla",
    "in cosa posso aiutarla",
    # Dutch
    "bedankt voor het bellen",
    "waarmee kan ik u helpen",
    "hoe kan ik u helpen",
    "u spreekt met",
    # Turkish
    "nasıl yardımcı olabilirim",
    "aradığınız için teşekkür",
    # Japanese
    "お電話ありがとうございます",
    "お待たせいたしました",
    "お電話代わりました",
    "ご用件をお伺い",
    "いかがなさいましたか",
    # Chinese
    "感谢您的来电",
    "感謝您的來電",
    "有什么可以帮您",
    "有什麼可以幫您",
    "有什么可以帮到您",
    "有什麼可以幫到您",
    "很高兴为您服务",
    "很高興為您服務",
    # Thai
    "ขอบคุณที่โทรมา",
    "มีอะไรให้ช่วย",
    "มีอะไรให้ดิฉันช่วย",
    "มีอะไรให้ผมช่วย",
    "ยินดีให้บริการ",
)
AGENT_PHRASES += (
    "mein name ist",
    "haben sie noch fragen",
    "einen moment bitte",
    "je m'appelle",
    "un instant s'il vous plaît",
    "mi nombre es",
    "un momento por favor",
    "meu nome é",
    "um momento por favor",
    "mi chiamo",
    "mijn naam is",
    "een ogenblikje",
    "benim adım",
    "確認いたします",
    "为您查询",
    "為您查詢",
    "帮您查询",
    "幫您查詢",
)
CUSTOMER_PHRASES += (
    "ich möchte",
    "ich rufe an",
    "meine bestellung",
    "mein konto",
    "meine rechnung",
    "j'appelle",
    "je voudrais",
    "ma commande",
    "mon compte",
    "ma facture",
    "llamo por",
    "quisiera",
    "mi pedido",
    "mi cuenta",
    "mi factura",
    "estou ligando",
    "gostaria de",
    "meu pedido",
    "minha conta",
    "chiamo per",
    "vorrei",
    "il mio ordine",
    "ik bel",
    "ik wil graag",
    "mijn bestelling",
    "bir sorunum var",
    "bir problem var",
    "注文した",
    "お願いしたいのですが",
    "お願いしたいんですが",
    "問い合わせしたい",
    "解約したい",
    "我想问一下",
    "我想問一下",
    "我的订单",
    "我的訂單",
    "我的账户",
    "我的帳戶",
    "ขอสอบถาม",
    "บัญชีของฉัน",
    "บัญชีของผม",
    "บัญชีของดิฉัน",
)
FIRST_SPEAKER = 0.5  # the prior that whoever speaks first is the agent, in phrase hits
# Weak evidence that adds up over a call: an agent speaks for the company to the customer
# ("we", "our", "you"), a customer about themselves ("I", "my"). Each word counts this much
# of a phrase hit, at most one hit a stretch either way.
AGENT_WORDS = frozenset(
    {"we", "our", "us", "we're", "we'll", "we've", "you", "your", "you're", "you've", "you'll"}
)
CUSTOMER_WORDS = frozenset({"i", "my", "me", "mine", "i'm", "i've", "i'll", "i'd"})
PRONOUN = 0.1
ANOTHER_AGENT = 1.0  # a third voice's own evidence, in phrase hits, for it to be an agent too


def _words(text: str) -> tuple[str, ...]:
    """Lowercase words without accents ("appelé" and "appele" are one word; Turkish dotless
    ı as i)."""
    plain = unicodedata.normalize("NFKD", text.replace("ı", "i"))
    return words_of("".join(c for c in plain if not unicodedata.combining(c)))


def _phrases(texts: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    return tuple(p for p in (_words(t) for t in texts) if p)


# scripts written without spaces between words: Thai, hiragana and katakana, CJK ideographs
_UNSPACED = re.compile("[\u0e00-\u0e7f\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff]")


@lru_cache(maxsize=4096)  # (the built-in phrases and each call's agent name)
def _unspaced(phrase: tuple[str, ...]) -> str | None:
    """A phrase in a script without spaces, run together (None: a phrase of words)."""
    return "".join(phrase) if any(_UNSPACED.search(word) for word in phrase) else None


def _said(said: tuple[str, ...], compact: str, phrase: tuple[str, ...]) -> bool:
    """Whether `phrase` was said: as whole words, or, in a script without spaces, anywhere in
    the text (`compact`: its words run together)."""
    run = _unspaced(phrase)
    return run in compact if run is not None else has_phrase(said, phrase)


@dataclass
class RoleEvidence:
    """Agent evidence per speaker of one call, from the text of each stretch they said."""

    agent_openings: tuple[tuple[str, ...], ...] = _phrases(AGENT_OPENINGS)
    agent_phrases: tuple[tuple[str, ...], ...] = _phrases(AGENT_PHRASES)
    customer_phrases: tuple[tuple[str, ...], ...] = _phrases(CUSTOMER_PHRASES)
    scores: dict[int, float] = field(default_factory=dict)
    said_agent: dict[int, float] = field(default_factory=dict)  # agent phrase hits alone
    first: int | None = None
    # the voice the agent's kept voice print matched (set by the diarizer): it decides
    voice_agent: int | None = None
    # of three voices, one that says no agent phrase and was heard only before both others
    # spoke (set by the diarizer): a recorded prompt, the company's side
    prompt: int | None = None

    @classmethod
    def for_call(
        cls, extra_agent_phrases: Iterable[str] = (), agent_name: str = ""
    ) -> RoleEvidence:
        """The built-in phrases, plus the playbook's agent phrases and the agent's name
        ("this is Sam", "Sam speaking", "I'm Sam")."""
        extra = list(extra_agent_phrases)
        name = " ".join(words_of(agent_name)[:1])
        if name:
            extra += [f"this is {name}", f"{name} speaking", f"i'm {name}", f"name is {name}"]
        return cls(agent_phrases=_phrases((*AGENT_PHRASES, *extra)))

    def score(self, text: str) -> float:
        """Agent evidence of one stretch: phrase hits (agent's minus customer's) and the
        pronouns' leaning."""
        return sum(self._evidence(text))

    def agent_phrases_in(self, speaker: int) -> float:
        """What agents say, heard from `speaker` (phrase hits, no pronouns)."""
        return self.said_agent.get(speaker, 0.0)

    def _evidence(self, text: str) -> tuple[float, float, float]:
        """(agent phrase hits, minus customer phrase hits, pronouns' leaning)"""
        said = _words(text)
        compact = "".join(said)
        agent = sum(2 for p in self.agent_openings if _said(said, compact, p))
        agent += sum(1 for p in self.agent_phrases if _said(said, compact, p))
        customer = sum(1 for p in self.customer_phrases if _said(said, compact, p))
        leaning = sum(w in AGENT_WORDS for w in said) - sum(w in CUSTOMER_WORDS for w in said)
        return float(agent), -float(customer), max(-1.0, min(1.0, PRONOUN * leaning))

    def add(self, speaker: int, text: str) -> None:
        if self.first is None:
            self.first = speaker
        self._count(speaker, text, 1.0)

    def move(self, text: str, old: int, new: int) -> None:
        """A stretch once put down to `old` was `new`'s (the clustering changed its mind)."""
        self._count(old, text, -1.0)
        self._count(new, text, 1.0)

    def _count(self, speaker: int, text: str, sign: float) -> None:
        agent, customer, leaning = self._evidence(text)
        self.scores[speaker] = self.scores.get(speaker, 0.0) + sign * (agent + customer + leaning)
        self.said_agent[speaker] = self.said_agent.get(speaker, 0.0) + sign * agent

    def roles(self, live: Collection[int] | None = None) -> dict[int, str]:
        """Each speaker heard so far (of `live`, the voices the diarizer still has, when
        given) → "agent" or "customer"."""
        voices = [s for s in self.scores if live is None or s in live]
        if not voices:
            return {}
        prompt = self.prompt
        if prompt is not None and prompt in voices and len(voices) > 2:  # the others as if
            return {**self._roles([s for s in voices if s != prompt]), prompt: "agent"}  # alone
        return self._roles(voices)

    def _roles(self, voices: list[int]) -> dict[int, str]:
        def weight(speaker: int) -> float:
            return self.scores[speaker] + (FIRST_SPEAKER if speaker == self.first else 0.0)

        if self.voice_agent is not None and self.voice_agent in voices:
            agent = self.voice_agent
        elif len(voices) == 1:  # one voice so far: the agent unless it sounds a customer
            (only,) = voices
            return {only: "agent" if weight(only) > 0 else "customer"}
        else:
            agent = max(voices, key=lambda s: (weight(s), s == self.first))
        out = {s: "agent" if s == agent else "customer" for s in voices}
        if len(voices) > 2:
            # more than two voices (an IVR prompt, a transfer to another agent): another
            # voice that itself said what agents say is an agent too, but the least
            # agent-like voice stays the customer
            others = sorted((s for s in voices if s != agent), key=weight)
            for s in others[1:]:
                if self.scores[s] >= ANOTHER_AGENT:
                    out[s] = "agent"
        return out

    def forget(self, speaker: int) -> None:
        """A voice merged into another (its stretches moved there first)."""
        self.scores.pop(speaker, None)
        self.said_agent.pop(speaker, None)
        if self.first == speaker:
            self.first = None
        if self.prompt == speaker:
            self.prompt = None
