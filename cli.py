"""The `callcue` command: serve, stream a recording as a live call, watch a call's events,
transcribe in-process, import recordings into the store, classify utterances."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from audio.files import AudioFileError, CallAudio, load_call_audio, one_channel, same_audio


def _channel_names(value: str | None, audio_channels: int) -> list[str]:
    if value:
        return [c.strip() for c in value.split(",") if c.strip()]
    return ["customer", "agent"] if audio_channels >= 2 else ["customer"]


def _load(
    files: list[str], channels: str | None, diarize: bool = False
) -> tuple[CallAudio, list[str]]:
    probe = load_call_audio(list(files))
    if diarize and channels:
        raise AudioFileError(
            "--diarize names the channels itself (agent, customer): drop --channels"
        )
    if len(files) == 1 and same_audio(probe):
        # both parties mixed, saved twice: as two parties every word would come out twice
        probe = one_channel(probe)
        named = _channel_names(channels, 1)[:1] or ["customer"]
        print(
            f"callcue: {files[0]}: its two channels carry the same audio (a mixed call saved as "
            "stereo): read as one channel"
            + (f" named {named[0]}" if channels else "")
            + ("" if diarize else " (--diarize tells agent from customer by voice)"),
            file=sys.stderr,
        )
        if not diarize:
            return probe, named
    if diarize:  # both parties on one channel: told apart by voice into agent and customer
        if probe.channels != 1:
            raise AudioFileError(
                f"--diarize tells agent from customer in a one-channel recording; "
                f"{', '.join(files)} has {probe.channels} channels, each already one party "
                "(leave --diarize out)"
            )
        return probe, ["agent", "customer"]
    names = _channel_names(channels, probe.channels)
    audio = probe if len(names) == probe.channels else load_call_audio(list(files), len(names))
    return audio, names


def cmd_stream(args: argparse.Namespace) -> int:
    from clients.native import stream_call

    try:
        audio, names = _load(args.files, args.channels, args.diarize)
    except AudioFileError as exc:
        print(f"callcue stream: {exc}", file=sys.stderr)
        return 2
    if args.diarize:
        names = ["mixed"]  # one channel on the wire; the server names the parties
    metadata: dict[str, Any] = json.loads(args.metadata) if args.metadata else {}

    def show(event: dict[str, Any]) -> None:
        print(json.dumps(event, ensure_ascii=False), flush=True)

    try:
        result = asyncio.run(
            stream_call(
                args.url,
                audio,
                names,
                realtime=not args.fast,
                chunk_ms=args.chunk_ms,
                encoding=args.encoding,
                call_id=args.call_id,
                metadata=metadata,
                on_event=show,
                diarize=True if args.diarize else None,
                token=args.token or os.environ.get("CALLCUE_INGEST_KEY") or None,
                vocabulary=_terms(args.vocabulary),
                language=args.language,
            )
        )
    except OSError as exc:
        print(f"callcue stream: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 1
    errors = [e for e in result.events if e.get("type") == "error"]
    return 1 if errors else 0


def _terms(text: str | None) -> list[str]:
    """`--vocabulary "Acme, Zephyr Plus"` as a list of terms."""
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_simulate(args: argparse.Namespace) -> int:
    """Stream a recording the way Genesys AudioHook or Twilio would, and print the replies."""
    from clients.simulators import simulate_audiohook, simulate_twilio

    try:
        audio = load_call_audio(list(args.files))
    except AudioFileError as exc:
        print(f"callcue simulate: {exc}", file=sys.stderr)
        return 2
    try:
        if args.platform == "audiohook":
            result = asyncio.run(
                simulate_audiohook(
                    args.url,
                    audio,
                    conversation_id=args.call_id,
                    api_key=args.api_key or "test",
                    secret_b64=args.secret,
                    realtime=not args.fast,
                )
            )
        else:
            result = asyncio.run(
                simulate_twilio(
                    args.url, audio, call_id=args.call_id, token=args.token, realtime=not args.fast
                )
            )
    except OSError as exc:
        print(f"callcue simulate: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 1
    for message in result.received:
        print(json.dumps(message, ensure_ascii=False))
    if result.http_status:
        print(
            f"callcue simulate: the server refused the connection with HTTP {result.http_status}",
            file=sys.stderr,
        )
        return 1
    print(
        f"call {result.call_id}: closed with {result.close_code} {result.close_reason}",
        file=sys.stderr,
    )
    return 0 if result.close_code == 1000 else 1


def _settings(args: argparse.Namespace) -> Any:
    """Settings from the environment, with the flags this command was given on top."""
    from service.settings import Settings

    overrides = {k: v for k, v in vars(args).items() if k in Settings.__dataclass_fields__ and v}
    if getattr(args, "live", False):
        overrides["revise"] = False
    return Settings.load(overrides=overrides)


def cmd_transcribe(args: argparse.Namespace) -> int:
    from audio.protocols.vocabulary import check_language
    from service.settings import SettingsError

    try:
        audio, names = _load(args.files, args.channels, args.diarize)
        settings = _settings(args)
    except (AudioFileError, SettingsError) as exc:
        print(f"callcue transcribe: {exc}", file=sys.stderr)
        return 2
    language, problem = check_language(args.language)
    if problem is not None:
        print(f"callcue transcribe: --language: {problem}", file=sys.stderr)
        return 2
    call = asyncio.run(
        transcribe_call(
            settings,
            audio,
            names,
            Path(args.files[0]).stem,
            progress=sys.stderr.isatty() and not args.quiet,
            vocabulary=tuple(_terms(args.vocabulary)),
            language=language,
            diarize=args.diarize,
        )
    )
    if args.json:
        print(json.dumps(call, ensure_ascii=False, indent=2))
    else:
        for u in call["utterances"]:
            print(f"[{u['start']:8.2f} – {u['end']:8.2f}] {u['channel']:>8}: {u['text']}")
    return 0


async def transcribe_call(
    settings: Any,
    audio: CallAudio,
    channels: list[str],
    call_id: str,
    *,
    progress: bool = False,
    services: Any = None,
    source: str = "file",
    metadata: dict[str, Any] | None = None,
    streaming: Any = None,
    vocabulary: tuple[str, ...] = (),
    language: str = "en",
    diarize: bool = False,
) -> dict[str, Any]:
    """Run the live pipeline in-process over a recording, as fast as the machine allows.
    `diarize`: the recording is one channel with both parties, told apart by voice.
    With `services` given (and its store), the call is stored like a live one; `streaming`
    (StreamingOptions) replaces the settings' segmentation (partials stay off)."""
    from dataclasses import replace

    from tqdm import tqdm

    from audio.codec import AudioFormat
    from live.session import CallSession
    from service.node import load_services

    own = services is None
    if own:
        services = await asyncio.to_thread(
            load_services, settings, warmup=False, store=False, live=False
        )
    try:
        fmt = AudioFormat("pcm16", audio.sample_rate, 1 if diarize else len(channels))
        session = CallSession(
            services,
            call_id,
            fmt,
            tuple(channels),
            metadata=metadata,
            source=source,
            streaming=replace(
                streaming or services.recognition.streaming, partials=False, wait_for_text=True
            ),
            vocabulary=vocabulary,
            language=language,
            diarize=diarize,
        )
        session.keep_finals = True  # the whole transcript is printed at the end
        await session.start()
        step = audio.sample_rate  # one second per frame
        with tqdm(
            total=round(audio.duration, 1),
            unit="s",
            disable=not progress,
            desc="transcribing",
            file=sys.stderr,
        ) as bar:
            for lo in range(0, audio.samples.shape[0], step):
                chunk = audio.samples[lo : lo + step]
                await session.push(chunk.reshape(-1).astype("<i2").tobytes())
                await session.settle()  # each utterance gets the previous ones as its prompt
                bar.update(round(chunk.shape[0] / audio.sample_rate, 1))
            await session.finish("stop")
        if (reviser := services.recognition.reviser) is not None:
            await _revised_with_progress(session, reviser, progress)

        def utterance(f: Any) -> dict[str, Any]:
            revised = session.revised.get(f.seq)
            line = {
                "channel": f.channel,
                "start": f.start,
                "end": f.end,
                "text": f.text if revised is None else revised.text,
                "language": f.language if revised is None else revised.language,
                "words": [_word(w) for w in (f.words if revised is None else revised.words)],
            }
            if revised is not None:
                line["live_text"] = f.text  # what the live final said
            return line

        utterances = sorted(
            (utterance(f) for f in session.finals), key=lambda u: (u["start"], u["channel"])
        )
        return {
            "call_id": call_id,
            "duration": round(audio.duration, 3),
            "channels": channels,
            "utterances": utterances,
        }
    finally:
        if own:
            services.close()


