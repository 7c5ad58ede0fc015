"""Choose the quality levels of an image family on held-out training photos, and write them into
its first model (`registry.set_levels`), which `-q` then follows.

    python scripts/family_levels.py models/img2.safetensors models/img2-16.safetensors

The first model is the family's finest; the second codes its lowest rates on a coarser grid.
Every stage count of each codes the held-out training photos (every 20th training photo, as
the trainer holds them out; PHOTOS of them, spread over the list) into whole files: mean bits
per pixel and PSNR. The coarse model takes the lowest levels while its point lies above the fine
model's curve (interpolated in bpp; below the fine model's lowest rate it always does); the fine
model then takes its stages above the coarse model's last level in both rate and PSNR. The
default level is the one nearest DEFAULT_BPP. Prints the table of points and the levels, for the
card. Never run on Kodak: that is for evaluation.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from vqcodec import catalog
from vqcodec.bench.image import psnr_rgb
from vqcodec.codec import image as image_codec
from vqcodec.media.image import list_images, load_image
from vqcodec.registry import set_levels
from vqcodec.train.trainer import held_out_split

TRAINING_PHOTOS = Path("../shared/data/images/train")
PHOTOS = 24
DEFAULT_BPP = 0.4  # img1's default rate (its level 4: 0.41 bpp on Kodak): a plain compress keeps its file size


def measure(model: Path, photos: list[np.ndarray]) -> list[tuple[float, float]]:
    """(mean bpp, mean PSNR) of the whole files of each stage count 1..N of `model`."""
    points = []
    for stages in range(1, catalog.num_stages(catalog.model_meta(model)) + 1):
        bpp, psnr = [], []
        for pixels in photos:
            data = image_codec.compress(pixels, quality=stages, model=str(model))
            decoded = np.asarray(image_codec.decompress(data).convert("RGB"))
            bpp.append(len(data) * 8 / (pixels.shape[0] * pixels.shape[1]))
            psnr.append(psnr_rgb(pixels, decoded))
        points.append((float(np.mean(bpp)), float(np.mean(psnr))))
        print(f"{model.stem} {stages} stages: {points[-1][0]:.4f} bpp, {points[-1][1]:.2f} dB", file=sys.stderr)
    return points


def choose_levels(fine: list[tuple[float, float]], coarse: list[tuple[float, float]]) -> tuple[int, int]:
    """(coarse stages kept, the fine model's first stage count kept)."""
    fine_bpp, fine_psnr = np.array(fine).T
    kept = 0
    for bpp, psnr in coarse:
        if bpp > fine_bpp[0] and psnr <= np.interp(bpp, fine_bpp, fine_psnr):
            break
        kept += 1
    last = coarse[kept - 1] if kept else (0.0, -np.inf)
    first = next(s for s, (bpp, psnr) in enumerate(fine, 1) if bpp > last[0] and psnr > last[1])
    return kept, first


def main(fine_path: Path, coarse_path: Path) -> None:
    if fine_path.parent != coarse_path.parent:
        sys.exit("the family's models must be in one folder: a family finds its models beside its first")
    os.environ["VQCODEC_MODELS"] = str(fine_path.parent)  # decoding finds a file's model by name
    _, held_out = held_out_split({"photos": list_images(TRAINING_PHOTOS)})
    picks = held_out["photos"][:: max(1, len(held_out["photos"]) // PHOTOS)][:PHOTOS]
    photos = [load_image(p).pixels for p in picks]
    set_levels(fine_path, None)  # measure the fine model's own stages
    fine, coarse = measure(fine_path, photos), measure(coarse_path, photos)
    kept, first = choose_levels(fine, coarse)
    fine_name, coarse_name = (catalog.model_meta(path)["name"] for path in (fine_path, coarse_path))
    levels = [(coarse_name, s) for s in range(1, kept + 1)] + [(fine_name, s) for s in range(first, len(fine) + 1)]
    bpp_of = {(name, s): p[0] for name, ps in ((coarse_name, coarse), (fine_name, fine)) for s, p in enumerate(ps, 1)}
    default_level = 1 + int(np.argmin([abs(bpp_of[level] - DEFAULT_BPP) for level in levels]))
    set_levels(fine_path, levels, default_level)
    print(f"Held-out training photos: {len(photos)}, whole files; default level {default_level}.\n")
    print("| model | stages | bpp | PSNR (dB) | level |\n|---|---|---|---|---|")
    for name, points in ((coarse_name, coarse), (fine_name, fine)):
        for s, (bpp, psnr) in enumerate(points, 1):
            level = levels.index((name, s)) + 1 if (name, s) in levels else "-"
            print(f"| {name} | {s} | {bpp:.4f} | {psnr:.2f} | {level} |")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
