"""The training curve of a model in training, from its committed evaluation log.

    python scripts/training_card.py models/training/img2

reads NAME.eval.jsonl (every whole-photo evaluation of every session, see
scripts/checkpoint.py) and NAME.safetensors, and writes NAME.curve.png (PSNR of the
unquantized autoencoder and at each stage count against training hours) and prints the
Markdown table of the curve for the card, NAME.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

STAGES = ("q1", "q2", "q4", "q8", "q12")


def load(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    hours = [r["train_minutes"] / 60 for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in ("unquantized", *STAGES):
        if f"psnr_{key}" in records[-1]:
            axes[0].plot(hours, [r[f"psnr_{key}"] for r in records], label=key, lw=1)
            axes[1].plot(hours, [r[f"msssim_{key}"] for r in records], label=key, lw=1)
    for ax, label in zip(axes, ("PSNR (dB)", "MS-SSIM"), strict=True):
        ax.set_xlabel("training hours, wall clock (all sessions)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title}: whole held-out training photos")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(records: list[dict], every: int = 1) -> str:
    head = "| hours | step | unquantized | " + " | ".join(STAGES) + " | MS-SSIM q4 | MS-SSIM q12 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records[::every] + ([] if (len(records) - 1) % every == 0 else records[-1:]):
        cells = [f"{r['train_minutes'] / 60:.2f}", str(r["step"]), f"{r['psnr_unquantized']:.2f}"]
        cells += [f"{r[f'psnr_{s}']:.2f}" for s in STAGES]
        cells += [f"{r['msssim_q4']:.4f}", f"{r['msssim_q12']:.4f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    stem = Path(sys.argv[1])
    records = load(stem.with_suffix(".eval.jsonl"))
    plot(records, stem.with_suffix(".curve.png"), stem.name)
    print(table(records, every=max(1, len(records) // 12)))
