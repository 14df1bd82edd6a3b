"""Settings: read once from flags and CALLCUE_* environment variables, validated, frozen."""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from assist.customers import SAMPLE_DIRECTORY
from assist.engine import AssistOptions
from assist.entities import KINDS
from audio.vad import VadOptions
from live.webhooks import parse_webhooks
from models.asr import StreamingOptions
from models.resolve import EMBEDDED_WHISPER, ModelNotFoundError, resolve_whisper_model
from models.whisper import WhisperOptions


class SettingsError(ValueError):
    """A setting with a bad value; the message names the setting and the value."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One setting as flags, the environment and the docs see it (made from a field of
    `Settings`, where each is declared)."""

    name: str  # flag name without dashes, also the key in overrides
    env: str
    default: Any
    parse: Callable[[str], Any]
    check: Callable[[Any], str | None]
    help: str
    group: str
    secret: bool = False  # never echoed in errors or logs


def _int(text: str) -> int:
    return int(text)


def _float(text: str) -> float:
    return float(text)


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true/false")


def _range(lo: float, hi: float) -> Callable[[Any], str | None]:
    return lambda v: None if lo <= v <= hi else f"must be between {lo} and {hi}"


def _choice(*options: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in options else f"must be one of {', '.join(options)}"


def _windows(text: str) -> tuple[float, ...]:
    return tuple(sorted(float(part) for part in text.split(",") if part.strip()))


def _windows_ok(value: Any) -> str | None:
    if not value or any(not 1.0 <= w <= 30.0 for w in value) or value[-1] != 30.0:
        return "must be sizes from 1 to 30 seconds, the largest being 30"
    return None


def _webhooks_ok(value: Any) -> str | None:
    try:
        parse_webhooks(value)
    except ValueError as exc:
        return str(exc)
    return None


def _file_ok(value: Any) -> str | None:
    if value and not os.path.isfile(value):
        return "no such file"
    return None


def _customers_ok(value: Any) -> str | None:
    return None if value in ("sample", "none", "") else _file_ok(value)


def mask_kinds(value: str) -> frozenset[str]:
    if value.strip().lower() in ("", "none"):
        return frozenset()
    return frozenset(part.strip() for part in value.split(",") if part.strip())


def _mask_ok(value: Any) -> str | None:
    unknown = mask_kinds(str(value)) - set(KINDS)
    return (
        f"unknown entity kinds {', '.join(sorted(unknown))} (kinds: {', '.join(KINDS)})"
        if unknown
        else None
    )


ROLES = ("agent", "supervisor", "qa", "admin")


def _database_ok(value: Any) -> str | None:
    if str(value).startswith(("sqlite:///", "postgresql://", "postgres://")) or value in (
        "sqlite://",
    ):
        return None
    return "must be sqlite:///PATH or postgresql://USER:PASSWORD@HOST:PORT/DB"


def _redis_ok(value: Any) -> str | None:
    if not value or str(value).startswith(("redis://", "rediss://", "unix://")):
        return None
    return "must be redis://[:PASSWORD@]HOST:PORT/DB, rediss://... (TLS) or unix:///PATH"


def _name_ok(value: Any) -> str | None:
    if re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", str(value)):
        return None
    return "use 1 to 64 letters, digits, '_', '.', ':', '-'"


def _token_ok(value: Any) -> str | None:
    if value and (len(value) < 16 or any(c in value for c in " ,:")):
        return "a token needs at least 16 characters and no spaces, commas or colons"
    return None


def parse_tokens(text: str) -> dict[str, str]:
    """`TOKEN:ROLE,TOKEN:ROLE` → {token: role}."""
    pairs = [part.strip().rsplit(":", 1) for part in text.split(",") if part.strip()]
    return {token: role for token, role in pairs}


def _tokens_ok(value: Any) -> str | None:
    parts = [p.strip() for p in str(value).split(",") if p.strip()]
    for n, part in enumerate(parts, 1):
        if ":" not in part:
            return "must look like TOKEN:ROLE,TOKEN:ROLE"
        token, role = part.rsplit(":", 1)
        if role not in ROLES:
            # the role is not shown: a pair written ROLE:TOKEN would show the token
            return f"pair {n} has an unknown role (roles: {', '.join(ROLES)}); write TOKEN:ROLE"
        if problem := _token_ok(token):
            return problem
    return None


def parse_roles(text: str) -> dict[str, str]:
    """`external=customer,internal=agent` → {"external": "customer", "internal": "agent"}."""
    pairs = [part.split("=", 1) for part in text.split(",") if part.strip()]
    return {k.strip(): v.strip() for k, v in pairs}


def _roles_ok(*names: str) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        parts = [p for p in str(value).split(",") if p.strip()]
        if not all("=" in p for p in parts):
            return "must look like " + ",".join(f"{n}=ROLE" for n in names)
        roles = parse_roles(value)
        if set(roles) != set(names) or not all(
            re.fullmatch(r"[a-z][a-z0-9_-]{0,31}", r) for r in roles.values()
        ):
            return "must map " + " and ".join(names) + " to lowercase role names"
        if len(set(roles.values())) != len(roles):
            return "two sources may not share a role"
        return None

    return check


def parse_keys(text: str) -> dict[str, str]:
    """`KEY1:SECRET1,KEY2` → {"KEY1": "SECRET1", "KEY2": ""}."""
    keys = {}
    for part in text.split(","):
        if part.strip():
            key, _, secret = part.strip().partition(":")
            keys[key] = secret
    return keys


def _keys_ok(value: Any) -> str | None:
    for key, secret in parse_keys(str(value)).items():
        if not key:
            return "an API key is empty"
        try:
            if secret:
                base64.b64decode(secret, validate=True)
        except (binascii.Error, ValueError):  # ValueError: not ASCII
            return f"the client secret of key {key[:4]}... is not base64"
    return None


def parse_ingest_keys(text: str) -> dict[str, str]:
    """`KEY:NAME,KEY` → {"KEY": "NAME", "KEY": "key-…LAST4"}."""
    keys = {}
    for part in text.split(","):
        if part.strip():
            key, _, name = part.strip().partition(":")
            keys[key] = name or f"key-{key[-4:]}"
    return keys


def _ingest_keys_ok(value: Any) -> str | None:
    for part in str(value).split(","):
        if part.strip():
            key, _, name = part.strip().partition(":")
            if problem := _token_ok(key):
                return problem.replace("token", "key")
            if name and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
                return "a key name may have letters, digits, '_', '.', '-' (at most 64)"
    return None


def _twilio_tokens_ok(value: Any) -> str | None:
    for part in str(value).split(","):
        if part.strip() and (problem := _token_ok(part.strip())):
            return problem
    return None


def _ok(_: Any) -> str | None:
    return None


def _group(group: str) -> Callable[..., Any]:
    """The field maker of one group of settings: default, parser of the text form, check of
    the parsed value (a problem or None), help; `secret`: never echoed in errors or logs."""

    def declare(
        default: Any,
        parse: Callable[[str], Any],
        check: Callable[[Any], str | None],
        help: str,
        *,
        secret: bool = False,
    ) -> Any:
        meta = {"group": group, "parse": parse, "check": check, "help": help, "secret": secret}
        return field(default=default, repr=not secret, metadata=meta)

    return declare


_server = _group("server")
_recognition = _group("recognition")
_assist = _group("assist")
_access = _group("access")
_platforms = _group("platforms")
_store = _group("store")
_cluster = _group("cluster")


def _read_secret(source: str, path: str) -> str:
    """A secret kept in a file (Docker/Kubernetes secrets): its content, one line."""
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(
            f"{source}={path!r}: cannot read it ({exc.__class__.__name__})"
        ) from None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise SettingsError(f"{source}={path!r}: the file must hold the value on one line")
    return lines[0]


def same_model(a: str, b: str) -> bool:
    """Whether two model settings name the same model (`embedded` is `embedded:tiny.en`)."""

    def norm(spec: str) -> str:
        return EMBEDDED_WHISPER if spec in ("", "embedded") else spec

    return norm(a) == norm(b)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def recognition_workers(device: str, workers: int, threads: int) -> tuple[int, int]:
    """(decodes at once, threads per decode) for the `asr_workers` and `cpu_threads` settings,
    0 meaning automatic. On a CPU a small Whisper gains little from several threads in one
    decode (its matrices are small) and much from decodes side by side: one worker per core
    (at most 4, each a model replica in memory), the cores shared among them."""
    cores = available_cores()
    if workers <= 0:
        workers = min(cores, 4) if device == "cpu" else 1
    if threads <= 0:
        threads = max(1, cores // workers)
    return workers, threads


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting, grouped by subsystem: declared once here (default, parser, check,
    help), read from flags and CALLCUE_* variables by `load`."""

    # The server: address, connections, limits
    host: str = _server("127.0.0.1", str, _ok, "address to listen on")
    port: int = _server(8080, _int, _range(0, 65535), "TCP port (0: any free port)")
    max_connections: int = _server(
        1000,
        _int,
        _range(0, 1_000_000),
        "open connections (calls, screens, REST) the server takes; beyond it requests get "
        "503; 0: no limit",
    )
    header_timeout: int = _server(
        10,
        _int,
        _range(0, 3600),
        "seconds a connection has to send a complete request head (after opening, or after "
        "its previous response); later, it is closed; 0: no limit",
    )
    rate_limit: int = _server(
        600,
        _int,
        _range(0, 1_000_000),
        "REST requests a minute per client (token, or address without one), in bursts of up "
        "to a quarter of that; beyond it: 429 with Retry-After; 0: no limit",
    )
    max_frame_bytes: int = _server(
        1_048_576, _int, _range(1024, 16 * 1_048_576), "largest binary audio frame accepted"
    )
    max_calls: int = _server(
        200, _int, _range(1, 100_000), "concurrent calls accepted before new ones are refused"
    )
    max_calls_per_key: int = _server(
        0,
        _int,
        _range(0, 100_000),
        "concurrent calls one ingest credential (ingest key, Twilio token, AudioHook key) may "
        "hold; 0: only CALLCUE_MAX_CALLS applies",
    )
    max_call_seconds: int = _server(
        14_400,
        _int,
        _range(10, 7 * 86_400),
        "longest call (seconds of audio); a longer one is ended with reason max_duration",
    )
    idle_seconds: int = _server(
        60,
        _int,
        _range(0, 86_400),
        "a call that receives no audio for this long is ended with reason idle (an AudioHook "
        "session paused by Genesys is not idle); 0: never",
    )
    resume_seconds: int = _server(
        600,
        _int,
        _range(0, 7 * 86_400),
        "how long after a call ended the credential that started it may resume it (same call "
        "id); another credential never may (call_id_taken)",
    )
    events_backlog: int = _server(
        2000,
        _int,
        _range(10, 1_000_000),
        "events a slow screen may lag behind before it is disconnected",
    )
    events_kept: int = _server(
        1000,
        _int,
        _range(10, 1_000_000),
        "events of a call kept in memory for screens that join late or resume; older ones, "
        "once stored, are read back from the store (without a store, every event is kept)",
    )
    shutdown_timeout: int = _server(
        30,
        _int,
        _range(1, 3600),
        "on SIGTERM: seconds to finish the finals of calls in progress before exiting",
    )
    log_level: str = _server(
        "info", str, _choice("debug", "info", "warning", "error"), "log verbosity"
    )
    malloc_arenas: int = _server(
        2,
        _int,
        _range(0, 64),
        "glibc malloc arenas of the process (Linux): fewer hold less freed memory back from "
        "the system (8 calls: 915 against 1,013 MiB with 2); 0: glibc's own number (8 a core), "
        "as does a MALLOC_ARENA_MAX set in the environment",
    )

    # Recognition: Whisper's two passes, voice activity, revision, mono calls
    model: str = _recognition(
        "embedded:tiny.en",
        str,
        _ok,
        "Whisper model for partials (and finals where CALLCUE_FINAL_MODEL names the same): "
        "embedded:tiny.en, embedded:base, a CTranslate2 model directory, or a model name "
        "(needs a reachable model hub)",
    )
    final_model: str = _recognition(
        "embedded:base",
        str,
        _ok,
        "Whisper model for finals (decoded once per utterance: the accurate pass); same "
        "values as CALLCUE_MODEL; loaded once when both name the same model",
    )
    device: str = _recognition("cpu", str, _choice("cpu", "cuda", "auto"), "where Whisper runs")
    compute_type: str = _recognition(
        "int8",
        str,
        _choice(
            "default",
            "auto",
            "int8",
            "int8_float32",
            "int8_float16",
            "int8_bfloat16",
            "int16",
            "float16",
            "bfloat16",
            "float32",
        ),
        "CTranslate2 quantization",
    )
    cpu_threads: int = _recognition(
        0,
        _int,
        _range(0, 256),
        "threads per Whisper decode (0: the machine's cores shared among the ASR workers)",
    )
    beam_size: int = _recognition(
        5, _int, _range(1, 10), "beam size for finals (partials are greedy)"
    )
    final_deadline_ms: int = _recognition(
        900,
        _int,
        _range(0, 10_000),
        "a live final predicted to take longer than this from being queued (queue wait and "
        "decode) is decoded greedily, or, if that is late too, by the partials' model "
        "(English); revision decodes it again with the finals' model; 0: always the finals' "
        "model at full beam",
    )
    asr_workers: int = _recognition(
        0,
        _int,
        _range(0, 64),
        "decodes run at once across all calls, each on its own model replica (0: one per "
        "core up to 4 on a CPU, 1 on a GPU)",
    )
    asr_batch: int = _recognition(
        4,
        _int,
        _range(1, 64),
        "most partials of one encoder window decoded in one model call (1: one at a time)",
    )
    asr_nice: int = _recognition(
        5,
        _int,
        _range(0, 19),
        "niceness added to the Whisper decode threads (Linux), so the short latency-bound work "
        "(websockets, VAD, assist) runs first; 0: same priority",
    )
    encoder_windows: tuple[float, ...] = _recognition(
        (3.0, 6.0, 10.0, 15.0, 20.0, 30.0),
        _windows,
        _windows_ok,
        "encoder window sizes (s) for partials, comma-separated; 30 alone is the classic "
        "full window",
    )
    final_windows: tuple[float, ...] = _recognition(
        (10.0, 20.0, 30.0), _windows, _windows_ok, "encoder window sizes (s) for finals"
    )
    final_windows_busy: tuple[float, ...] = _recognition(
        (10.0, 20.0, 30.0),
        _windows,
        _windows_ok,
        "encoder window sizes (s) for finals decoded while other work waits",
    )
    partial_interval_ms: int = _recognition(
        400, _int, _range(100, 1000), "new audio between two partials of a channel"
    )
    max_utterance_s: float = _recognition(
        10.0, _float, _range(2.0, 28.0), "longest utterance before a final is forced"
    )
    speculative_final_ms: int = _recognition(
        200,
        _int,
        _range(0, 1000),
        "a final's decode starts this far into a pause, before the hangover confirms the end "
        "of the utterance (thrown away if speech resumes); 0, or a value not below the "
        "hangover: only once the utterance has ended",
    )
    speech_lead_ms: int = _recognition(
        500,
        _int,
        _range(0, 1000),
        "the most audio an utterance keeps from before the VAD's start of speech: pad_ms "
        "(200 ms) before it, or before a slow rise into it (probability of 0.4 x the VAD "
        "threshold or more just under it: Silero hears a turn's first word late on phone "
        "audio); never before the previous utterance's end; a diarized one-channel call "
        "keeps at most pad_ms; 200: as before",
    )
    hold_open_ms: int = _recognition(
        0,
        _int,
        _range(0, 3000),
        "a pause after words that leave a sentence open (no closing punctuation, or ending "
        "on 'the', 'because', 'my'...) ends the utterance only after this long, so the words "
        "after it are decoded with it instead of as a fragment; 0: off",
    )
    vad_threshold: float = _recognition(
        0.5, _float, _range(0.05, 0.95), "speech probability that starts an utterance"
    )
    vad_min_silence_ms: int = _recognition(
        400, _int, _range(100, 5000), "silence that ends an utterance (the hangover before a final)"
    )
    vad_long_speech_ms: int = _recognition(
        5000,
        _int,
        _range(1000, 30000),
        "after this much speech a pause shorter than the hangover (200 ms) may end an "
        "utterance (no effect with a hangover of 200 ms or less)",
    )
    sentence_pauses: bool = _recognition(
        False,
        _bool,
        _ok,
        "a pause shorter than the hangover that ends a long utterance (after "
        "vad_long_speech_ms) ends it only where the final's text closes a sentence (an open "
        "text goes on with the speech after it); false: any such pause ends it",
    )
    revise: bool = _recognition(
        True,
        _bool,
        _ok,
        "revise finals with the finals' model decoding each channel offline-style (long "
        "windows, the text before): transcript.revised events, and the stored transcript is "
        "the revised one; runs at the lowest CPU priority (local recognition only)",
    )
    revise_seconds: int = _recognition(
        0,
        _int,
        _range(0, 3600),
        "a channel is revised after each stretch of this much of its audio (at the end of an "
        "utterance) and when the call ends; 0: when the call ends, each channel whole as "
        "offline decoding hears it (every 600 s on a longer call); its audio waits in a "
        "temporary file meanwhile",
    )
    recognition: str = _recognition(
        "local",
        str,
        _choice("local", "remote"),
        "where Whisper runs: local (this process) or remote (`callcue worker` processes "
        "taking jobs from CALLCUE_REDIS_URL; finals first, stale partials dropped)",
    )
    diarize: bool = _recognition(
        False,
        _bool,
        _ok,
        "tell agent from customer by voice on one-channel calls (both parties mixed) that do "
        "not say (the start message's diarize, AudioHook's and Twilio's diarize parameter)",
    )
    voice_prints: bool = _recognition(
        False,
        _bool,
        _ok,
        "keep a voice print of each agent (metadata agent) from their two-channel calls, in "
        "the store, to tell them on their mono calls; only with the agents' consent",
    )

    # Assist: the playbook, customers, what an agent is shown
    assist: bool = _assist(
        True,
        _bool,
        _ok,
        "run the assist engine (intent, sentiment, suggestions); off: transcripts only",
    )
    playbook: str = _assist(
        "", str, _file_ok, "playbook YAML (empty: the shipped online-retail playbook)"
    )
    customers: str = _assist(
        "sample",
        str,
        _customers_ok,
        "customer directory JSON file; 'sample' the shipped demo customers; 'none' no lookup",
    )
    intent_threshold: float = _assist(
        0.0,
        _float,
        _range(0.0, 0.99),
        "calibrated confidence below which an utterance has no intent (0: the playbook's "
        "settings.intent_threshold, else 0.3 for a playbook tuned by `callcue train`, 0.6 "
        "for one that is not)",
    )
    pii_mask: str = _assist(
        "card_number,ssn",
        str,
        _mask_ok,
        "entity kinds masked in everything sent to screens and stored (comma-separated; "
        "'none' masks nothing)",
    )
    alert_negative_streak: int = _assist(
        2, _int, _range(1, 100), "consecutive negative customer utterances that raise an alert"
    )
    alert_trend_below: float = _assist(
        -0.35,
        _float,
        _range(-1.0, 1.0),
        "rolling customer sentiment (-1..1) below which an alert is raised",
    )

    # Access: tokens, keys, origins, TLS
    admin_token: str = _access("", str, _token_ok, "bearer token with the admin role", secret=True)
    tokens: str = _access(
        "",
        str,
        _tokens_ok,
        "more bearer tokens as TOKEN:ROLE,... (roles: agent, supervisor, qa, admin)",
        secret=True,
    )
    ingest_keys: str = _access(
        "",
        str,
        _ingest_keys_ok,
        "API keys for native ingest (/v1/ingest), comma-separated KEY or KEY:NAME (NAME shows "
        "in logs and metrics); sent as 'Authorization: Bearer KEY' or ?token=KEY",
        secret=True,
    )
    link_secret: str = _access(
        "",
        str,
        _token_ok,
        "key that signs per-call screen links (set it on every node so links survive "
        "restarts); empty: a random key each start",
        secret=True,
    )
    link_ttl: int = _access(
        43_200, _int, _range(60, 30 * 86_400), "seconds a per-call screen link stays valid"
    )
    allowed_origins: str = _access(
        "",
        str,
        _ok,
        "browser origins allowed on the websockets (comma-separated, e.g. "
        "https://crm.example.com); empty: the server's own origin only; '*': any",
    )
    allowed_hosts: str = _access(
        "",
        str,
        _ok,
        "host names this server answers to (comma-separated, e.g. callcue.example.com; '*': "
        "any); other Host headers get 400 host_not_allowed (DNS rebinding); empty: the "
        "loopback names on a server without tokens, any host on one with tokens",
    )
    tls_certfile: str = _access(
        "",
        str,
        _file_ok,
        "PEM certificate (chain) to serve HTTPS/WSS directly; needs CALLCUE_TLS_KEYFILE",
    )
    tls_keyfile: str = _access("", str, _file_ok, "PEM private key of CALLCUE_TLS_CERTFILE")

    # Contact-center platforms: Genesys AudioHook, Twilio Media Streams
    audiohook_keys: str = _platforms(
        "",
        str,
        _keys_ok,
        "AudioHook credentials, comma-separated API_KEY:BASE64_CLIENT_SECRET (a key without "
        "a secret is checked without signature); empty: AudioHook accepts any client",
        secret=True,
    )
    audiohook_channels: str = _platforms(
        "external=customer,internal=agent",
        str,
        _roles_ok("external", "internal"),
        "AudioHook channel to role mapping",
    )
    audiohook_transcripts: bool = _platforms(
        True, _bool, _ok, "send transcripts back to Genesys as AudioHook event messages"
    )
    twilio_tokens: str = _platforms(
        "",
        str,
        _twilio_tokens_ok,
        "comma-separated tokens (16 characters or more) a Twilio stream must carry in "
        "customParameters.token; empty: Twilio streams need no token",
        secret=True,
    )
    twilio_tracks: str = _platforms(
        "inbound=customer,outbound=agent",
        str,
        _roles_ok("inbound", "outbound"),
        "Twilio track to role mapping",
    )

    # The call store, recordings, webhooks
    database_url: str = _store(
        "sqlite:///~/.local/share/callcue/callcue.db",
        str,
        _database_ok,
        "the call store: sqlite:///PATH (WAL, FTS5) or postgresql://USER:PASS@HOST/DB",
        secret=True,
    )
    store_buffer: int = _store(
        100_000,
        _int,
        _range(100, 10_000_000),
        "events kept in memory while the store is unreachable (written when it is back; "
        "beyond this, new calls are refused and the loss is reported)",
    )
    record_audio: bool = _store(
        False,
        _bool,
        _ok,
        "keep each channel's audio as a WAV file next to the store (16 kHz PCM16)",
    )
    recordings_dir: str = _store(
        "~/.local/share/callcue/recordings", str, _ok, "where recordings are written"
    )
    retention_days: int = _store(
        0,
        _int,
        _range(0, 36500),
        "delete calls (and their audio) older than this many days, checked hourly; 0 keeps all",
    )
    webhooks: str = _store(
        "",
        str,
        _webhooks_ok,
        'webhooks as JSON: [{"url": "https://...", "secret": "...", "events": ["call.ended"]}]',
        secret=True,
    )
    webhook_retry_seconds: float = _store(
        10.0,
        _float,
        _range(0.1, 3600),
        "first retry of a failed webhook delivery after this many seconds (then doubling)",
    )

    # Several nodes on Redis
    redis_url: str = _cluster(
        "",
        str,
        _redis_ok,
        "Redis for several nodes as one service (redis://[:PASSWORD@]HOST:PORT/DB): every "
        "call's events, the registry of live calls, node heartbeats; needs a PostgreSQL "
        "store shared by the nodes; empty: one node, in-process hub",
        secret=True,
    )
    redis_prefix: str = _cluster(
        "callcue",
        str,
        _name_ok,
        "prefix of every Redis key (nodes with the same prefix form one service)",
    )
    node_id: str = _cluster(
        "",
        str,
        lambda v: _name_ok(v) if v else None,
        "this node's name in the call registry (empty: HOSTNAME-PID)",
    )
    node_timeout: float = _cluster(
        5.0,
        _float,
        _range(1.0, 300.0),
        "seconds without a heartbeat after which a node counts as failed: another node marks "
        "its calls interrupted and tells their screens (heartbeats every fifth of this)",
    )
    redis_stream_ttl: int = _cluster(
        600,
        _int,
        _range(10, 30 * 86_400),
        "seconds a call's event stream stays in Redis after the call ends (screens that "
        "reconnect later replay it from the store)",
    )
    redis_buffer: int = _cluster(
        100_000,
        _int,
        _range(100, 10_000_000),
        "events kept in memory while Redis is unreachable (sent when it is back; beyond "
        "this they are counted as dropped: other nodes' screens then fill from the store)",
    )

    @classmethod
    def load(
        cls, env: Mapping[str, str] | None = None, overrides: Mapping[str, Any] | None = None
    ) -> Settings:
        """Flags (overrides) win over environment variables, which win over defaults."""
        env = os.environ if env is None else env
        overrides = overrides or {}
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            source = f"--{setting.name.replace('_', '-')}"
            raw: Any = overrides.get(setting.name)
            if raw is None and setting.env in env:
                raw, source = env[setting.env], setting.env
            elif raw is None and setting.secret and f"{setting.env}_FILE" in env:
                source = f"{setting.env}_FILE"
                raw = _read_secret(source, env[source])
            if raw is None:
                values[setting.name] = setting.default
                continue
            try:
                value = setting.parse(raw) if isinstance(raw, str) else raw
            except ValueError as exc:
                shown = "(hidden)" if setting.secret else repr(raw)
                raise SettingsError(f"{source}={shown}: {exc}") from None
            problem = setting.check(value)
            if problem:
                shown = "(hidden)" if setting.secret else repr(raw)
                raise SettingsError(f"{source}={shown}: {problem}")
            values[setting.name] = value
        for name in ("model", "final_model"):
            try:
                resolve_whisper_model(values[name])
            except ModelNotFoundError as exc:
                variable = f"CALLCUE_{name.upper()}/--{name.replace('_', '-')}"
                raise SettingsError(f"{variable}={values[name]!r}: {exc}") from None
        if values["recognition"] == "remote" and not values["redis_url"]:
            raise SettingsError(
                "CALLCUE_RECOGNITION=remote sends recognition work over Redis: set "
                "CALLCUE_REDIS_URL too"
            )
        if bool(values["tls_certfile"]) != bool(values["tls_keyfile"]):
            raise SettingsError(
                "CALLCUE_TLS_CERTFILE and CALLCUE_TLS_KEYFILE go together: set both or neither"
            )
        return cls(**values)

    @property
    def whisper(self) -> WhisperOptions:
        workers, threads = recognition_workers(self.device, self.asr_workers, self.cpu_threads)
        return WhisperOptions(
            model=self.model,
            device=self.device,
            compute_type=self.compute_type,
            cpu_threads=threads,
            workers=workers,
            nice=self.asr_nice,
            beam_size=self.beam_size,
            windows=self.encoder_windows,
            final_windows=self.final_windows,
            final_windows_busy=self.final_windows_busy,
        )

    @property
    def final_whisper(self) -> WhisperOptions:
        """The finals' model with the same device, threads and windows as the partials'."""
        return replace(self.whisper, model=self.final_model)

    @property
    def two_pass(self) -> bool:
        """Whether finals use a model of their own (else one engine does both)."""
        return not same_model(self.model, self.final_model)

    @property
    def playbook_path(self) -> Path | None:
        return Path(self.playbook) if self.playbook else None

    @property
    def customers_path(self) -> Path | None:
        if self.customers in ("", "none"):
            return None
        return SAMPLE_DIRECTORY if self.customers == "sample" else Path(self.customers)

    @property
    def assist_options(self) -> AssistOptions:
        return AssistOptions(
            intent_threshold=self.intent_threshold or None,
            mask_kinds=mask_kinds(self.pii_mask),
            alert_negative_streak=self.alert_negative_streak,
            alert_trend_below=self.alert_trend_below,
        )

    @property
    def token_roles(self) -> dict[str, str]:
        roles = parse_tokens(self.tokens)
        if self.admin_token:
            roles[self.admin_token] = "admin"
        return roles

    @property
    def ingest_key_names(self) -> dict[str, str]:
        return parse_ingest_keys(self.ingest_keys)

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(
            o.strip().rstrip("/").lower() for o in self.allowed_origins.split(",") if o.strip()
        )

    @property
    def vad(self) -> VadOptions:
        return VadOptions(
            threshold=self.vad_threshold,
            min_silence_ms=self.vad_min_silence_ms,
            long_speech_ms=self.vad_long_speech_ms,
        )

    @property
    def streaming(self) -> StreamingOptions:
        return StreamingOptions(
            partial_interval_ms=self.partial_interval_ms,
            max_utterance_s=self.max_utterance_s,
            speculative_final_ms=self.speculative_final_ms,
            speech_lead_ms=self.speech_lead_ms,
            hold_open_ms=self.hold_open_ms,
            sentence_pauses=self.sentence_pauses,
        )


SETTINGS: tuple[Setting, ...] = tuple(
    Setting(
        name=f.name,
        env=f"CALLCUE_{f.name.upper()}",
        default=f.default,
        parse=f.metadata["parse"],
        check=f.metadata["check"],
        help=f.metadata["help"],
        group=f.metadata["group"],
        secret=f.metadata["secret"],
    )
    for f in fields(Settings)
)
