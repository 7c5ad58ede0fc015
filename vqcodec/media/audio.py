"""Reading audio: any file libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, ...) as float32,
resampled with soxr."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile
import soxr

from vqcodec.catalog import AUDIO_SUFFIXES
from vqcodec.errors import BadInputError


def list_audio(root: Path) -> list[Path]:
    """Audio files under `root` (recursively), sorted."""
    return sorted(p for p in Path(root).rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)


def load_audio(path: Path, sample_rate: int | None = None, start: int = 0, frames: int = -1) -> tuple[np.ndarray, int]:
    """(samples [channels, n] float32, sample rate); resampled when `sample_rate` is given; with
    `start` and `frames` (at the file's own rate), only that part is decoded.

    NaN and infinite samples (possible in float WAV) are an error, not silently coded.
    """
    try:
        samples, rate = soundfile.read(str(path), frames, start, dtype="float32", always_2d=True)
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise BadInputError(f"{path}: not a readable audio file ({e})") from None
    if not np.isfinite(samples).all():
        raise BadInputError(f"{path}: contains NaN or infinite samples")
    if sample_rate and rate != sample_rate and len(samples):
        samples = soxr.resample(samples, rate, sample_rate, quality="HQ").astype(np.float32)
        rate = sample_rate
    return np.ascontiguousarray(samples.T), rate
