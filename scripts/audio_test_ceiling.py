"""Where an audio VQ-VAE stands on the public test clips before it has a prior: PESQ-WB and STOI
of the speech clips and the log-mel distance of the music clips, unquantized and from the first
2, 4, 8 and 16 stages (greedy codes: 1.5, 3, 6 and 12 kbps before the prior), on the first 8
seconds of every clip, mono, mean per group.

    python scripts/audio_test_ceiling.py models/aud1.safetensors models/training/aud2.safetensors
    python scripts/audio_test_ceiling.py --held-out models/training/aud2-vocos.safetensors

With `--held-out`, the clips are the trainer's own held-out evaluation instead (`held_out_split`
of the training audio, its first EVAL_CLIPS clips of each group): what its log reads at the
checkpoint's step, re-read on this machine.

Any file with `vqvae.*` weights and its `net` in the metadata will do: a shipped model or a
training checkpoint. Evaluation only: nothing here is tuned on the test clips.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vqcodec.media.audio import list_audio
from vqcodec.train.audio import EVAL_CLIPS, evaluate_clips, held_out_clips, training_audio
from vqcodec.train.loop import load_trained_vqvae
from vqcodec.train.trainer import held_out_split

TEST_CLIPS = Path("../shared/data/audio/test")
TRAINING_AUDIO = Path("../shared/data/audio/train")
AUDIO_SOURCES = Path.home() / ".cache" / "vqcodec" / "audio-src"  # where training fetches the Debian packages
COLUMNS = ("unquantized", "q2", "q4", "q8", "q16")


def _cell(record: dict, column: str) -> str:
    speech = f"{record[f'speech_pesq_{column}']:.2f} / {record[f'speech_stoi_{column}']:.3f}"
    return f"{speech} / {record[f'music_mel_{column}']:.3f}"


def test_groups() -> dict[str, list[Path]]:
    files = list_audio(TEST_CLIPS)
    return {group: [p for p in files if p.name.startswith(group)] for group in ("speech", "music")}


def main(paths: list[Path], held_out: bool = False) -> None:
    # All the test clips; of the held-out files, the trainer's EVAL_CLIPS a group.
    groups = held_out_split(training_audio(TRAINING_AUDIO, AUDIO_SOURCES))[1] if held_out else test_groups()
    count = EVAL_CLIPS if held_out else max(map(len, groups.values()))
    print("| model | step | clips | " + " | ".join(f"PESQ / STOI / music mel {c}" for c in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for path in paths:
        vqvae, step = load_trained_vqvae(Path("/nonexistent"), "audio", path)
        clips = held_out_clips(groups, vqvae.cfg, count=count)
        with torch.inference_mode():
            r = evaluate_clips(vqvae, clips)
        cells = [_cell(r, c) for c in COLUMNS]
        counts = "/".join(str(len(clips[g])) for g in ("speech", "music"))
        print(f"| {path.stem} | {step} | {counts} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    args = sys.argv[1:]
    main([Path(p) for p in args if p != "--held-out"], held_out="--held-out" in args)
