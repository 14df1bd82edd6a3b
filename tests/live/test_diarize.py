"""Mono calls: agent and customer told apart by voice (live.diarize, models.speaker,
assist.roles), in-process with a stand-in voice model and end to end on real mixed calls."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from websockets.asyncio.client import connect

from assist.roles import RoleEvidence
from audio.files import CallAudio, load_call_audio
from benchmarks.diarization import apply_relabels
from clients.native import stream_call
from live.diarize import EDGE_S, CallDiarizer, Part
from models.speaker import Print, SpeakerEncoder, SpeakerModelError
from models.whisper import WordTiming
from tests.conftest import AUDIO

GENESYS = "cs_genesys_audiohook_stereo_pcmu.wav"  # channel 0 greets: the agent


# -- who is the agent ---------------------------------------------------------------------


def test_role_evidence_names_the_agent_by_what_is_said() -> None:
    roles = RoleEvidence.for_call(agent_name="Priya Shah")
    roles.add(0, "Hi, I'm calling about my order.")
    assert roles.roles() == {0: "customer"}  # one voice that sounds a customer
    roles.add(1, "Thanks for calling, Priya speaking.")
    assert roles.roles() == {0: "customer", 1: "agent"}
    quiet = RoleEvidence()
    quiet.add(3, "Hello?")
    quiet.add(4, "Hello.")
    assert quiet.roles() == {3: "agent", 4: "customer"}  # nothing said: who spoke first


def test_role_evidence_hears_the_agent_in_other_languages() -> None:
    """A call in German whose customer speaks first: the agent's opening names the agent
    (with no phrase heard, the first voice would be taken for the agent's)."""
    german = RoleEvidence()
    german.add(0, "Guten Tag, ich möchte meine Kreditkarte sperren lassen.")
    german.add(1, "Sie sprechen mit Edith Fischer. Was kann ich für Sie tun?")
    assert german.roles() == {0: "customer", 1: "agent"}
    no_phrases = RoleEvidence(agent_openings=(), agent_phrases=(), customer_phrases=())
    no_phrases.add(0, "Guten Tag, ich möchte meine Kreditkarte sperren lassen.")
    no_phrases.add(1, "Sie sprechen mit Edith Fischer. Was kann ich für Sie tun?")
    assert no_phrases.roles() == {0: "agent", 1: "customer"}  # (the first voice)
    # accents as Whisper may or may not write them
    for opening in ("En qué puedo ayudarle?", "en que puedo ayudarle", "Merci d'avoir appele."):
        spanish = RoleEvidence()
        spanish.add(0, "Hola, buenas tardes.")
        spanish.add(1, opening)
        assert spanish.roles() == {0: "customer", 1: "agent"}, opening


def test_role_evidence_reads_languages_written_without_spaces() -> None:
    """Japanese, Chinese (either script) and Thai put no spaces between words: the agent's
    opening is found inside the sentence, whatever comes before it (and a customer who
    speaks first is not taken for the agent)."""
    calls = [
        (
            "先週注文した商品がまだ届いていないんですが。",
            "はい、お電話ありがとうございます。田中でございます。",
        ),
        ("你好,我想问一下我的订单。", "您好,感谢您的来电,有什么可以帮您?"),
        ("你好,我想問一下我的訂單。", "您好,感謝您的來電,很高興為您服務。"),
        ("สวัสดีค่ะ ขอสอบถามเรื่องพัสดุ", "สวัสดีครับ ขอบคุณที่โทรมาครับ มีอะไรให้ช่วยครับ"),
    ]
    for customer, agent in calls:
        roles = RoleEvidence()
        roles.add(0, customer)
        roles.add(1, agent)
        assert roles.roles() == {0: "customer", 1: "agent"}, agent
        assert roles.score(agent) >= 2 and roles.score(customer) < 0, customer
    assert RoleEvidence().score("お電話") == 0  # (part of a phrase is not the phrase)


# -- splitting and relabelling, with a stand-in voice model ---------------------------------


A, B = np.eye(256, dtype=np.float32)[0], np.eye(256, dtype=np.float32)[1]


class Voices:
    """Stand-in voice prints from a schedule: (until second, voice vector)."""

    def __init__(self, *schedule: tuple[float, Any]) -> None:
        self.schedule = schedule

    def prints(
        self, audio: Any, offset: float = 0.0, hop: float = 0.5, min_seconds: float = 0.4
    ) -> list[Print]:
        seconds = len(audio) / 16000
        out, t = [], offset
        while t < offset + max(seconds - 1.6, 0) + 1e-9 or not out:
            middle = t + min(1.6, seconds) / 2
            voice = next(v for until, v in self.schedule if middle < until)
            out.append(Print(t, t + min(1.6, seconds), voice))
            t += hop
        return out

    def span_prints(self, audio: Any, offset: float, spans: list[Any]) -> list[Print]:
        out = []
        for start, end in spans:
            middle = (start + end) / 2
            voice = next(v for until, v in self.schedule if middle < until)
            out.append(Print(round(start, 3), round(end, 3), voice))
        return out


class TwoVoices(Voices):
    """Voice A before `change` seconds (and from `back`), voice B between."""

    def __init__(self, change: float, back: float = 1e9) -> None:
        super().__init__((change, A), (back, B), (float("inf"), A))


def words(text: str, start: float, step: float = 0.4) -> tuple[WordTiming, ...]:
    return tuple(
        WordTiming(" " + w, round(start + i * step, 2), round(start + (i + 1) * step - 0.05, 2), 1)
        for i, w in enumerate(text.split())
    )


def diarizer(voices: TwoVoices) -> CallDiarizer:
    d = CallDiarizer(voices, ThreadPoolExecutor(1))  # type: ignore[arg-type]
    d.push(np.zeros(16000 * 60, dtype=np.float32))
    return d


async def test_a_final_is_cut_where_the_speaker_changes() -> None:
    d = diarizer(TwoVoices(change=4.0))
    said = words("thank you for calling how can I help hi I need to return these shoes", 0.5)
    parts = await d.split(0, said[0].start, said[-1].end, "".join(w.word for w in said), said)
    assert [p.role for p in parts] == ["agent", "customer"]
    assert parts[0].text.startswith("thank you") and parts[1].text.endswith("these shoes")
    assert parts[0].end <= parts[1].start
    assert len({p.utterance for p in parts}) == 2


async def test_an_early_guess_is_corrected_with_a_relabel() -> None:
    d = diarizer(TwoVoices(change=3.0))
    first = words("hello hello there", 0.2, 0.5)  # voice A, nothing that says who
    parts = await d.split(0, 0.2, first[-1].end, "hello hello there", first)
    assert parts[0].role == "agent"  # first voice heard: taken for the agent
    parts[0].seq = 7
    assert d.recluster() == []
    second = words("thank you for calling my name is Sam how can I help", 3.2)
    later = await d.split(1, 3.2, second[-1].end, "".join(w.word for w in second), second)
    assert later[0].role == "agent"
    changes = d.recluster()
    assert [(c.utterance, c.final_seq, c.previous, c.channel) for c in changes] == [
        (parts[0].utterance, 7, "agent", "customer")
    ]


async def test_a_third_voice_after_a_transfer_is_an_agent_of_its_own() -> None:
    """Agent, customer, then a second agent whose voice is nearer the customer's than the
    first agent's: with two voices at most it was put down to the customer."""
    second_agent = (0.5 * B + 0.866 * np.eye(256, dtype=np.float32)[2]).astype(np.float32)
    d = CallDiarizer(
        Voices((6, A), (12, B), (16, A), (22, second_agent), (1e9, B)),  # type: ignore[arg-type]
        ThreadPoolExecutor(1),
    )
    d.push(np.zeros(16000 * 40, dtype=np.float32))
    turns = [
        (0.2, "thank you for calling how can I help"),
        (6.2, "hi I need to check my order please"),
        (12.2, "let me transfer you to billing"),
        (16.2, "hi this is Mike in billing how can I help you today"),
        (22.2, "I was charged twice for my order"),
    ]
    roles = []
    for k, (start, text) in enumerate(turns):
        said = words(text, start, 0.5)
        for part in await d.split(k, start, said[-1].end, text, said):
            roles.append(part.role)
            part.seq = k + 1
        assert d.recluster() == []
    assert roles == ["agent", "customer", "agent", "agent", "customer"]
    assert len(d.clusters.speakers) == 3


async def prompt_call(turns: list[tuple[float, str]], *schedule: tuple[float, Any]) -> CallDiarizer:
    d = CallDiarizer(Voices(*schedule), ThreadPoolExecutor(1))  # type: ignore[arg-type]
    d.push(np.zeros(16000 * 60, dtype=np.float32))
    for k, (start, text) in enumerate(turns):
        said = words(text, start, 0.5 if len(text.split()) > 2 else 0.3)
        for part in await d.split(k, start, said[-1].end, text, said):
            part.seq = k + 1
        d.recluster()
    return d


PROMPT = np.eye(256, dtype=np.float32)[2]
IVR_CALL = [
    (0.2, "for sales press one for billing press two"),
    (6.2, "hello good morning who am I talking with"),
    (12.2, "hello it is Dana about a late delivery"),
    (18.2, "okay and when was that"),
    (24.2, "the tracking number has not moved"),
]


async def test_a_recorded_prompt_before_the_agent_is_on_the_agents_line() -> None:
    """An IVR menu (a voice of its own, heard only before the others spoke), then an agent
    and a customer, none of whom says what agents say: the prompt is the company's side,
    and the first voice after it is taken for the agent. (Before, the prompt was who spoke
    first, so the agent, and the real agent was on the customer's line.)"""
    schedule = ((6, PROMPT), (12, A), (18, B), (24, A), (30, B))
    d = await prompt_call(IVR_CALL, *schedule, (31, PROMPT), (1e9, B))
    assert len(d.clusters.speakers) == 3
    assert [p.role for p in d.parts] == ["agent", "agent", "customer", "agent", "customer"]
    assert d.evidence.prompt == d.parts[0].speaker
    assert d.evidence.first == d.parts[1].speaker  # who spoke first: the agent, after it
    # a sub-second part in the prompt's voice later on (a stray print) does not undo it
    more = await prompt_call([*IVR_CALL, (30.2, "uh huh")], *schedule, (31, PROMPT), (1e9, B))
    assert more.parts[-1].speaker == more.parts[0].speaker
    assert more.evidence.prompt == more.parts[0].speaker
    assert [p.role for p in more.parts[:5]] == ["agent", "agent", "customer", "agent", "customer"]


async def test_a_voice_heard_again_or_that_greets_is_no_prompt() -> None:
    """The first voice heard again for a second or more after the others spoke (a hold
    message, a transfer's announcement), or a first voice that says what agents say (the
    agent's own greeting heard as a voice of its own; a recorded greeting too): no prompt,
    the voices are told apart as before."""
    schedule = ((6, PROMPT), (12, A), (18, B), (24, A), (30, B))
    hold = [*IVR_CALL, (30.2, "please stay on the line while we connect you")]
    held = await prompt_call(hold, *schedule, (1e9, PROMPT))
    assert held.evidence.prompt is None
    assert held.evidence.first == held.parts[0].speaker
    greeting = [(0.2, "thank you for calling how can I help"), *IVR_CALL[1:]]
    greeted = await prompt_call(greeting, *schedule, (1e9, B))
    assert greeted.evidence.prompt is None
    assert greeted.parts[0].role == "agent" and greeted.parts[2].role == "customer"


class LoudVoices(TwoVoices):
    """Stand-in prints that read the voice off the audio itself (voice A's stretch at level
    0.1, B's at 0.2), so a print made from the wrong audio gets the wrong voice; keeps the
    spans each call printed."""

    def __init__(self, change: float) -> None:
        super().__init__(change)
        self.calls: list[list[tuple[float, float]]] = []

    def span_prints(self, audio: Any, offset: float, spans: list[Any]) -> list[Print]:
        self.calls.append(list(spans))
        out = []
        for start, end in spans:
            heard = audio[round((start - offset) * 16000) : round((end - offset) * 16000)]
            voice = A if float(np.mean(heard)) < 0.15 else B
            out.append(Print(round(start, 3), round(end, 3), voice))
        return out


async def test_prints_of_speech_are_made_as_it_is_heard_so_a_final_waits_for_its_edges() -> None:
    said = words("thank you for calling how can I help hi I need to return these shoes", 0.5)
    text = "".join(w.word for w in said)  # (0.5 to 6.45 s; the customer from 4.0 s)

    async def run(hear: bool, pending: bool = False) -> tuple[Any, CallDiarizer, list[Part]]:
        voices = LoudVoices(change=4.0)
        executor = ThreadPoolExecutor(1)
        d = CallDiarizer(voices, executor)  # type: ignore[arg-type]
        release = threading.Event()
        for k in range(400):  # 8 s in 20 ms chunks; the recognizer's utterance 0.3 to 7.2 s
            d.push(np.full(320, 0.1 if k < 200 else 0.2, dtype=np.float32))
            if pending and k == 359:  # the thread busy: the last prints are still to make
                executor.submit(release.wait)
            if hear:
                d.heard(0.3 if 15 <= k < 360 else None)
                if d._making is not None and not (pending and k >= 359):  # (done, in time)
                    await asyncio.wait([asyncio.wrap_future(d._making)])
        before = len(voices.calls)
        split = asyncio.ensure_future(d.split(0, said[0].start, said[-1].end, text, said))
        if pending:
            for _ in range(20):
                await asyncio.sleep(0)
            assert not split.done()  # it waits for the prints of its speech being made
            release.set()
        parts = await split
        return voices.calls[before:], d, parts

    made_by_split, heard, parts = await run(hear=True)
    made_late, late, parts_late = await run(hear=True, pending=True)
    made_alone, alone, expected = await run(hear=False)
    # the same prints, parts and parties either way
    assert [p.role for p in expected] == ["agent", "customer"]
    assert [(p.role, p.text) for p in parts] == [(p.role, p.text) for p in expected]
    assert [(p.role, p.text) for p in parts_late] == [(p.role, p.text) for p in expected]
    spans = [(p.start, p.end) for p in alone._prints]
    assert [(p.start, p.end) for p in heard._prints] == spans == sorted(spans)
    assert [(p.start, p.end) for p in late._prints] == spans
    # alone, the final printed every window itself; as heard, only the window at the end of
    # its words that the grid leaves more than EDGE_S of
    assert len(made_alone) == 1 and len(made_alone[0]) == 10
    assert made_by_split == [[pytest.approx((4.95, 6.55))]]
    assert made_late == [[pytest.approx((4.95, 6.55))]]


def test_a_finals_windows_cover_its_words() -> None:
    for lo, hi in [(0.33, 4.2), (0.1, 2.0), (7.77, 9.4), (3.0, 3.5), (12.04, 20.91), (5.0, 6.6)]:
        spans = CallDiarizer._spans(lo, hi)
        assert spans[0][0] - lo <= EDGE_S + 1e-9 and hi - spans[-1][1] <= EDGE_S + 1e-9
        assert all(lo - 1e-9 <= a and b <= hi + 1e-9 and b - a <= 1.6 + 1e-9 for a, b, _ in spans)
        assert all(0 < n[0] - p[0] <= 0.5 + 1e-9 for p, n in itertools.pairwise(spans))
        assert all(k is None or abs(a - 0.5 * k) < 1e-9 for a, _, k in spans)
    assert CallDiarizer._spans(1.0, 1.2) == []  # (too short to hear a voice)


def test_voices_that_come_out_alike_are_merged_and_the_place_is_free_again() -> None:
    """Three voices of which two are one person's: the refit merges them, the merged one
    takes no print, and a new voice later takes its place."""
    from models.speaker import Speaker, SpeakerClusters

    e = np.eye(256, dtype=np.float32)
    same = (0.96 * A + 0.28 * e[3]).astype(np.float32)  # A's voice, a little apart (0.96)
    d = CallDiarizer(TwoVoices(1e9), ThreadPoolExecutor(1))  # type: ignore[arg-type]
    voices = [A, B, same]
    d.clusters = SpeakerClusters(speakers=[Speaker(v.astype(np.float64), 3) for v in voices])
    d._prints = [Print(t, t + 1.6, v) for t, v in enumerate([A, A, A, B, B, B, same, same, same])]
    refit = d._refit()
    assert refit is not None
    labels, centres, merged_into = refit
    assert list(labels) == [0, 0, 0, 1, 1, 1, 0, 0, 0] and merged_into == {2: 0}
    assert not centres[2].any()  # (the merged voice has no centre)
    assert [s.count for s in d.clusters.speakers] == [6, 3, 0]
    assert d.clusters.assign(same) == 0  # joins A's voice, never the merged one
    assert d.clusters.assign(e[5]) == 2  # a new voice takes the free place
    assert [s.count > 0 for s in d.clusters.speakers] == [True, True, True]


async def test_a_sub_second_first_word_does_not_decide_who_spoke_first() -> None:
    """An outbound call: the customer answers with a bare "allo" (0.3 s), the agent then
    speaks, with no phrase that tells either: the agent is the first voice of a second or
    more."""
    d = diarizer(TwoVoices(change=1.0, back=8.0))  # A, B from 1 s, A again from 8 s
    allo = (WordTiming(" allo", 0.2, 0.5, 1),)
    parts = await d.split(0, 0.2, 0.5, "allo", allo)
    assert parts[0].role == "agent"  # nothing else heard yet
    parts[0].seq = 1
    second = words("oui bonjour madame ici le service clients", 1.2, 0.5)
    later = await d.split(1, 1.2, second[-1].end, "".join(w.word for w in second), second)
    assert later[0].role == "agent"
    third = words("ah non ce doit etre une erreur", 8.2, 0.5)
    last = await d.split(2, 8.2, third[-1].end, "".join(w.word for w in third), third)
    assert last[0].role == "customer"
    assert [(c.final_seq, c.channel) for c in d.recluster()] == [(1, "customer")]


def test_roles_of_three_voices_keep_a_customer_and_count_live_voices_only() -> None:
    roles = RoleEvidence(scores={0: 2.5, 1: 2.0, 2: 0.0}, first=0)
    # three voices: one that said agent phrases itself is an agent too, the least is not
    assert roles.roles() == {0: "agent", 1: "agent", 2: "customer"}
    # voice 2 merged away: two voices, one agent (a customer who said "my name is" stays one)
    assert roles.roles(live=[0, 1]) == {0: "agent", 1: "customer"}
    every = RoleEvidence(scores={0: 3.0, 1: 2.0, 2: 1.5}, first=0)
    assert every.roles() == {0: "agent", 1: "agent", 2: "customer"}


def test_a_part_on_a_merged_voice_moves_even_with_one_print() -> None:
    from live.diarize import Part
    from models.speaker import Speaker, SpeakerClusters

    e = np.eye(256, dtype=np.float32)
    same = (0.96 * A + 0.28 * e[3]).astype(np.float32)
    d = CallDiarizer(TwoVoices(1e9), ThreadPoolExecutor(1))  # type: ignore[arg-type]
    d.clusters = SpeakerClusters(speakers=[Speaker(v.astype(np.float64), 3) for v in (A, B, same)])
    d._prints = [Print(t, t + 1.6, v) for t, v in enumerate([A, A, A, B, B, B, same, same, same])]
    # the call's first part, of one print, on the voice that will be merged into A's
    first = Part(0, 6.0, 7.6, "thank you for calling", (), 2, "customer", [6], seq=1)
    d.parts = [first]
    d.evidence.add(2, first.text)
    d.evidence.add(1, "hi I need to check my order")
    changes = d.recluster()
    assert first.speaker == 0 and 2 not in d.evidence.scores
    assert d.evidence.first == 0
    assert [(c.final_seq, c.channel) for c in changes] == [(1, "agent")]


async def test_the_agents_kept_voice_decides_over_who_spoke_first() -> None:
    d = diarizer(TwoVoices(change=3.0))
    d.agent_voice = B  # the agent's voice print, kept from their two-channel calls
    first = words("hello hello there", 0.2, 0.5)  # voice A first, nothing that says who
    parts = await d.split(0, 0.2, first[-1].end, "hello hello there", first)
    parts[0].seq = 4
    assert parts[0].role == "agent"  # one voice, not the print's: who spoke first, for now
    second = words("yes hi so what is going on today", 3.2)  # B: no agent phrase at all
    later = await d.split(1, 3.2, second[-1].end, "".join(w.word for w in second), second)
    assert later[0].role == "agent"  # the kept print's voice, over who spoke first
    changes = d.recluster()
    assert [(c.final_seq, c.channel) for c in changes] == [(4, "customer")]


async def test_a_relabeled_line_is_read_again_by_assist_as_its_new_party() -> None:
    """A line first taken for the agent's is moved to the customer: screens get the
    relabel, and assist reads it as the customer's (sentiment, intent) once it is."""
    import time

    from audio.codec import AudioFormat
    from live.diarize import Relabel
    from live.session import CallSession
    from models.asr import Final
    from service.node import load_services
    from service.settings import Settings

    services = load_services(Settings.load(env={"CALLCUE_CUSTOMERS": "none"}), store=False)
    try:
        session = CallSession(
            services, "relabel-assist", AudioFormat("pcm16", 16000, 2), ("agent", "customer")
        )
        lead = services.recognition.streaming.speech_lead_ms
        assert [t.options.speech_lead_ms for t in session.transcribers] == [lead, lead]
        await session.start()
        text = "I want to cancel my order, it never arrived and I am really upset about it."
        session._on_final(
            "agent",
            Final(1, 0.5, 4.0, text, (), -0.2, 0.01, received_at=time.monotonic()),
        )
        feed = services.hub.feed("relabel-assist")
        assert feed is not None

        def read_as(channel: str) -> list[str]:
            return [
                e.type
                for e in feed.history
                if e.type in ("sentiment", "intent") and getattr(e, "channel", "") == channel
            ]

        deadline = time.monotonic() + 60
        while not read_as("agent"):
            assert time.monotonic() < deadline, "assist never read the line"
            await asyncio.sleep(0.05)
        assert read_as("customer") == []  # an agent's line: no customer intent or sentiment
        [final] = session.finals
        session._relabel([Relabel(1, final.seq, "customer", "agent")])
        while "intent" not in read_as("customer"):
            assert time.monotonic() < deadline, read_as("customer")
            await asyncio.sleep(0.05)
        assert "sentiment" in read_as("customer")
        relabeled = [e for e in feed.history if e.type == "transcript.relabeled"]
        assert [c["channel"] for c in relabeled[0].changes] == ["customer"]  # type: ignore[attr-defined]
        assert session.finals[0].channel == "customer"
        await session.finish("stop")
    finally:
        services.close()


async def test_a_mixed_utterances_revision_goes_to_its_parts_in_either_order() -> None:
    """Revision of a diarized call: the mixed utterance's revised words are given to the
    finals it was split into, whether the revision comes before the parts are out or after;
    a part whose text did not change gets no revision, one relabeled since gets it under its
    new party."""
    import time

    from audio.codec import AudioFormat
    from live.diarize import Relabel
    from live.session import CallSession
    from models.asr import Final, RevisedFinal
    from service.node import load_services
    from service.settings import Settings

    env = {"CALLCUE_CUSTOMERS": "none", "CALLCUE_ASSIST": "false", "CALLCUE_REVISE": "true"}
    services = load_services(Settings.load(env=env), store=False)
    try:
        session = CallSession(
            services,
            "mixed-revision",
            AudioFormat("pcm16", 16000, 1),
            ("agent", "customer"),
            diarize=True,
        )
        # (one mixed channel keeps no lead before a turn beyond `pad_ms`: the rise before it
        # may be the other voice's tail; two channels keep the setting's)
        streaming = services.recognition.streaming
        assert streaming.speech_lead_ms > streaming.pad_ms
        assert [t.options.speech_lead_ms for t in session.transcribers] == [streaming.pad_ms]
        await session.start()

        def publish(role: str, utterance: int, text: str, start: float) -> tuple:
            said = words(text, start)
            final = Final(utterance, start, said[-1].end, text, said, -0.2, 0.01, time.monotonic())
            session._on_final(role, final)
            return (session.finals[-1].seq, start, said[-1].end, text)

        def revised(utterance: int, text: str, start: float) -> RevisedFinal:
            return RevisedFinal(utterance, text, words(text, start), "en")

        feed = services.hub.feed("mixed-revision")
        assert feed is not None

        def revisions() -> list[tuple[int, str, str]]:
            return [
                (e.final_seq, e.channel, e.text)  # type: ignore[attr-defined]
                for e in feed.history
                if e.type == "transcript.revised"
            ]

        # mixed utterance 1: revised before its parts are published
        agent = publish("agent", 10, "thank you for calling how can I help", 0.5)
        customer = publish("customer", 11, "hi I need to return these choose", 3.8)
        session._on_revised(
            "mixed",
            revised(1, "thank you for calling how can I help hi I need to return these shoes", 0.5),
        )
        assert revisions() == []  # held until its parts are known
        session._keep_parts(1, [agent, customer])
        assert revisions() == [(customer[0], "customer", "hi I need to return these shoes")]
        # mixed utterance 2: parts first, one relabeled, then its revision
        first = publish("customer", 12, "and the order number is for two", 10.0)
        second = publish("agent", 13, "let me look that up", 13.0)
        session._keep_parts(2, [first, second])
        session._relabel([Relabel(12, first[0], "agent", "customer")])
        session._on_revised(
            "mixed", revised(2, "and the order number is four two let me look that up", 10.0)
        )
        assert revisions()[1:] == [(first[0], "agent", "and the order number is four two")]
        stored = {f.seq: f for f in session.finals}
        assert session.revised[first[0]].live_text == stored[first[0]].text
        await session.finish("stop")
        await session.revisions_done()
    finally:
        services.close()


def test_the_audio_kept_for_prints_stays_bounded() -> None:
    """What a final's prints need is kept (a client may send faster than real time), what
    the finals are past is let go, and never more than the cap."""
    from live.diarize import RecentAudio

    recent = RecentAudio(keep_seconds=10)
    call = np.arange(16000 * 30, dtype=np.float32)
    for at in range(0, len(call), 1600):
        recent.push(call[at : at + 1600])
    assert recent.seconds == 10  # the cap
    assert recent.between(25, 25.0001)[0] == 25 * 16000
    recent.release(25.05)  # the finals are past this
    assert abs(recent.seconds - 4.95) < 1e-6
    assert recent.between(25.05, 25.06)[0] == 25.05 * 16000
    assert len(recent.between(0, 25)) == 0  # let go


# -- the real voice model -----------------------------------------------------------------


def test_voice_prints_of_one_party_are_nearer_than_of_the_other() -> None:
    encoder = SpeakerEncoder()
    audio = load_call_audio([AUDIO / GENESYS])
    stereo = audio.samples.astype(np.float32) / 32768
    import soxr

    agent = soxr.resample(stereo[:, 0], audio.sample_rate, 16000).astype(np.float32)
    customer = soxr.resample(stereo[:, 1], audio.sample_rate, 16000).astype(np.float32)
    # (call seconds where only that party speaks, from the channels themselves)
    a1, a2 = (
        encoder.prints(agent[16000 : 16000 * 3]),
        encoder.prints(agent[17 * 16000 : 20 * 16000]),
    )
    c1 = encoder.prints(customer[5 * 16000 : 8 * 16000])
    same = float(a1[0].vector @ a2[0].vector)
    other = float(a1[0].vector @ c1[0].vector)
    assert same > other + 0.1, (same, other)
    assert all(abs(float(np.linalg.norm(p.vector)) - 1) < 1e-4 for p in a1)


def test_a_spans_print_is_its_windows_and_does_not_depend_on_loudness() -> None:
    encoder = SpeakerEncoder()
    audio = load_call_audio([AUDIO / GENESYS])
    import soxr

    agent = soxr.resample(
        audio.samples[:, 0].astype(np.float32) / 32768, audio.sample_rate, 16000
    ).astype(np.float32)[16000 : 16000 * 4]
    window = encoder.prints(agent)[0]  # (1.6 s from the stretch's start)
    (span,) = encoder.span_prints(agent, 1.0, [(1.0, 2.6)])
    assert (span.start, span.end) == (1.0, 2.6)
    assert float(span.vector @ window.vector) > 0.98
    # quiet speech is raised to the same level first: its print is the same at any level
    (quiet,) = encoder.span_prints(agent * 0.05, 1.0, [(1.0, 2.6)])
    (quieter,) = encoder.span_prints(agent * 0.01, 1.0, [(1.0, 2.6)])
    assert float(quiet.vector @ quieter.vector) > 0.999
    # ... by at most MAX_WINDOW_GAIN: near silence is not printed as speech
    (faint,) = encoder.span_prints(agent * 0.0005, 1.0, [(1.0, 2.6)])
    assert float(faint.vector @ quiet.vector) < 0.99
    # a span's print is the same whatever else is printed with it
    (short,) = encoder.span_prints(agent, 1.0, [(1.0, 1.8)])
    together = encoder.span_prints(agent, 1.0, [(1.0, 2.6), (1.0, 1.8)])
    assert [(p.start, p.end) for p in together] == [(1.0, 2.6), (1.0, 1.8)]
    assert float(together[0].vector @ span.vector) > 0.9999
    assert float(together[1].vector @ short.vector) > 0.9999


def test_a_changed_speaker_model_is_refused(tmp_path: Path) -> None:
    from models import speaker

    broken = tmp_path / "speaker.npz"
    broken.write_bytes(speaker.DEFAULT_SPEAKER_MODEL.read_bytes()[:-10] + b"0123456789")
    original = speaker.DEFAULT_SPEAKER_MODEL
    speaker.DEFAULT_SPEAKER_MODEL = broken
    try:
        with pytest.raises(SpeakerModelError, match="convert_speaker"):
            speaker.SpeakerEncoder(broken)
    finally:
        speaker.DEFAULT_SPEAKER_MODEL = original


# -- end to end: a real mixed call through a real server -------------------------------------


def mix(samples: np.ndarray) -> np.ndarray:
    """Two int16 channels added into one (a column), as a mono trunk carries them."""
    return np.clip(samples.astype(np.int32).sum(axis=1), -32768, 32767).astype(np.int16)[:, None]


def mixed(name: str) -> tuple[CallAudio, np.ndarray]:
    """The call's two channels added into one, and the parties' own audio."""
    both = load_call_audio([AUDIO / name])
    return CallAudio(mix(both.samples), both.sample_rate), both.samples.astype(np.float32)


def corrected(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The finals of a call's events, each under the party its relabels ended on."""
    finals = [e for e in events if e["type"] == "transcript.final"]
    apply_relabels(finals, [e for e in events if e["type"] == "transcript.relabeled"])
    return finals


def right_share(finals: list[dict[str, Any]], parties: np.ndarray, rate: int) -> float:
    roles = ("agent", "customer")
    right = total = 0
    for f in finals:
        for w in f["words"]:
            lo, hi = int(w["start"] * rate), max(int(w["end"] * rate), int(w["start"] * rate) + 1)
            truth = roles[int(np.argmax((parties[lo:hi] ** 2).sum(axis=0)))]
            right += truth == f["channel"]
            total += 1
    return right / max(total, 1)


async def test_a_mixed_real_call_is_told_apart_and_stored(server: Any) -> None:
    from store.calls import CallStore

    audio, parties = mixed(GENESYS)
    call_id = "diarize-" + uuid.uuid4().hex[:8]
    result = await stream_call(
        server.url, audio, ["mixed"], realtime=False, call_id=call_id, diarize=True
    )
    started = next(e for e in result.events if e["type"] == "call.started")
    assert started["channels"] == ["agent", "customer"]
    finals = corrected(result.events)
    assert {f["channel"] for f in finals} == {"agent", "customer"}
    share = right_share(finals, parties, audio.sample_rate)
    assert share >= 0.9, share
    greeting = next(f for f in finals if "contacting" in f["text"].lower())
    assert greeting["channel"] == "agent"
    # the store keeps each final under the party it ended up with
    store = CallStore(server.database_url)
    try:
        stored = {(u["channel"], u["text"]) for u in store.utterances(call_id)}
    finally:
        store.close()
    assert stored == {(f["channel"], f["text"]) for f in finals}


def http(server: Any, path: str, method: str = "GET") -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(server.http + path, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            return response.status, json.loads(body) if body else None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


async def test_an_agents_voice_print_is_kept_and_used_then_forgotten(server: Any) -> None:
    """CALLCUE_VOICE_PRINTS (on for the test server): a two-channel call of agent a-bob keeps
    their voice print; a later mono call of theirs is told apart with it; an admin deletes it."""
    agent = "a-bob-" + uuid.uuid4().hex[:6]
    pair = load_call_audio(
        [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
    )
    rate, cut = pair.sample_rate, pair.sample_rate * 90
    first = CallAudio(pair.samples[:cut], rate)
    await stream_call(
        server.url, first, ["customer", "agent"], realtime=False, metadata={"agent": agent}
    )
    status, kept = http(server, f"/v1/agents/{agent}/voice")
    assert status == 200 and kept["prints"] >= 10, kept
    # the rest of the call as one mixed channel
    rest = pair.samples[cut:]
    result = await stream_call(
        server.url,
        CallAudio(mix(rest), rate),
        ["mixed"],
        realtime=False,
        metadata={"agent": agent},
        diarize=True,
    )
    parties = rest[:, ::-1].astype(np.float32) / 32768  # (agent, customer), as right_share reads
    assert right_share(corrected(result.events), parties, rate) >= 0.9
    assert http(server, f"/v1/agents/{agent}/voice", "DELETE")[0] == 204
    assert http(server, f"/v1/agents/{agent}/voice")[0] == 404


async def test_diarize_on_a_two_channel_call_is_refused_clearly(server: Any) -> None:
    for channels, diarize, words_in_error in (
        (["customer", "agent"], True, "one-channel"),
        (["mixed"], "yes", "true or false"),
    ):
        async with connect(f"{server.url}/v1/ingest") as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "start",
                        "call_id": "bad-diarize-" + uuid.uuid4().hex[:6],
                        "encoding": "pcm16",
                        "sample_rate": 8000,
                        "channels": channels,
                        "diarize": diarize,
                    }
                )
            )
            error = json.loads(await asyncio.wait_for(ws.recv(), 30))
        assert error["type"] == "error" and error["code"] == "bad_diarize"
        assert words_in_error in error["message"]


def test_a_mixed_calls_record_is_revised_part_by_part(tmp_path: Path) -> None:
    """Revision on a diarized call: the finals' model decodes the mixed channel again over long
    windows, and each revised utterance's words go to the finals it was split into, so the
    stored transcript gets the accurate text under the right parties."""
    from tests.servers import ServerProcess
    from tests.test_revision import get, wait_until_revised

    pair = load_call_audio(
        [AUDIO / "cs_aws_auto_repairs_40_caller.wav", AUDIO / "cs_aws_auto_repairs_40_agent.wav"]
    )
    rate = pair.sample_rate
    first = pair.samples[: 60 * rate]
    audio, parties = CallAudio(mix(first), rate), first.astype(np.float32)[:, ::-1]
    call_id = "mono-rev-" + uuid.uuid4().hex[:8]
    server = ServerProcess(
        env={
            "CALLCUE_DATABASE_URL": f"sqlite:///{tmp_path}/store.db",
            "CALLCUE_REVISE": "true",
            "CALLCUE_REVISE_SECONDS": "20",
        }
    )
    try:
        asyncio.run(
            stream_call(server.url, audio, ["mixed"], realtime=False, call_id=call_id, diarize=True)
        )
        wait_until_revised(server, call_id)
        events = get(server, f"/v1/calls/{call_id}/events")["events"]
        stored = get(server, f"/v1/calls/{call_id}/transcript?format=json")["utterances"]
    finally:
        server.stop()
    finals = {f["seq"]: f for f in corrected(events)}
    revisions = [e for e in events if e["type"] == "transcript.revised"]
    assert revisions, "the finals' model changed nothing in a minute of a real mixed call"
    done = [e for e in events if e["type"] == "call.revised"]
    assert len(done) == 1 and events[-1] is done[0]
    assert done[0]["revised"] == len({r["final_seq"] for r in revisions})
    for r in revisions:  # each revises one part, as it was shown (its live text)
        final = finals[r["final_seq"]]
        assert r["utterance"] == final["utterance"] and r["live_text"] == final["text"]
        assert r["channel"] in ("agent", "customer") and r["words"] and r["text"] != r["live_text"]
    latest = {r["final_seq"]: r["text"] for r in revisions}
    assert {u["seq"] for u in stored} == {s for s, f in finals.items() if f["text"]}
    for u in stored:  # the revised text, under the party the corrections ended on
        final = finals[u["seq"]]
        assert u["channel"] == final["channel"]
        assert u["text"] == latest.get(u["seq"], final["text"])
    share = right_share([u for u in stored if u["seq"] in latest], parties, rate)
    assert share >= 0.9, share


def test_import_diarize_stores_both_parties(tmp_path: Path) -> None:
    from store.calls import CallStore

    audio, _ = mixed(GENESYS)
    wav = tmp_path / "mono-call.wav"
    sf.write(wav, audio.samples[:, 0], audio.sample_rate, subtype="PCM_16")
    url = f"sqlite:///{tmp_path}/import.db"
    cli = [sys.executable, "-m", "cli"]
    out = subprocess.run(
        [*cli, "import", str(wav), "--diarize", "--database-url", url, "--quiet", "--live"],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    assert json.loads(out.stdout.splitlines()[-1])["imported"] == 1
    store = CallStore(url)
    try:
        lines = store.utterances("mono-call")
    finally:
        store.close()
    assert {u["channel"] for u in lines} == {"agent", "customer"}
    greeting = next(u for u in lines if "contacting" in u["text"].lower())
    assert greeting["channel"] == "agent"
    stereo = subprocess.run(
        [*cli, "transcribe", str(AUDIO / GENESYS), "--diarize"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert stereo.returncode == 2 and "each already one party" in stereo.stderr


async def test_a_twilio_stream_of_one_mixed_track_is_diarized(server: Any) -> None:
    """Twilio's custom parameter `diarize`: one inbound track with both parties."""
    from clients.simulators import simulate_twilio
    from tests.conftest import TWILIO_TOKEN

    audio, _ = mixed(GENESYS)
    rate = audio.sample_rate
    bad = await simulate_twilio(
        server.url,
        CallAudio(audio.samples[: rate // 2], rate),
        token=TWILIO_TOKEN,
        realtime=False,
        extra_parameters={"diarize": "maybe"},
    )
    assert bad.close_code == 1008 and "bad_diarize" in bad.close_reason
    call_id = "twilio-diarize-" + uuid.uuid4().hex[:6]
    result = await simulate_twilio(
        server.url,
        audio,
        call_id=call_id,
        token=TWILIO_TOKEN,
        realtime=False,
        extra_parameters={"diarize": "true"},
    )
    assert result.close_code == 1000
    status, transcript = await asyncio.to_thread(http, server, f"/v1/calls/{call_id}/transcript")
    assert status == 200
    lines = transcript["utterances"]
    assert {u["channel"] for u in lines} == {"agent", "customer"}
    greeting = next(u for u in lines if "contacting" in u["text"].lower())
    assert greeting["channel"] == "agent"
