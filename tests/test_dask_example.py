"""examples/dask_compress.py on a local dask.distributed cluster of two worker processes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from PIL import Image

import vqcodec

distributed = pytest.importorskip("distributed")
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "dask_compress.py"


def _example():
    spec = importlib.util.spec_from_file_location("dask_compress", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_folder_is_compressed_by_two_workers(tmp_path, photo):
    photos = tmp_path / "photos"
    (photos / "sub").mkdir(parents=True)
    for i in range(3):
        Image.fromarray(photo[:, i:].copy()).save(photos / ("sub" if i else ".") / f"p{i}.png")
    (photos / "broken.png").write_bytes(b"not a png")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            failed = _example().compress_folder(client, photos, tmp_path / "out", 2, "tiny")
            assert len(client.scheduler_info()["workers"]) == 2
    assert list(failed) == [photos / "broken.png"] and "not a readable image" in failed[photos / "broken.png"]
    for i, where in ((0, "."), (1, "sub"), (2, "sub")):
        decoded = vqcodec.decompress((tmp_path / "out" / where / f"p{i}.vqc").read_bytes())
        assert decoded.size == (72 - i, 48)
