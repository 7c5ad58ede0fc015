"""Sampling from the prior is reproducible and gives valid media; inspect's bits add up to the
payload the range coder wrote."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

import vqcodec
from cli.main import main
from vqcodec.tools.inspection import inspect_file
from vqcodec.tools.sampling import sample_images, sample_sounds


@pytest.mark.parametrize("model", ["tiny", "tinycoarse"])  # latents at 1/8 and at 1/16
def test_image_samples_are_reproducible_and_sized(model):
    a = sample_images(model, 2, 40, 24, None, 1.0, seed=3)
    b = sample_images(model, 2, 40, 24, None, 1.0, seed=3)
    c = sample_images(model, 2, 40, 24, None, 1.0, seed=4)
    assert all(x.shape == (24, 40, 3) and x.dtype == np.uint8 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[0], a[1])


def test_sound_samples_are_reproducible():
    a, rate = sample_sounds("tinyaudio", 2, 0.3, 2, 0.8, seed=1)
    b, _ = sample_sounds("tinyaudio", 2, 0.3, 2, 0.8, seed=1)
    assert rate == 24000 and all(len(x) == 0.3 * 24000 for x in a)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_sample_commands_write_files(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["sample", "image", "-n", "3", "-o", str(tmp_path), "--size", "32x16", "-m", "tiny"])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "sample_002.png").size == (32, 16) and (tmp_path / "sheet.png").exists()
    args = ["sample", "audio", "-n", "1", "-o", str(tmp_path), "--seconds", "0.2", "-m", "tinyaudio"]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "sample_000.wav").exists()
    assert runner.invoke(main, ["sample", "image", "--size", "0x5", "-m", "tiny"]).exit_code == 2


def _coder_slack(payload_bits: int, chunks: int) -> float:
    # constriction writes whole 32-bit words per chunk, and quantizes the probabilities slightly.
    return 32 * chunks + 0.02 * payload_bits + 16


@pytest.mark.parametrize("shape", [(48, 72), (200, 1100)])
def test_image_bits_add_up_to_the_payload(shape):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0 : shape[0], 0 : shape[1]]
    img = np.clip(np.stack([x % 256, y % 256, (x + y) % 256], -1) + rng.integers(0, 40, (*shape, 3)), 0, 255)
    data = vqcodec.compress(img.astype(np.uint8), quality=3, model="tiny")
    summary = inspect_file(data).summary()
    chunks = len(vqcodec.container.unpack(data)[1])
    assert abs(summary["information_bits"] - summary["payload_bits"]) <= _coder_slack(summary["payload_bits"], chunks)
    assert len(summary["bits_per_stage"]) == 3 and summary["file_bits"] > summary["payload_bits"]


def test_audio_bits_add_up_to_the_payload():
    t = np.arange(int(44100 * 2.5)) / 44100
    wave = np.stack([np.sin(2 * np.pi * 220 * t), np.sin(2 * np.pi * 330 * t)]).astype(np.float32) * 0.4
    data = vqcodec.compress_audio((wave, 44100), bitrate=9.6, model="tinyaudio")
    summary = inspect_file(data).summary()
    chunks = len(vqcodec.container.unpack_audio(data)[1])
    assert abs(summary["information_bits"] - summary["payload_bits"]) <= _coder_slack(summary["payload_bits"], chunks)


def test_inspect_command(tmp_path):
    runner = CliRunner()
    t = np.arange(8000) / 16000
    vqc = tmp_path / "a.vqc"
    vqc.write_bytes(vqcodec.compress_audio((np.sin(2 * np.pi * 300 * t), 16000), model="tinyaudio"))
    result = runner.invoke(main, ["inspect", str(vqc), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["kind"] == "audio"
    result = runner.invoke(main, ["inspect", str(vqc)])
    assert result.exit_code == 0, result.output
    assert Image.open(tmp_path / "a.vqc.inspect.png").size[0] > 500
    img = tmp_path / "b.vqc"
    img.write_bytes(vqcodec.compress(np.full((40, 40, 3), 128, np.uint8), quality=2, model="tiny"))
    assert runner.invoke(main, ["inspect", str(img), "-o", str(tmp_path / "r.png")]).exit_code == 0
    coarse = tmp_path / "c.vqc"  # a model at 1/16: the bits drawn per 16x16 block
    coarse.write_bytes(vqcodec.compress(np.full((40, 40, 3), 128, np.uint8), quality=2, model="tinycoarse"))
    assert runner.invoke(main, ["inspect", str(coarse)]).exit_code == 0
    assert runner.invoke(main, ["inspect", str(img), "-o", str(tmp_path / "r.png")]).exit_code == 2  # exists
