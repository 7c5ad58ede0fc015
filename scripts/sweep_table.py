"""An architecture sweep as a Markdown table: each candidate's last held-out evaluation.

    python scripts/sweep_table.py [SWEEP_DIR]   (default ~/.cache/vqcodec/img2-sweep)

Each candidate is a cache folder with its `vqvae_eval.jsonl` (written by `vqcodec train` at
every save) and its state, whose tensors give the parameter count. Image candidates show PSNR
(with the bits per pixel before the prior) and MS-SSIM; sound candidates PESQ and STOI on
speech and the mel distance on music, unquantized and at 2, 4, 8 and 16 stages.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path


def parameters(state: Path) -> int:
    from safetensors import safe_open

    with safe_open(str(state), framework="numpy") as f:
        keys = [k for k in f.keys() if k.startswith("model.") and ".codebook_" not in k and ".ema_" not in k]
        return sum(math.prod(f.get_slice(k).get_shape()) for k in keys)


def image_cells(r: dict) -> tuple[list[str], list[str]]:
    stages = [s for s in ("q1", "q2", "q4", "q8", "q12") if f"psnr_{s}" in r]
    head = ["unquantized PSNR", *[f"PSNR {s}" for s in stages], "MS-SSIM q4", "MS-SSIM q12", "codes used q1"]
    bpp = r["bpp_before_prior"]
    cells = [f"{r['psnr_unquantized']:.2f}", *[f"{r[f'psnr_{s}']:.2f} ({bpp[s]:.2f} bpp)" for s in stages]]
    cells += [f"{r.get('msssim_q4', float('nan')):.4f}", f"{r.get('msssim_q12', float('nan')):.4f}"]
    return head, cells + [f"{r['code_usage'][0]:.2f}"]


def audio_cells(r: dict) -> tuple[list[str], list[str]]:
    keys = ["unquantized", *r["kbps_before_prior"]]
    head, cells = [], []
    for metric, group in (("pesq", "speech"), ("stoi", "speech"), ("mel", "music")):
        for key in keys:
            head.append(f"{group} {metric.upper() if metric != 'mel' else 'mel'} {key}")
            value = r.get(f"{group}_{metric}_{key}")
            cells.append("-" if value is None else f"{value:.3f}")
    return head, cells


def rows(sweep: Path) -> list[str]:
    lines: list[str] = []
    for log in sorted(sweep.glob("*/vqvae_eval.jsonl")):
        last = json.loads(log.read_text().splitlines()[-1])
        head, cells = (image_cells if "psnr_unquantized" in last else audio_cells)(last)
        if not lines:
            lines = ["| candidate | parameters | minutes | steps | " + " | ".join(head) + " |"]
            lines.append("|" + "---|" * (len(head) + 4))
        state = log.parent / "vqvae_state.safetensors"
        count = f"{parameters(state) / 1e6:.2f} M"
        lines.append(
            f"| {log.parent.name} | {count} | {last['train_minutes']:.0f} | {last['step']} | "
            + " | ".join(cells)
            + " |"
        )
    return lines


if __name__ == "__main__":
    sweep = Path(sys.argv[1]) if len(sys.argv) > 1 else Path.home() / ".cache" / "vqcodec" / "img2-sweep"
    print("\n".join(rows(sweep)))
