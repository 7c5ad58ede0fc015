"""Smoke tests of the shipped model on the sample image (skipped if it is not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vqcodec
from vqcodec.bench import psnr_rgb
from vqcodec.media import load_image

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "img1.safetensors"
SAMPLE = ROOT / "examples" / "parrots.png"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="shipped model not present")


@pytest.fixture(autouse=True)
def _shipped_models(monkeypatch):
    monkeypatch.setenv("VQCODEC_MODELS", str(MODEL.parent))


def test_rate_and_quality_rise_with_level():
    original = load_image(SAMPLE).pixels
    points = []
    for q in (1, 4, 12):
        data = vqcodec.compress(SAMPLE, quality=q, model=str(MODEL), device="cpu")
        decoded = np.asarray(vqcodec.decompress(data, device="cpu"))
        points.append((len(data) * 8 / original[..., 0].size, psnr_rgb(original, decoded)))
    (bpp1, psnr1), (bpp4, psnr4), (bpp12, psnr12) = points
    assert bpp1 < 0.2 and bpp1 < bpp4 < bpp12
    assert 20 < psnr1 < psnr4 < psnr12


WORKER = r"""
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
import vqcodec
from vqcodec import codec
if sys.argv[2] == "encode":
    sys.stdout.buffer.write(vqcodec.compress(sys.argv[3], quality=6, model=sys.argv[4], device="cpu"))
else:
    _, _, indices = codec.decode_indices(open(sys.argv[3], "rb").read(), device="cpu")
    print(int(indices.sum()), tuple(indices.shape))
"""


def test_shipped_prior_is_thread_count_independent(tmp_path):
    env_models = {"VQCODEC_MODELS": str(MODEL.parent)}
    import os

    env = {**os.environ, **env_models}
    coded = subprocess.run(
        [sys.executable, "-c", WORKER, "1", "encode", str(SAMPLE), "img1"], env=env, capture_output=True, check=True
    ).stdout
    path = tmp_path / "s.vqc"
    path.write_bytes(coded)
    out = subprocess.run(
        [sys.executable, "-c", WORKER, "2", "decode", str(path)], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert "(6, 32, 48)" in out.stdout
