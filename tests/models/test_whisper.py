"""The Whisper engine on real audio with the embedded tiny.en model."""

import numpy as np
import pytest

from benchmarks.common import wer
from models.resolve import EMBEDDED_WHISPER, ModelNotFoundError, resolve_whisper_model
from models.whisper import cut_repetition
from tests.conftest import load_16k, reference


@pytest.mark.parametrize(
    "name",
    [
        "ls_test-clean_2830-3980-0043.wav",
        "ls_test-clean_4507-16021-0012.wav",
        "ls_test-clean_8455-210777-0068.wav",
    ],
)
def test_final_decode_matches_reference(engine, name: str) -> None:  # type: ignore[no-untyped-def]
    hyp = engine.decode(load_16k(name), final=True)
    assert hyp.ok, hyp
    assert wer(reference(name), hyp.text) <= 0.2, hyp.text
    assert hyp.words and all(0 <= w.start <= w.end <= 3.5 for w in hyp.words)
    assert all(0.0 < w.probability <= 1.0 for w in hyp.words)
    assert " ".join(w.word for w in hyp.words) == hyp.text


def test_partial_uses_short_window_and_prefix(engine) -> None:  # type: ignore[no-untyped-def]
    audio = load_16k("wb_jfk_inaugural_1961.flac")[: 16000 * 3]
    first = engine.decode(audio)
    assert first.window_s < 30 and first.ok and not first.words
    opening = " ".join(first.text.split()[:2])
    again = engine.decode(audio, prefix=engine.encode_text(opening))
    # the forced words come once (CTranslate2 returns them with the sequence), then the rest
    assert again.text.startswith(opening) and not again.text.startswith(f"{opening} {opening}")
    assert again.text == first.text


def test_silence_is_not_transcribed(engine) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    for audio in (
        np.zeros(16000 * 2, np.float32),
        (rng.standard_normal(16000 * 2) * 0.002).astype(np.float32),
    ):
        hyp = engine.decode(audio, final=True)
        assert not hyp.ok, hyp.text


def test_cut_repetition() -> None:
    looped = "and so my fellow Americans and so my fellow Americans and"
    assert cut_repetition(looped) == ("and so my fellow Americans", True)
    assert cut_repetition("thanks thanks thanks thanks thanks") == ("thanks", True)
    # seen under load: a 5.5 s utterance in a 10 s window came back twice
    once = "The sample configuration also has a single user with extension 1234."
    assert cut_repetition(f"{once} {once}") == (once, True)
    for fine in ("no, no, I said no", "very very good", "I want to, I want to cancel"):
        assert cut_repetition(fine) == (fine, False)


def test_a_loop_on_a_few_words_is_told_from_speech() -> None:
    from models.whisper import loops

    # seen live after the customer spelled a name (the AWS call), fed by the prompt
    assert loops("T.I. L. L. L. E. L. E. L. L. E. L. L. L. L. L. E. L. L")
    assert loops("L. L. L. L.") and loops("Okay. Okay. Okay. Okay.")
    for speech in (
        "T. I. L. L. E.",  # a name spelled once
        "c m i n h 7 3 0 at email dot com",
        "No, no, no.",
        "Thank you. Thank you. I appreciate it.",
        "I'm. I need to get on. I'm. I need to get something we can handle that for me.",
        "5 5 5 1 2 3 4",
    ):
        assert not loops(speech), speech


def test_spelled_letters_are_kept_out_of_the_prompt() -> None:
    from models.whisper import spells, without_spelling

    said = "My last name is Sittilly. That's fine. T.I. L. L. E. Okay, on T-I-L-L-E."
    kept = " ".join(without_spelling(said.split()))
    assert kept == "My last name is Sittilly. That's fine. Okay, on"
    assert spells(said) and spells("C M") and spells("T.I. L.")
    for fine in (
        "I think I can",
        "Plan A, I think",
        "I, I think",
        "at 8 a.m. or 3 p.m.,",
        "U.S.A. and D.C.",
        "il y a un problème",
    ):
        assert without_spelling(fine.split()) == fine.split() and not spells(fine)


def test_a_spelled_prompt_makes_whisper_hear_letters_and_its_filtered_form_does_not(  # type: ignore[no-untyped-def]
    base_engine,
) -> None:
    """Why the channel's prompt leaves spelling out (`without_spelling`): on the AWS call,
    the customer's "Sure, this one was …" (76–80 s), after "T.I. L. L. E." as the prompt,
    comes back as letters."""
    from models.whisper import without_spelling

    audio = load_16k("cs_aws_auto_repairs_40_caller.wav")[76 * 16000 : 80 * 16000]
    said = "My last name is Sittilly. That's fine. T.I. L. L. E."

    def heard(prompt: str) -> str:
        return str(
            base_engine.decode(audio, prompt=base_engine.encode_text(prompt), final=True).text
        )

    loops_before = base_engine.stats.prompt_loops
    # letters in the text, or a loop of letters that the guard caught and decoded again
    assert "L. E." in heard(said) or base_engine.stats.prompt_loops > loops_before
    clean = heard(" ".join(without_spelling(said.split())))
    assert clean.startswith("Sure") and "L." not in clean, clean


