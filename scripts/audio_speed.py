"""Encoding and decoding speed of audio models side by side, in one process: every speech test
clip at one bitrate, the models alternating, a few rounds, so that the machine's drift between
runs (large on this CPU) falls on all of them alike.

    python scripts/audio_speed.py KBPS MODEL [MODEL ...]   (names or .safetensors paths)

Per model: the mean over the clips of each clip's median real-time factor, and the slowest
single call. The clips go in as arrays, as `vqcodec bench audio` passes them.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

from vqcodec.codec.audio import compress_audio, decompress_audio
from vqcodec.media.audio import load_audio

TEST = Path("../shared/data/audio/test")
ROUNDS = 3


def real_time_factors(kbps: float, models: list[str]) -> dict[tuple[str, str], list[list[float]]]:
    """{(model, "encode" | "decode"): per clip, the real-time factor of each round}."""
    clips = [load_audio(path) for path in sorted(TEST.glob("speech*"))]
    for model in models:  # the first call of a model loads it: not timed
        decompress_audio(compress_audio(clips[0], kbps, model=model, device="cpu"), device="cpu")
    factors = {(m, step): [[] for _ in clips] for m in models for step in ("encode", "decode")}
    for _ in range(ROUNDS):
        for model in models:
            for i, (samples, rate) in enumerate(clips):
                seconds = samples.shape[1] / rate
                start = time.perf_counter()
                data = compress_audio((samples, rate), kbps, model=model, device="cpu")
                factors[model, "encode"][i].append(seconds / (time.perf_counter() - start))
                start = time.perf_counter()
                decompress_audio(data, device="cpu")
                factors[model, "decode"][i].append(seconds / (time.perf_counter() - start))
    return factors


def main(kbps: float, models: list[str]) -> None:
    for (model, step), per_clip in real_time_factors(kbps, models).items():
        medians = [statistics.median(rounds) for rounds in per_clip]
        slowest = min(min(rounds) for rounds in per_clip)
        mean = statistics.mean(medians)
        print(f"{model} {step} at {kbps:g} kbps: {mean:.1f}x real time (slowest call {slowest:.1f}x)")


if __name__ == "__main__":
    main(float(sys.argv[1]), sys.argv[2:])
