"""Smoke tests of the shipped image models on the sample image (skipped if they are not installed):
the default family, img2 (its lowest levels coded by img2-16), and img1, whose files still decode."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vqcodec
from vqcodec import catalog
from vqcodec.bench.image import psnr_rgb
from vqcodec.codec import image as image_codec
from vqcodec.media.image import load_image

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "img2.safetensors"
SAMPLE = ROOT / "examples" / "parrots.png"  # 384x256
pytestmark = pytest.mark.skipif(
    not all((ROOT / "models" / f"{name}.safetensors").exists() for name in ("img1", "img2", "img2-16")),
    reason="shipped models not present",
)


@pytest.fixture(autouse=True)
def _shipped_models(monkeypatch):
    monkeypatch.setenv("VQCODEC_MODELS", str(MODEL.parent))


def family_levels() -> list[tuple[str, int]]:
    """img2's levels, (model, stages) each: img2-16's lowest stages, then img2's."""
    return catalog.quality_levels(catalog.model_meta(MODEL))


def test_rate_and_quality_rise_with_level():
    """The family's lowest and highest levels of each model, rate and PSNR rising."""
    levels = family_levels()
    switch = next(q for q, (name, _) in enumerate(levels, 1) if name == "img2")  # img2's first level
    original = load_image(SAMPLE).pixels
    points = []
    for q in (1, switch - 1, switch, len(levels)):
        data = vqcodec.compress(SAMPLE, quality=q, device="cpu")
        assert vqcodec.read_header(data).model_name == levels[q - 1][0]
        decoded = np.asarray(vqcodec.decompress(data, device="cpu"))
        points.append((len(data) * 8 / original[..., 0].size, psnr_rgb(original, decoded)))
    bpp, psnr = np.array(points).T
    assert levels[0] == ("img2-16", 1) and bpp[0] < 0.06 and (np.diff(bpp) > 0).all()
    assert 20 < psnr[0] and (np.diff(psnr) > 0).all()


def test_img1_files_still_decode():
    data = vqcodec.compress(SAMPLE, quality=4, model="img1", device="cpu")
    assert vqcodec.read_header(data).model_name == "img1"
    assert psnr_rgb(load_image(SAMPLE).pixels, np.asarray(vqcodec.decompress(data, device="cpu"))) > 25


WORKER = r"""
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
import vqcodec
from vqcodec.codec import image as image_codec
if sys.argv[2] == "encode":
    sys.stdout.buffer.write(vqcodec.compress(sys.argv[3], quality=int(sys.argv[4]), device="cpu"))
else:
    _, _, indices = image_codec.decode_indices(open(sys.argv[3], "rb").read(), device="cpu")
    print(int(indices.sum()), tuple(indices.shape))
"""


@pytest.mark.parametrize("model", ["img2-16", "img2"])
def test_shipped_prior_is_thread_count_independent(tmp_path, model):
    """Coded with 1 thread, decoded with 2: a middle level of each model of the family."""
    levels = family_levels()
    quality = [q for q, (name, _) in enumerate(levels, 1) if name == model][3]
    stages, factor = levels[quality - 1][1], 16 if model == "img2-16" else 8
    env = {**os.environ, "VQCODEC_MODELS": str(MODEL.parent)}
    encode = [sys.executable, "-c", WORKER, "1", "encode", str(SAMPLE), str(quality)]
    path = tmp_path / "s.vqc"
    path.write_bytes(subprocess.run(encode, env=env, capture_output=True, check=True).stdout)
    decode = [sys.executable, "-c", WORKER, "2", "decode", str(path)]
    out = subprocess.run(decode, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert str((stages, 256 // factor, 384 // factor)) in out.stdout


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
        data = vqcodec.compress(path, quality=len(family_levels()), device="cpu")
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

    # The reference is the sRGB original through the same codec (the codec alone may be off by
    # several levels on such colours, and the 8-bit Adobe RGB file rounds them once more: about
    # 3 levels in all); the file's raw values are 20 and more levels away.
    best = len(family_levels())
    direct = vqcodec.decompress(vqcodec.compress(original, quality=best, device="cpu"), device="cpu")
    expected = patch_means(np.asarray(direct).astype(float))
    assert np.abs(patch_means(decoded.astype(float)) - expected).max() < 5
    assert np.abs(patch_means(np.asarray(raw).astype(float)) - patch_means(original.astype(float))).max() > 20


def test_a_wheel_carries_the_shipped_models(tmp_path):
    """`pip install .` (not editable) finds the models: the wheel holds them as vqcodec/zoo,
    where `catalog.models_dir` looks when there is no source tree; training checkpoints stay out."""
    import zipfile

    build = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT)]
    subprocess.run([*build, "-w", str(tmp_path)], check=True, capture_output=True, cwd=tmp_path, timeout=300)
    names = zipfile.ZipFile(next(tmp_path.glob("vqcodec-*.whl"))).namelist()
    assert {f"vqcodec/zoo/{name}.safetensors" for name in ("img1", "img2", "img2-16", "aud1", "aud2")} <= set(names)
    assert not [n for n in names if "training" in n and n.endswith(".safetensors")]


def test_a_psnr_target_gives_the_lowest_level_that_reaches_it():
    original = load_image(SAMPLE).pixels
    top = len(family_levels())
    levels = {
        q: psnr_rgb(original, np.asarray(vqcodec.decompress(vqcodec.compress(SAMPLE, quality=q))))
        for q in range(1, top + 1)
    }
    target = (levels[top - 6] + levels[top - 5]) / 2  # between two of img2's levels
    data, quality, reached = vqcodec.codec.image.compress_to_target(SAMPLE, min_psnr=target, device="cpu")
    decoded = psnr_rgb(original, np.asarray(vqcodec.decompress(data, device="cpu")))
    assert decoded >= target and abs(decoded - reached) < 0.01
    assert all(levels[q] < target for q in range(1, quality))  # no lower level reaches it
    with pytest.raises(vqcodec.UsageError, match=f"the best is {levels[top]:.2f} dB"):
        vqcodec.codec.image.compress_to_target(SAMPLE, min_psnr=levels[top] + 1, device="cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("encoded_on", ["cuda", "cpu"])
def test_a_file_coded_on_either_device_decodes_to_the_same_indices_on_both(encoded_on):
    """Principle 1 with the shipped family: the prior's integers are the same on a GPU."""
    for quality in (2, 12):  # a level of img2-16 and one of img2
        data = vqcodec.compress(SAMPLE, quality=quality, device=encoded_on)
        on_cpu = image_codec.decode_indices(data, device="cpu")[2]
        on_gpu = image_codec.decode_indices(data, device="cuda")[2]
        assert torch.equal(torch.as_tensor(on_cpu).cpu(), torch.as_tensor(on_gpu).cpu())
