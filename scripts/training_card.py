"""The training curve of a model in training, from its committed evaluation log.

    python scripts/training_card.py models/training/img2     (or models/training/aud2)

reads NAME.eval.jsonl (every held-out evaluation of every session, see scripts/checkpoint.py)
and writes NAME.curve.png (images: PSNR and MS-SSIM of the unquantized autoencoder and at each
stage count; sound: speech PESQ-WB and music mel distance) against training hours, and prints
the Markdown table of the curve for the card, NAME.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Per kind: the two metrics plotted (key prefix, axis label).
METRICS = {
    "image": (("psnr", "PSNR (dB)"), ("msssim", "MS-SSIM")),
    "audio": (("speech_pesq", "speech PESQ-WB"), ("music_mel", "music mel distance")),
}


def load(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def kind_of(records: list[dict]) -> str:
    return "audio" if "speech_pesq_unquantized" in records[-1] or "music_mel_unquantized" in records[-1] else "image"


def stages_and_metrics(records: list[dict]) -> tuple[tuple[str, ...], tuple]:
    """The stage counts of the last evaluation ("q1", ...: those the model has) and the metrics."""
    last = records[-1]
    return tuple(last.get("bpp_before_prior") or last["kbps_before_prior"]), METRICS[kind_of(records)]


def plot(records: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages, metrics = stages_and_metrics(records)
    hours = [r["train_minutes"] / 60 for r in records]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for key in ("unquantized", *stages):
        for ax, (metric, _) in zip(axes, metrics, strict=True):
            if f"{metric}_{key}" in records[-1]:
                ax.plot(hours, [r.get(f"{metric}_{key}") for r in records], label=key, lw=1)
    for ax, (_, label) in zip(axes, metrics, strict=True):
        ax.set_xlabel("training hours, wall clock (all sessions)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{title}: whole held-out training {'clips' if kind_of(records) == 'audio' else 'photos'}")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def table(records: list[dict], every: int = 1) -> str:
    stages, metrics = stages_and_metrics(records)
    keys = [f"{metrics[0][0]}_{k}" for k in ("unquantized", *stages)]
    keys += [f"{metrics[1][0]}_{k}" for k in (stages[len(stages) // 2], stages[-1])]
    head = "| hours | step | " + " | ".join(k.replace("_", " ") for k in keys) + " |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in records[::every] + ([] if (len(records) - 1) % every == 0 else records[-1:]):
        cells = [f"{r['train_minutes'] / 60:.2f}", str(r["step"])]
        cells += [f"{r[k]:.4f}" if "msssim" in k or "mel" in k else f"{r[k]:.2f}" for k in keys]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    stem = Path(sys.argv[1])
    records = load(stem.with_suffix(".eval.jsonl"))
    plot(records, stem.with_suffix(".curve.png"), stem.name)
    print(table(records, every=max(1, len(records) // 12)))
