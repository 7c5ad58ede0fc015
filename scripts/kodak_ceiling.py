"""Where an image VQ-VAE stands on Kodak before it has a prior: PSNR and MS-SSIM of the
unquantized autoencoder and of the first 1, 2, 4, 8 and 12 stages (greedy codes; those the
model has), with the bits per pixel those stages cost before the prior (log2 K per index), mean
over the images.

    python scripts/kodak_ceiling.py models/img1.safetensors models/training/img2.safetensors

Any file with `vqvae.*` weights and its `net` in the metadata will do: a shipped model or a
training checkpoint. Evaluation only: nothing here is tuned on Kodak.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from vqcodec.media.image import list_images
from vqcodec.train.image import evaluate_photos, held_out_photos
from vqcodec.train.loop import load_trained_vqvae

KODAK = Path("../shared/data/images/kodak")


def main(paths: list[Path]) -> None:
    photos = held_out_photos(list_images(KODAK), count=24, factor=16)  # Kodak's sides are multiples of 16
    print("| model | step | unquantized | q1 | q2 | q4 | q8 | q12 | MS-SSIM q4 | MS-SSIM q8 | MS-SSIM q12 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for path in paths:
        vqvae, step = load_trained_vqvae(Path("/nonexistent"), "image", path)
        with torch.inference_mode():
            r = evaluate_photos(vqvae, photos)
        bpp = r["bpp_before_prior"]
        cells = [f"{r['psnr_unquantized']:.2f}"]
        cells += [f"{r[f'psnr_{q}']:.2f} ({bpp[q]:.3f})" if q in bpp else "-" for q in ("q1", "q2", "q4", "q8", "q12")]
        cells += [f"{r[f'msssim_{q}']:.4f}" if q in bpp else "-" for q in ("q4", "q8", "q12")]
        print(f"| {path.stem} | {step} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main([Path(p) for p in sys.argv[1:]])