def cmd_import(args: argparse.Namespace) -> int:
    """Run recordings through the live pipeline and store each as a call (for QA review)."""
    from service.node import load_services
    from service.settings import SettingsError
    from store.calls import StoreError

    try:
        settings = _settings(args)
        calls = []
        for name in args.files:
            audio, names = _load([name], args.channels, args.diarize)
            calls.append((name, audio, names))
    except (AudioFileError, SettingsError) as exc:
        print(f"callcue import: {exc}", file=sys.stderr)
        return 2
    try:
        services = load_services(settings, warmup=False, recover=False, live=False)
    except (StoreError, ValueError, RuntimeError) as exc:
        print(f"callcue import: {exc}", file=sys.stderr)
        return 2
    assert services.store is not None
    from tqdm import tqdm

    imported = skipped = 0
    try:
        with tqdm(
            total=len(calls), unit="call", disable=args.quiet, file=sys.stderr, desc="importing"
        ) as bar:
            for name, audio, names in calls:
                call_id = (args.prefix + Path(name).stem)[:128]
                if services.store.get_call(call_id) is not None and not args.replace:
                    tqdm.write(
                        f"{name}: already stored as {call_id} (--replace to redo)", file=sys.stderr
                    )
                    skipped += 1
                    bar.update(1)
                    continue
                if args.replace:
                    services.store.delete_call(call_id)
                metadata = {"file": str(Path(name).name)}
                if args.agent:
                    metadata["agent"] = args.agent
                call = asyncio.run(
                    transcribe_call(
                        settings,
                        audio,
                        names,
                        call_id,
                        services=services,
                        source="import",
                        metadata=metadata,
                        diarize=args.diarize,
                    )
                )
                tqdm.write(
                    f"{name}: stored as {call_id} ({len(call['utterances'])} utterances, "
                    f"{audio.duration:.0f} s)",
                    file=sys.stderr,
                )
                imported += 1
                bar.update(1)
    finally:
        services.close()
    print(
        json.dumps(
            {
                "imported": imported,
                "skipped": skipped,
                "store": settings.database_url.split("@")[-1],
            }
        )
    )
    return 0


