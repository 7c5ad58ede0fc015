"""The real bitrate of whole .vqc files of the audio test clips at each nominal bitrate, and the
prior's saving that it shows (headers and checks included).

    python scripts/audio_file_rates.py MODEL [MODEL ...]   (names or .safetensors paths)

Every clip of ../shared/data/audio/test (run from the repository), whole, in its own file;
speech and music apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import soundfile

from vqcodec.codec.audio import compress_audio

TEST = Path("../shared/data/audio/test")
NOMINAL_KBPS = (1.5, 3.0, 6.0, 12.0)


def real_kbps(model: str, clips: list[Path], kbps: float) -> float:
    bits = seconds = 0.0
    for clip in clips:
        samples, rate = soundfile.read(clip, dtype="float32", always_2d=True)
        bits += 8 * len(compress_audio((samples.T, rate), kbps, model=model))
        seconds += len(samples) / rate
    return bits / seconds / 1000


if __name__ == "__main__":
    clips = sorted(p for p in TEST.iterdir() if p.suffix in (".wav", ".ogg", ".flac"))
    for group in ("speech", "music"):
        members = [p for p in clips if p.name.startswith(group)]
        for model in sys.argv[1:]:
            rates = [real_kbps(model, members, kbps) for kbps in NOMINAL_KBPS]
            saved = [100 * (1 - r / k) for k, r in zip(NOMINAL_KBPS, rates, strict=True)]
            cells = [f"{k} kbps: {r:.2f} ({s:.1f} % saved)" for k, r, s in zip(NOMINAL_KBPS, rates, saved, strict=True)]
            print(f"{group}, {model}: " + ", ".join(cells))
