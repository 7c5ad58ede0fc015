"""Compress a folder of photos on a dask.distributed cluster, for datasets that outgrow one machine.

    python examples/dask_compress.py PHOTOS OUTDIR [--scheduler tcp://HOST:8786] [-q 4] [-m img1]

Without --scheduler, a local cluster of two worker processes (one thread each) is started.
Each task is `vqcodec.compress(path)` on a worker, which loads the model once and keeps it for
the files that follow; the .vqc bytes come back and are written here, under OUTDIR at the
photo's relative place, atomically. The workers read the photos, so on a real cluster they
need the same file system (a network share or a mounted bucket) and vqcodec installed. A file
that fails is reported and skipped; the exit status is 1 if any did.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from contextlib import nullcontext
from pathlib import Path

import vqcodec
from vqcodec import catalog
from vqcodec.media.image import list_images


def compress_folder(client, photos: Path, out_dir: Path, quality: int | None, model: str) -> dict[Path, str]:
    """Code every image under `photos` into `out_dir` on the cluster behind `client`; returns
    {photo: error message} for the photos that failed."""
    from distributed import as_completed

    paths = list_images(photos)
    futures = {client.submit(vqcodec.compress, str(p), quality=quality, model=model, pure=False): p for p in paths}
    failed = {}
    for future in as_completed(futures):
        photo = futures[future]
        if future.status == "error":
            failed[photo] = str(future.exception())
            continue
        target = (out_dir / photo.relative_to(photos)).with_suffix(".vqc")
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(future.result())
        os.replace(tmp, target)
    return failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--scheduler", help="address of a running scheduler (default: a local cluster)")
    parser.add_argument("-q", "--quality", type=int, help="level [the model's default]")
    parser.add_argument("-m", "--model", default=catalog.DEFAULT_IMAGE_MODEL)
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1) if not args.scheduler else nullcontext() as cluster:
        with Client(args.scheduler or cluster) as client:
            failed = compress_folder(client, args.photos, args.out_dir, args.quality, args.model)
    for photo, error in failed.items():
        print(f"{photo}: {error}", file=sys.stderr)
    print(f"{len(list_images(args.photos)) - len(failed)} photos compressed, {len(failed)} failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
