"""The prior's saving per stage on whole held-out training recordings, coded as users code files.

    python scripts/prior_savings.py KBPS MODEL [MODEL ...]   (.safetensors paths in one folder)

The held-out grids a prior is trained beside (4-second excerpts at random gains, a quarter of
them band-limited) flatter it: quiet and band-limited frames are cheap. Here FILES speech
recordings of the trainer's held-out split (every 20th file of ../shared/data/audio/train) are
coded whole at KBPS by each model, and the information of every index is read back as `vqcodec
inspect` reads it: per stage, and in all, the saving against log2(K) bits per index. Never run
on the test clips: they are for evaluation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from vqcodec.codec.audio import compress_audio
from vqcodec.media.audio import list_audio
from vqcodec.tools.inspection import inspect_file
from vqcodec.train.trainer import held_out_split

TRAINING_SPEECH = Path("../shared/data/audio/train")
FILES = 8


def savings(model: Path, recordings: list[Path], kbps: float) -> tuple[list[float], float]:
    """(saving of each stage, saving of all stages) over `recordings`, as fractions."""
    per_stage = []  # [stages, indices] of each stream: the information of each index, in bits
    for path in recordings:
        result = inspect_file(compress_audio(path, kbps, model=str(model), device="cpu"), device="cpu")
        per_stage += [stream.reshape(stream.shape[0], -1) for stream in result.bits]
    bits = np.concatenate(per_stage, 1)
    uniform = np.log2(result.codebook_sizes[: len(bits)]) * bits.shape[1]
    return (1 - bits.sum(1) / uniform).tolist(), float(1 - bits.sum() / uniform.sum())


def main(kbps: float, models: list[Path]) -> None:
    if len({path.parent for path in models}) > 1:
        sys.exit("the models must be in one folder: decoding finds a file's model by name")
    os.environ["VQCODEC_MODELS"] = str(models[0].parent)
    held_out = held_out_split({"speech": list_audio(TRAINING_SPEECH)})[1]["speech"]
    recordings = held_out[:: max(1, len(held_out) // FILES)][:FILES]
    print(f"{len(recordings)} held-out training recordings, whole, at {kbps:g} kbps")
    for model in models:
        per_stage, total = savings(model, recordings, kbps)
        stages = " ".join(f"{100 * s:.1f}" for s in per_stage)
        print(f"{model.stem}: {100 * total:.1f} % saved; per stage (%): {stages}")


if __name__ == "__main__":
    main(float(sys.argv[1]), [Path(p) for p in sys.argv[2:]])