def cmd_classify(args: argparse.Namespace) -> int:
    """One JSON line per utterance: intent, sentiment, entities (as the live engine reads it)."""
    from assist.engine import AssistModels
    from assist.entities import extract
    from assist.playbook import PlaybookError

    texts = args.texts or [line.strip() for line in sys.stdin if line.strip()]
    try:
        models = AssistModels.load(playbook_path=Path(args.playbook) if args.playbook else None)
    except (PlaybookError, RuntimeError) as exc:
        print(f"callcue classify: {exc}", file=sys.stderr)
        return 2
    label = {i.id: i.label for i in models.playbook.intents}
    for start in range(0, len(texts), 64):
        batch = texts[start : start + 64]
        for text, (intent, sentiment) in zip(batch, models.classify_text(batch), strict=True):
            line = {
                "text": text,
                "intent": intent.intent,
                "label": label.get(intent.intent or "", ""),
                "confidence": intent.confidence,
                "top": [{"intent": s.intent, "confidence": s.confidence} for s in intent.top],
                "sentiment": sentiment.label,
                "sentiment_score": sentiment.score,
                "entities": [e.to_json() for e in extract(text)],
            }
            print(json.dumps(line, ensure_ascii=False), flush=True)
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    """Tune the text encoder on a playbook's intent examples (cached by their hash)."""
    from assist.playbook import PlaybookError, load_playbook
    from models.train_intents import train

    try:
        playbook = load_playbook(Path(args.playbook) if args.playbook else None)
    except (PlaybookError, OSError) as exc:
        print(f"callcue train: {exc}", file=sys.stderr)
        return 2
    texts, labels = playbook.intent_examples()
    if len(set(labels)) < 2:
        print(f"callcue train: {playbook.path}: needs at least two intents", file=sys.stderr)
        return 2
    bar = None
    if not args.quiet:
        from tqdm import tqdm

        bar = tqdm(total=0, unit="step", desc=f"tuning {len(set(labels))} intents")

    def progress(step: int, steps: int, loss: float) -> None:
        if bar is not None:
            bar.total = steps
            bar.set_postfix(loss=f"{loss:.3f}", refresh=False)
            bar.update(1)

    started = time.perf_counter()
    out = train(texts, labels, threads=args.threads, force=args.force, progress=progress)
    if bar is not None:
        bar.close()
    print(
        json.dumps(
            {
                "playbook": str(playbook.path),
                "intents": len(set(labels)),
                "examples": len(texts),
                "artifact": str(out),
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    """Print every event of a call as a screen on that server gets it, one JSON line each."""
    from urllib.parse import quote, urlencode

    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidHandshake

    query = {"after_seq": str(args.after_seq)}
    token = args.token or os.environ.get("CALLCUE_TOKEN")
    if token:
        query["token"] = token
    uri = f"{args.url.rstrip('/')}/v1/calls/{quote(args.call_id, safe='')}/events"

    async def run() -> int:
        async with connect(f"{uri}?{urlencode(query)}", max_size=None) as ws:
            async for message in ws:
                print(message, flush=True)
        return 0 if ws.close_code == 1000 else 1

    try:
        return asyncio.run(run())
    except (OSError, InvalidHandshake) as exc:
        print(f"callcue watch: cannot connect to {args.url}: {exc}", file=sys.stderr)
        return 1


def cmd_worker(args: argparse.Namespace) -> int:
    """Run recognition for the nodes of a service (CALLCUE_RECOGNITION=remote), until stopped."""
    import logging
    from dataclasses import replace

    from models.remote import run_worker
    from models.whisper import WhisperEngine
    from service.node import limit_malloc_arenas
    from service.settings import SettingsError, available_cores

    try:
        settings = _settings(args)
    except SettingsError as exc:
        print(f"callcue worker: {exc}", file=sys.stderr)
        return 2
    if not settings.redis_url:
        print("callcue worker: set --redis-url (or CALLCUE_REDIS_URL)", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(message)s")
    limit_malloc_arenas(settings.malloc_arenas)
    # a worker decodes one job at a time: one model replica with every core (run several
    # workers for decodes side by side)
    one = {"workers": 1, "cpu_threads": settings.cpu_threads or available_cores()}
    engine = WhisperEngine(replace(settings.whisper, **one))
    final_engine = (
        WhisperEngine(replace(settings.final_whisper, **one)) if settings.two_pass else engine
    )
    if final_engine is engine:
        engine.warmup()
    else:
        engine.warmup(finals=False)
        final_engine.warmup(partials=False)
    try:
        run_worker(engine, settings.redis_url, settings.redis_prefix, final_engine=final_engine)
    except KeyboardInterrupt:
        return 0
    except Exception as exc:  # Redis gone: say so, exit non-zero (a supervisor restarts it)
        print(f"callcue worker: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


async def _revised_with_progress(session: Any, reviser: Any, progress: bool) -> None:
    """Wait for the call's end-of-call revisions, with a bar of the audio seconds revised
    (a channel is revised whole when its call ends: minutes of decoding for a long
    recording). The bar grows if a stretch is queued after it starts."""
    from tqdm import tqdm

    done = asyncio.ensure_future(session.revisions_done())
    with tqdm(
        total=round(reviser.left_seconds(), 1),
        unit="s",
        disable=not progress,
        desc="revising",
        file=sys.stderr,
    ) as bar:
        while not done.done():
            await asyncio.wait({done}, timeout=0.5)
            left = reviser.left_seconds()
            bar.total = max(bar.total or 0.0, round(bar.n + left, 1))
            bar.n = round(max(bar.total - left, bar.n), 1)
            bar.refresh()
        await done
        bar.n = bar.total
        bar.refresh()


def _word(w: Any) -> dict[str, Any]:
    return {"word": w.word, "start": w.start, "end": w.end, "probability": w.probability}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="callcue", description="Real-time agent assist.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the server (see `callcue serve --help`)", add_help=False)

    stream = sub.add_parser("stream", help="stream a recording to a server as a live call")
    stream.add_argument(
        "files",
        nargs="+",
        metavar="FILE",
        help="a mono/stereo file, or two mono files as two channels",
    )
    stream.add_argument("--url", default="ws://127.0.0.1:8080")
    stream.add_argument("--channels", help="channel names in order, e.g. customer,agent")
    pace = stream.add_mutually_exclusive_group()
    pace.add_argument(
        "--realtime",
        action="store_true",
        default=True,
        help="send at the speed of speech (default)",
    )
    pace.add_argument("--fast", action="store_true", help="send as fast as the server reads")
    stream.add_argument("--encoding", default="pcm16", choices=["pcm16", "mulaw", "alaw"])
    stream.add_argument("--chunk-ms", type=int, default=100)
    stream.add_argument("--call-id")
    stream.add_argument("--metadata", help="JSON object sent as the call's metadata")
    stream.add_argument(
        "--vocabulary", help='words the call is likely to contain, e.g. "Acme, Zephyr Plus"'
    )
    stream.add_argument("--language", help='a Whisper language code, or "auto" (default: en)')
    stream.add_argument(
        "--diarize",
        action="store_true",
        help="a one-channel recording of both parties: the server tells them apart by voice",
    )
    stream.add_argument(
        "--token",
        help="ingest key or admin token, if the server needs one (env CALLCUE_INGEST_KEY)",
    )

    watch = sub.add_parser("watch", help="print a call's events as a screen gets them")
    watch.add_argument("call_id", metavar="CALL_ID")
    watch.add_argument("--url", default="ws://127.0.0.1:8080")
    watch.add_argument("--after-seq", type=int, default=0, help="resume after this seq")
    watch.add_argument("--token", help="a token that may watch calls (or CALLCUE_TOKEN)")
    wk = sub.add_parser("worker", help="run Whisper for the nodes of a service, over Redis")
    for name in (
        "redis_url",
        "redis_prefix",
        "model",
        "final_model",
        "device",
        "compute_type",
        "cpu_threads",
    ):
        wk.add_argument(f"--{name.replace('_', '-')}", dest=name)
    wk.add_argument("--log-level", dest="log_level")
    sim = sub.add_parser("simulate", help="stream a recording as Genesys AudioHook or Twilio")
    sim.add_argument("platform", choices=["audiohook", "twilio"])
    sim.add_argument("files", nargs="+", metavar="FILE")
    sim.add_argument("--url", default="ws://127.0.0.1:8080")
    sim.add_argument("--call-id", help="conversationId (AudioHook) or call_id parameter (Twilio)")
    sim.add_argument("--api-key", help="AudioHook X-API-KEY")
    sim.add_argument("--secret", help="AudioHook client secret (base64) to sign the request")
    sim.add_argument("--token", help="Twilio customParameters.token")
    sim.add_argument("--fast", action="store_true", help="send as fast as possible")

    tr = sub.add_parser("transcribe", help="run the pipeline in-process on a recording")
    tr.add_argument("files", nargs="+", metavar="FILE")
    tr.add_argument("--channels")
    tr.add_argument("--json", action="store_true", help="print the finished call as JSON")
    tr.add_argument("--quiet", action="store_true", help="no progress bar")
    tr.add_argument(
        "--vocabulary", help='words the call is likely to contain, e.g. "Acme, Zephyr Plus"'
    )
    tr.add_argument(
        "--language", default="en", help='en (default), a Whisper language code, or "auto"'
    )
    for name in ("model", "final_model", "device", "compute_type", "beam_size", "cpu_threads"):
        tr.add_argument(f"--{name.replace('_', '-')}", dest=name)
    tr.add_argument(
        "--live",
        action="store_true",
        help="the live finals only (no revision by the finals' model over long windows)",
    )
    tr.add_argument(
        "--diarize",
        action="store_true",
        help="one-channel recording of both parties: tell agent from customer by voice",
    )

    im = sub.add_parser("import", help="transcribe recordings and store each as a call")
    im.add_argument("files", nargs="+", metavar="FILE", help="one recording per call")
    im.add_argument("--channels", help="channel names of each file, e.g. customer,agent")
    im.add_argument("--prefix", default="", help="prefix for the call ids (default: file name)")
    im.add_argument("--agent", help="agent to record on the imported calls")
    im.add_argument("--replace", action="store_true", help="re-import calls already stored")
    im.add_argument("--quiet", action="store_true", help="no progress bar")
    im.add_argument("--database-url", dest="database_url")
    im.add_argument("--playbook")
    im.add_argument(
        "--live",
        action="store_true",
        help="store the live finals only (no revision by the finals' model over long windows)",
    )
    im.add_argument(
        "--diarize",
        action="store_true",
        help="one-channel recordings of both parties: tell agent from customer by voice",
    )

    cl = sub.add_parser("classify", help="intent, sentiment and entities of utterances")
    cl.add_argument("texts", nargs="*", metavar="TEXT", help="utterances (default: stdin lines)")
    cl.add_argument("--playbook", help="playbook YAML (default: the shipped retail playbook)")

    tn = sub.add_parser(
        "train", help="tune the text encoder on a playbook's intents (about a minute)"
    )
    tn.add_argument("playbook", nargs="?", help="playbook YAML (default: the shipped one)")
    tn.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    tn.add_argument("--force", action="store_true", help="train again even if cached")
    tn.add_argument("--quiet", action="store_true", help="no progress bar")

    if argv and argv[0] == "serve":
        import server

        return server.main(argv[1:])
    args = parser.parse_args(argv)
    if args.command == "stream":
        return cmd_stream(args)
    if args.command == "worker":
        return cmd_worker(args)
    if args.command == "watch":
        return cmd_watch(args)
    if args.command == "simulate":
        return cmd_simulate(args)
    if args.command == "classify":
        return cmd_classify(args)
    if args.command == "train":
        return cmd_train(args)
    if args.command == "import":
        return cmd_import(args)
    return cmd_transcribe(args)


if __name__ == "__main__":
    sys.exit(main())
