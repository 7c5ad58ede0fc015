"""Make .gpu/, what a lent GPU machine needs beside the working tree to train an image model.

    python scripts/gpu_pack.py [--data ../shared/data/images/train]

The device machine gets the working tree and the folders a call carries, 64 MiB in all, and
nothing else: not ../shared, not the package index. So .gpu/ holds
- photos/: the training photos under their own relative paths (the trainer holds out the
  same every-20th photo), downscaled by the largest of 1, 0.9, ... 0.5 that fits the space
  the working tree leaves, as JPEG quality 90 (training downscales crops again, by 0.5 to 1);
- wheels/: the pure-Python packages training needs that the machine lacks (pytorch-msssim).
Then: `run` with carry [".gpu"] and `bash scripts/gpu_train.sh RECIPE MINUTES`.
"""

from __future__ import annotations

import argparse
import io
import shutil
import subprocess
import sys
from pathlib import Path

from PIL import Image

from vqcodec.media.image import list_images

LIMIT = 64 * 2**20  # what one call may carry, working tree included
MARGIN = 4 * 2**20  # room for the checkpoints and logs written before the call
WHEELS = ["pytorch-msssim==1.0.0"]


def working_tree_bytes(root: Path) -> int:
    command = ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    listed = subprocess.run(command, cwd=root, capture_output=True, check=True)
    return sum((root / name).stat().st_size for name in listed.stdout.decode().split("\0") if (root / name).is_file())


def encoded(path: Path, scale: float) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=90)
        return buf.getvalue()


def pick_scale(paths: list[Path], budget: int) -> float:
    """The largest scale whose estimate (from every 10th photo) fits `budget` bytes."""
    sample = paths[::10]
    for scale in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5):
        estimate = sum(len(encoded(p, scale)) for p in sample) * len(paths) / len(sample)
        if estimate < 0.95 * budget:
            return scale
    raise SystemExit(f"the photos do not fit in {budget / 2**20:.0f} MiB even at half size")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/images/train"))
    args = parser.parse_args()
    root = Path(__file__).resolve().parent.parent
    pack = root / ".gpu"
    shutil.rmtree(pack, ignore_errors=True)
    paths = list_images(args.data)
    budget = LIMIT - MARGIN - working_tree_bytes(root)
    scale = pick_scale(paths, budget)
    for path in paths:
        target = pack / "photos" / path.relative_to(args.data).with_suffix(".jpg")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encoded(path, scale))
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q"]
    pip += ["-d", str(pack / "wheels")]
    subprocess.run(pip + WHEELS, check=True)
    size = sum(p.stat().st_size for p in pack.rglob("*") if p.is_file())
    print(f"{pack}: {len(paths)} photos at scale {scale}, {size / 2**20:.1f} MiB (budget {budget / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
