"""Where an audio VQ-VAE stands on the public test clips before it has a prior: PESQ-WB and STOI
of the speech clips and the log-mel distance of the music clips, unquantized and from the first
2, 4, 8 and 16 stages (greedy codes: 1.5, 3, 6 and 12 kbps before the prior), on the first 8
seconds of every clip, mono, mean per group.

    python scripts/audio_test_ceiling.py models/aud1.safetensors models/training/aud2.safetensors

Any file with `vqvae.*` weights and its `net` in the metadata will do: a shipped model or a
training checkpoint. Evaluation only: nothing here is tuned on the test clips.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vqcodec.media.audio import list_audio
from vqcodec.train.audio import evaluate_clips, held_out_clips
from vqcodec.train.loop import load_trained_vqvae

TEST_CLIPS = Path("../shared/data/audio/test")
COLUMNS = ("unquantized", "q2", "q4", "q8", "q16")


def _cell(record: dict, column: str) -> str:
    speech = f"{record[f'speech_pesq_{column}']:.2f} / {record[f'speech_stoi_{column}']:.3f}"
    return f"{speech} / {record[f'music_mel_{column}']:.3f}"


def main(paths: list[Path]) -> None:
    files = list_audio(TEST_CLIPS)
    groups = {group: [p for p in files if p.name.startswith(group)] for group in ("speech", "music")}
    print("| model | step | clips | " + " | ".join(f"PESQ / STOI / music mel {c}" for c in COLUMNS) + " |")
    print("|---|---|---|" + "---|" * len(COLUMNS))
    for path in paths:
        vqvae, step = load_trained_vqvae(Path("/nonexistent"), "audio", path)
        clips = held_out_clips(groups, vqvae.cfg, count=max(map(len, groups.values())))
        with torch.inference_mode():
            r = evaluate_clips(vqvae, clips)
        cells = [_cell(r, c) for c in COLUMNS]
        counts = "/".join(str(len(clips[g])) for g in ("speech", "music"))
        print(f"| {path.stem} | {step} | {counts} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