def test_a_final_that_loops_after_its_prompt_is_decoded_from_its_audio_alone(  # type: ignore[no-untyped-def]
    base_engine,
) -> None:
    """The guard behind the spelling filter: a final that comes back as a loop of letters
    is decoded again without prompt and context, and that text is kept."""
    from models.whisper import loops

    audio = load_16k("cs_aws_auto_repairs_40_caller.wav")[76 * 16000 : 80 * 16000]
    looped = "T.I. L. L. L. E. L. E. L. L. E. L. L. L. L. L. E. L. L"  # live, once
    before = base_engine.stats.prompt_loops
    hyp = base_engine.decode(audio, prompt=base_engine.encode_text(looped), final=True)
    assert base_engine.stats.prompt_loops == before + 1
    assert hyp.text.startswith("Sure") and not loops(hyp.text), hyp.text
    assert loops("L. E. L. E. L.") and loops("T. I. L. L. E. L. E. L. L. E. L. L.")
    for speech in ("T. I. L. L. E.", "Okay. Okay. Okay.", "Thank you. Thank you. I appreciate it."):
        assert not loops(speech)


def test_model_resolution(tmp_path) -> None:  # type: ignore[no-untyped-def]
    assert resolve_whisper_model(EMBEDDED_WHISPER).endswith("model")
    with pytest.raises(ModelNotFoundError, match=r"no model\.bin"):
        resolve_whisper_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="does not exist"):
        resolve_whisper_model("/no/such/model")
    with pytest.raises(ModelNotFoundError, match="unknown embedded"):
        resolve_whisper_model("embedded:large-v3")
    assert resolve_whisper_model("small.en") == "small.en"  # a hub name, passed through


def test_an_echo_of_the_prompt_is_recognized(engine) -> None:  # type: ignore[no-untyped-def]
    prompt = engine.encode_text(
        "The sample configuration also has a single user with extension 1234."
    )
    assert engine.echoes_prompt(
        "The sample configuration also has a single user with extension 1234. And password 4242.",
        prompt,
    )
    assert engine.echoes_prompt("a single user with extension 1234. And password", prompt)
    # three words are not enough; the previous words somewhere else are not an echo
    assert not engine.echoes_prompt("extension 1234. And password 4242.", prompt)
    assert not engine.echoes_prompt("And password 4242. The sample configuration also has", prompt)
    assert not engine.echoes_prompt("The sample configuration also has a single user", ())


def test_a_final_that_repeats_its_prompt_is_decoded_again_without_it(engine) -> None:  # type: ignore[no-untyped-def]
    """Words the speaker really said again come back from the audio alone: the retry keeps
    them (and is counted), so the guard never drops speech."""
    audio = load_16k("wb_jfk_inaugural_1961.flac")
    plain = engine.decode(audio, final=True)
    opening = " ".join(plain.text.split()[:5])
    before = engine.stats.prompt_echoes
    again = engine.decode(audio, prompt=engine.encode_text(f"Thank you. {opening}"), final=True)
    assert engine.stats.prompt_echoes == before + 1
    assert again.text == plain.text and again.words == plain.words


def test_partials_decoded_together_match_one_at_a_time(engine) -> None:  # type: ignore[no-untyped-def]
    from models.whisper import PartialRequest

    jfk = load_16k("wb_jfk_inaugural_1961.flac")
    jobs = [
        PartialRequest(jfk[: 16000 * 4]),
        PartialRequest(
            load_16k("ls_test-clean_4507-16021-0012.wav"),
            prefix=tuple(engine.encode_text("Why should")),
        ),
        PartialRequest(jfk[16000 * 3 : 16000 * 7]),
    ]
    one_by_one = [engine.decode(j.audio, prefix=j.prefix) for j in jobs]
    together = engine.decode_partials(jobs)
    assert [h.text for h in together] == [h.text for h in one_by_one]
    assert together[1].text.startswith("Why should one")  # each keeps its own forced words
    assert len({h.window_s for h in together}) == 1


def test_an_unsure_final_is_kept_not_resampled(base_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A final Whisper is unsure of (average log-probability under -1: the AWS customer's
    half-heard "I'm") is decoded once, at beam 5: resampling it at a temperature drew at
    random, so one recording came out differently from run to run. Only a text that loops
    is decoded again."""
    audio = load_16k("cs_aws_auto_repairs_40_caller.wav")[int(124.0 * 16000) : int(124.8 * 16000)]
    model = base_engine.model.model
    temperatures: list[float] = []

    class Counting:
        def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
            return getattr(model, name)

        def generate(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            temperatures.append(kwargs.get("sampling_temperature", 0.0))
            return model.generate(*args, **kwargs)

    monkeypatch.setattr(base_engine.model, "model", Counting())
    first = base_engine.decode(audio, final=True)
    assert first.rejected is None and first.text  # heard as speech ("I'm")
    assert first.avg_logprob < base_engine.options.log_prob_threshold  # unsure (-1.44 here)
    assert temperatures == [0.0] and first.temperature == 0.0
    again = [base_engine.decode(audio, final=True) for _ in range(2)]
    assert {h.text for h in again} == {first.text}
