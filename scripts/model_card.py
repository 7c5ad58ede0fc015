"""Write models/NAME.md (the model card) from the training report and the Kodak benchmark.

python scripts/model_card.py models/img1.safetensors results/kodak
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from vqcodec.quantizer import SEARCH_BEAM, SEARCHED_STAGES


def fmt_bd(v):
    return "no overlap" if v is None else f"{v:+.1f} %"


def tables(results: Path) -> str:
    summary = json.loads((results / "summary.json").read_text())
    ours = json.loads((results / "vqcodec.json").read_text())["results"]
    lines = [
        "| quality | bpp | PSNR-RGB (dB) | MS-SSIM | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|",
    ]
    for i, q in enumerate(ours["quality"]):
        lines.append(
            f"| {q} | {ours['bpp'][i]:.3f} | {ours['psnr-rgb'][i]:.2f} | {ours['ms-ssim-rgb'][i]:.4f} | "
            f"{ours['encoding_time'][i]:.2f} | {ours['decoding_time'][i]:.2f} |"
        )
    lines += ["", "| BD-rate of vqcodec against | in PSNR | in MS-SSIM |", "|---|---|---|"]
    for row in summary["bd_rate_vs_baselines"]:
        lines.append(
            f"| {row['baseline']} | {fmt_bd(row['bd_rate_psnr_percent'])} | {fmt_bd(row['bd_rate_ms_ssim_percent'])} |"
        )
    lines += ["", "| stage | codes | used on Kodak | entropy (bits) |", "|---|---|---|---|"]
    for row in summary["codebook_usage"]:
        lines.append(
            f"| {row['stage']} | {row['codes']} | {row['used_fraction'] * 100:.1f} % | "
            f"{row['entropy_bits']:.2f} of {row['raw_bits']:.0f} |"
        )
    large = results / "large.json"
    if large.exists():
        lines += ["", "| image | encode (s) | decode (s) | peak memory (MB) |", "|---|---|---|---|"]
        for r in json.loads(large.read_text()):
            lines.append(
                f"| {r['width']}x{r['height']} ({r['megapixels']:.0f} MP) | {r['encode_s']:.1f} | "
                f"{r['decode_s']:.1f} | {r['peak_rss_mb']:.0f} |"
            )
    env = json.loads((results / "vqcodec.json").read_text())["environment"]  # where our timings come from
    lines += [
        "",
        f"vqcodec measured on {env['cpu_count']} CPU cores ({env['processor']}), {env['threads']} torch threads, "
        f"torch {env['torch']}, Python {env['python']}.",
    ]
    return "\n".join(lines)


# How the tables' files were coded, for both cards.
SEARCH_NOTE = f"""Encoded with the code search of `vqcodec.quantizer` (a beam of {SEARCH_BEAM} over the first
{SEARCHED_STAGES} stages), as `vqcodec compress` does."""


def publish(model: Path, card: str, table: str, marker: str) -> None:
    """Write the card beside the model, the table into the README between its markers, and show it."""
    model.with_suffix(".md").write_text(card)
    update_readme(f"<!-- {marker}:start -->", f"<!-- {marker}:end -->", table)
    print(table)


def update_readme(start: str, end: str, text: str) -> None:
    """Replace what lies between the two markers in the README (if both are there)."""
    readme = Path(__file__).resolve().parent.parent / "README.md"
    body = readme.read_text()
    if start in body and end in body:
        head, rest = body.split(start, 1)
        readme.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1])


def main(model: Path, results: Path) -> None:
    card = json.loads(model.with_suffix(".json").read_text())
    report = card["prior_report"]
    flt, exact = report["float_bits_per_index"], report["integer_bits_per_index"]
    cost = (sum(exact) - sum(flt)) / sum(flt) * 100
    text = f"""# Model card: {model.stem}

Image codec model of vqcodec: VQ-VAE with a residual quantizer and an integer-exact prior.

## Architecture
- Encoder / decoder: convolutional, downsampling 8, widths {card["net"]["widths"]}, residual blocks
  {card["net"]["blocks"]}, latent dimension {card["net"]["latent_dim"]}.
- Residual VQ: {len(card["net"]["codebook_sizes"])} stages with codebooks of
  {card["net"]["codebook_sizes"]} entries (EMA updates, k-means init, dead-code restarts), trained with
  quantizer dropout (half the samples use all stages, the others a uniform number of stages).
  Quality level q = the first q stages.
- Prior: integer network ({card["prior"]["layers"]} 3x3 convolutions of width {card["prior"]["hidden"]},
  embeddings of {card["prior"]["embed_dim"]} per stage, one 1x1 output head per stage), 4 decoding passes
  per stage; int8 weights, 7-bit activations, exp lookup table.

## Training
- Data: {card["training_images"]} photos from `{os.path.relpath(card["training_data"])}` (BSDS500, Sun & Hays scenes,
  an ImageNet sample), random 128x128 crops downscaled by 0.5-1. Kodak was never used for training or tuning.
- VQ-VAE: {card["vqvae_steps"]} steps of batch 8, Adam 4e-4, loss MSE + 0.05 (1 - MS-SSIM) + 0.25 commitment.
- Prior: {card["prior_steps"]} steps of batch 32 index grids (32x32) from 256x256 crops, float then
  fake-quantized (last 30 %).
- Hardware: {card["hardware"]}; the curve is in `{model.stem}.json` (`vqvae_curve`).
- Rebuild (about 2 hours on 2 CPU cores; the first run made 5,630 VQ-VAE steps here, sharing the
  CPU with other work): `vqcodec train image --data ../shared/data/images/train
  --out models/{model.stem}.safetensors --vqvae-minutes 80 --prior-minutes 0`,
  then the same with `--vqvae-minutes 19 --lr 1.2e-4 --prior-minutes 18`.
  Running either again continues training from the cached state (or from the shipped weights).

## Cost of exactness
Bits per index on held-out training photos, per stage: float prior before quantization-aware training
{[round(x, 3) for x in flt]}, shipped integer prior {[round(x, 3) for x in exact]}: {cost:+.2f} % in total.

## Kodak (24 images, bpp from whole files)
{SEARCH_NOTE}

{tables(results)}
"""
    publish(model, text, tables(results), "results")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
