"""`vqcodec train`: a tiny end-to-end run from a recipe makes a model that compress and
decompress use; the same under torchrun with two CPU processes (gloo)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile
import torch
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from vqcodec.weights import load_tensors, save_tensors

TINY_AUDIO_RECIPE = """
[train]
prior_minutes = 0.05
batch = 2
prior_grids = 4
log_every = 1
[net]
base_width = 4
strides = [2, 4, 5]
latent_dim = 4
codebook_sizes = [16, 16]
[prior]
embed_dim = 4
hidden = 8
layers = 1
"""

TINY_IMAGE_RECIPE = """
[train]
prior_minutes = 0.05
batch = 2
prior_grids = 4
log_every = 1
[net]
widths = [8, 8, 16]
blocks = [1, 1, 1]
latent_dim = 4
codebook_sizes = [16, 16]
[prior]
embed_dim = 4
hidden = 8
layers = 1
"""


def _sounds(folder):
    folder.mkdir()
    for i in range(3):
        t = np.arange(16000) / 16000
        soundfile.write(folder / f"s{i}.flac", 0.3 * np.sin(2 * np.pi * (200 + 100 * i) * t), 16000)
    return folder


def _photos(folder):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        y, x = np.mgrid[0:260, 0:270]
        img = np.stack([x + 30 * i, y, (x * y) % 256], -1) + rng.integers(0, 20, (260, 270, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_train_audio_then_code_with_the_new_model(tmp_path, monkeypatch):
    data = _sounds(tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY_AUDIO_RECIPE)
    args = [
        "train",
        "audio",
        str(data),
        "-o",
        str(tmp_path / "models" / "mine"),
        "--config",
        str(tmp_path / "tiny.toml"),
    ]
    args += ["--no-music", "--max-steps", "3", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    model = tmp_path / "models" / "mine.safetensors"
    card = json.loads(model.with_suffix(".json").read_text())
    assert card["vqvae_steps"] == 3 and card["net"]["codebook_sizes"] == [16, 16] and card["prior"]["hidden"] == 8
    assert model.with_suffix(".curves.png").exists()
    monkeypatch.setenv("VQCODEC_MODELS", str(model.parent))
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(data / "s0.flac"), "-m", str(model), "-b", "1"]).exit_code == 0
    result = runner.invoke(main, ["decompress", str(data / "s0.vqc")])
    assert result.exit_code == 0, result.output
    assert soundfile.info(str(data / "s0.vqc.wav")).frames == 16000


def test_train_image_then_code_with_the_new_model(tmp_path, monkeypatch):
    data = _photos(tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY_IMAGE_RECIPE)
    args = [
        "train",
        "image",
        str(data),
        "-o",
        str(tmp_path / "models" / "mine"),
        "--config",
        str(tmp_path / "tiny.toml"),
    ]
    args += ["--max-steps", "2", "--cache", str(tmp_path / "cache"), "--device", "cpu"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    monkeypatch.setenv("VQCODEC_MODELS", str(tmp_path / "models"))
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(data / "p0.png"), "-m", "mine", "-q", "2"]).exit_code == 0
    assert runner.invoke(main, ["decompress", str(data / "p0.vqc")]).exit_code == 0
    assert Image.open(data / "p0.vqc.png").size == (270, 260)
    # --fresh starts over from step 0, keeping the old state aside
    again = args[:-6] + ["--fresh", "--max-steps", "1", "--prior-minutes", "0", "--cache", str(tmp_path / "cache")]
    result = runner.invoke(main, again)
    assert result.exit_code == 0, result.output
    assert "VQ-VAE at step 1 " in result.output and (tmp_path / "cache.old-1" / "vqvae_state.safetensors").exists()


def test_a_new_prior_for_checkpoint_weights_starts_from_the_shipped_prior(tmp_path):
    """`--vqvae-from`: where the cache is gone, the VQ-VAE comes from a training checkpoint and
    the prior still warm-starts from the output's (`make img2-family` on a new machine)."""
    data = _photos(tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY_IMAGE_RECIPE)
    model = tmp_path / "mine.safetensors"
    args = ["train", "image", str(data), "--config", str(tmp_path / "tiny.toml"), "--device", "cpu"]
    first = [*args, "-o", str(model), "--max-steps", "2", "--cache", str(tmp_path / "cache")]
    assert CliRunner().invoke(main, first).exit_code == 0
    tensors, meta = load_tensors(model)
    moved = {k: v * 1.5 if k.startswith("vqvae.decoder") else v for k, v in tensors.items()}
    checkpoint = tmp_path / "checkpoint.safetensors"
    save_tensors(checkpoint, {k: v for k, v in moved.items() if not k.startswith("prior.")}, meta)
    again = [*args, "-o", str(model), "--vqvae-from", str(checkpoint), "--vqvae-minutes", "0"]
    result = CliRunner().invoke(main, [*again, "--cache", str(tmp_path / "new-cache")])
    assert result.exit_code == 0, result.output
    assert "shipped integer prior" in result.output or "the shipped prior does not fit" in result.output
    exported, _ = load_tensors(model)
    decoder = [k for k in exported if k.startswith("vqvae.decoder")]
    assert decoder and all(torch.equal(exported[k], moved[k].to(exported[k].dtype)) for k in decoder)


def test_bad_recipe_is_a_usage_error(tmp_path):
    (tmp_path / "bad.toml").write_text("[net]\nwidht = 3\n")
    data = _sounds(tmp_path / "data")
    result = CliRunner().invoke(main, ["train", "audio", str(data), "-o", "x", "--config", str(tmp_path / "bad.toml")])
    assert result.exit_code == 2 and "net.widht" in result.output


@pytest.mark.skipif(sys.platform != "linux", reason="torchrun test on Linux")
def test_two_process_gloo_training(tmp_path):
    data = _sounds(tmp_path / "data")
    (tmp_path / "tiny.toml").write_text(TINY_AUDIO_RECIPE)
    out = tmp_path / "models" / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "cli.main", "train", "audio", str(data), "-o", str(out), "--config", str(tmp_path / "tiny.toml")]
    cmd += ["--no-music", "--max-steps", "4", "--cache", str(tmp_path / "cache"), "--device", "cpu", "--threads", "1"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["vqvae_steps"] == 4 and card["prior_steps"] > 0
    log = [json.loads(line) for line in (tmp_path / "cache" / "vqvae_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]  # rank 0 alone logs
