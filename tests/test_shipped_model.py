"""Smoke tests of the shipped model on the sample image (skipped if it is not installed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import vqcodec
from vqcodec.bench.image import psnr_rgb
from vqcodec.media.image import load_image

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
from vqcodec.codec import image as image_codec
if sys.argv[2] == "encode":
    sys.stdout.buffer.write(vqcodec.compress(sys.argv[3], quality=6, model=sys.argv[4], device="cpu"))
else:
    _, _, indices = image_codec.decode_indices(open(sys.argv[3], "rb").read(), device="cpu")
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


def test_an_adobe_rgb_image_decodes_to_its_srgb_colours(tmp_path):
    """Patches of strong colours stored as an Adobe RGB file decode as the sRGB original does
    (each patch's mean within a few levels), not as the file's raw values."""
    from PIL import Image, ImageCms

    colours = np.array([[230, 40, 40], [40, 200, 60], [40, 60, 230], [240, 200, 30], [30, 200, 220], [200, 60, 200]])
    y, x = np.mgrid[0:256, 0:384]
    original = colours[(x // 64 + 6 * (y // 128)) % 6].astype(np.uint8)
    adobe = ImageCms.ImageCmsProfile(str(ROOT / "tests" / "data" / "compatibleWithAdobeRGB1998.icc"))
    raw = ImageCms.profileToProfile(
        Image.fromarray(original), ImageCms.createProfile("sRGB"), adobe, ImageCms.Intent.RELATIVE_COLORIMETRIC, "RGB"
    )
    path = tmp_path / "patches_adobe.png"
    raw.save(path, icc_profile=adobe.tobytes())
    with pytest.warns(UserWarning, match="converted to sRGB"):
        data = vqcodec.compress(path, quality=12, model=str(MODEL), device="cpu")
    assert vqcodec.read_header(data).flags & vqcodec.container.FLAG_CONVERTED_TO_SRGB
    decoded = np.asarray(vqcodec.decompress(data, device="cpu"))

    def patch_means(pixels):  # the middle of each 64x128 patch
        return np.array(
            [
                pixels[y0 + 32 : y0 + 96, x0 + 16 : x0 + 48].reshape(-1, 3).mean(0)
                for y0 in (0, 128)
                for x0 in range(0, 384, 64)
            ]
        )

    # The reference is the sRGB original through the same codec (img1 alone is off by up to 15
    # levels on such colours); the file's raw values are 20 and more levels away.
    direct = vqcodec.decompress(vqcodec.compress(original, quality=12, model=str(MODEL), device="cpu"), device="cpu")
    expected = patch_means(np.asarray(direct).astype(float))
    assert np.abs(patch_means(decoded.astype(float)) - expected).max() < 3
    assert np.abs(patch_means(np.asarray(raw).astype(float)) - patch_means(original.astype(float))).max() > 20


def test_a_wheel_carries_the_shipped_models(tmp_path):
    """`pip install .` (not editable) finds the models: the wheel holds them as vqcodec/zoo,
    where `catalog.models_dir` looks when there is no source tree; training checkpoints stay out."""
    import zipfile

    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT)]
    subprocess.run([*build, "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path, timeout=300)
    names = zipfile.ZipFile(next(tmp_path.glob("vqcodec-*.whl"))).namelist()
    assert "vqcodec/zoo/img1.safetensors" in names and "vqcodec/zoo/aud1.safetensors" in names
    assert not [n for n in names if "training" in n and n.endswith(".safetensors")]


def test_a_psnr_target_gives_the_fewest_stages_that_reach_it():
    original = load_image(SAMPLE).pixels
    levels = {
        q: psnr_rgb(original, np.asarray(vqcodec.decompress(vqcodec.compress(SAMPLE, quality=q)))) for q in range(1, 13)
    }
    target = (levels[3] + levels[4]) / 2  # between two levels
    data, quality, reached = vqcodec.codec.image.compress_to_target(SAMPLE, min_psnr=target, model="img1", device="cpu")
    decoded = psnr_rgb(original, np.asarray(vqcodec.decompress(data, device="cpu")))
    assert decoded >= target and abs(decoded - reached) < 0.01
    assert all(levels[q] < target for q in range(1, quality))  # no fewer stages reach it
    with pytest.raises(vqcodec.UsageError, match=f"the best is {levels[12]:.2f} dB"):
        vqcodec.codec.image.compress_to_target(SAMPLE, min_psnr=levels[12] + 1, model="img1", device="cpu")
