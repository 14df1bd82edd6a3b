"""Does the Whisper backend gain from decoding several channels in one model call?

CTranslate2 takes a batch of feature windows. For each encoder window size and batch size this
measures, on real speech (the JFK recording, cut to the window), the wall time per channel of
the encoder and of a greedy decode (the partials' decode) run as one batch, against the same
work done one channel at a time; and, for the same total work, two decodes side by side on
two model replicas with one thread each (what `CALLCUE_ASR_WORKERS` does). Writes
benchmarks/results/batching.json.

    python -m benchmarks.batching [--device cpu|cuda] [--compute-type int8] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

import numpy as np

from benchmarks.common import DATA, write_result
from models.whisper import WhisperEngine, WhisperOptions

WINDOWS = (3, 6, 10, 30)
BATCHES = (1, 2, 4, 8)


def timed(fn: Any, repeat: int) -> float:
    fn()  # warm
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compute-type", default="int8")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    import ctranslate2

    engine = WhisperEngine(
        WhisperOptions(device=args.device, compute_type=args.compute_type, workers=1)
    )
    model = engine.model.model
    from faster_whisper import decode_audio

    audio = decode_audio(str(DATA / "wb_jfk_inaugural_1961.flac"))  # 16 kHz mono float32
    tk = engine.tokenizer
    prompt = [*tk.sot_sequence, tk.no_timestamps]
    rows = []
    for window in WINDOWS:
        frames = window * 100
        clip = audio[: max(0, window - 1) * 16000]  # speech, then a second of padding
        features = engine.model.feature_extractor(clip, padding=160)
        features = np.pad(features, ((0, 0), (0, max(0, frames - features.shape[-1]))))
        features = np.ascontiguousarray(features[:, :frames], dtype=np.float32)
        single = None
        for batch in BATCHES:
            stacked = ctranslate2.StorageView.from_array(
                np.ascontiguousarray(np.repeat(features[None], batch, 0))
            )
            encoded = model.encode(stacked, to_cpu=False)
            encode_s = timed(lambda s=stacked: model.encode(s, to_cpu=False), args.repeat)
            generate_s = timed(
                lambda e=encoded, b=batch: model.generate(
                    e, [prompt] * b, beam_size=1, max_length=64, suppress_blank=True
                ),
                args.repeat,
            )
            row = {
                "window_s": window,
                "batch": batch,
                "encode_ms_per_channel": round(encode_s / batch * 1000, 1),
                "greedy_decode_ms_per_channel": round(generate_s / batch * 1000, 1),
            }
            if batch == 1:
                single = row
            else:
                assert single is not None
                row["gain_vs_one_at_a_time"] = round(
                    (single["encode_ms_per_channel"] + single["greedy_decode_ms_per_channel"])
                    / (row["encode_ms_per_channel"] + row["greedy_decode_ms_per_channel"]),
                    2,
                )
            rows.append(row)
            print(row, flush=True)
    side_by_side = []
    if args.device == "cpu":
        clip = audio[: 5 * 16000]
        for workers, threads in ((1, 2), (2, 1)):
            replicas = WhisperEngine(
                WhisperOptions(compute_type=args.compute_type, workers=workers, cpu_threads=threads)
            )

            def run(engine: WhisperEngine = replicas, n: int = 8, workers: int = workers) -> None:
                def loop() -> None:
                    for _ in range(n // workers):
                        engine.decode(clip)

                threads_ = [threading.Thread(target=loop) for _ in range(workers)]
                for thread in threads_:
                    thread.start()
                for thread in threads_:
                    thread.join()

            seconds = timed(run, max(2, args.repeat // 2))
            side_by_side.append(
                {
                    "workers": workers,
                    "threads_each": threads,
                    "partials_per_second": round(8 / seconds, 2),
                }
            )
            print(side_by_side[-1], flush=True)
    path = write_result(
        "batching",
        {
            "device": args.device,
            "compute_type": args.compute_type,
            "model": "embedded:tiny.en",
            "batched": rows,
            "side_by_side": side_by_side,
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
