"""Shared fixtures: a tiny randomly initialised model, so tests run in seconds."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest
import torch

from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.image import ImageNetConfig
from vqcodec.nets.vqvae import AudioVQVAE, ImageVQVAE
from vqcodec.prior import PriorConfig, PriorNet
from vqcodec.registry import save_model, set_levels

TINY_NET = ImageNetConfig(widths=(8, 8, 16), latent_dim=4, blocks=(1, 1, 1), codebook_sizes=(16, 32, 32))
TINY_PRIOR = PriorConfig(codebook_sizes=TINY_NET.codebook_sizes, embed_dim=4, hidden=16, layers=2)
# The other network family (5x5 convolutions with GDN), with the same codebooks and prior.
TINY_GDN_NET = ImageNetConfig(
    arch="gdn", widths=(8, 8, 16), latent_dim=4, blocks=(0, 0, 1), codebook_sizes=TINY_NET.codebook_sizes
)
# That family with a coarse level: latents at 1/16 (as img2-16).
TINY_COARSE_NET = replace(TINY_GDN_NET, coarse_width=8)
TINY_TOLD_NET = replace(TINY_COARSE_NET, stage_embedding=True)  # a decoder told the stages
FAMILY_LEVELS = [("tinyfam16", 1), ("tinyfam16", 2), ("tinyfam", 1), ("tinyfam", 2), ("tinyfam", 3)]
FAMILY_DEFAULT = 4  # the level coded when none is asked for


def _build(path: Path, name: str, seed: int, vqvae, prior_cfg: PriorConfig, grid: tuple[int, ...]) -> Path:
    """A randomly initialised model (the VQ-VAE made by `vqvae` after seeding), its prior
    calibrated on random index grids of shape `grid` per stage."""
    torch.manual_seed(seed)
    net = vqvae()
    prior = PriorNet(prior_cfg)
    grids = torch.stack([torch.randint(0, k, grid) for k in prior_cfg.codebook_sizes], 1)
    prior.calibrate(grids)
    save_model(path, name, net, prior.to_integer(), {"prior": asdict(prior_cfg)})
    return path


def build_tiny_model(path: Path, name: str = "tiny", seed: int = 0, net: ImageNetConfig = TINY_NET) -> Path:
    return _build(path, name, seed, lambda: ImageVQVAE(net), TINY_PRIOR, (2, 8, 8))


def _tiny_told() -> ImageVQVAE:
    """An image model whose decoder is told the stages, its stage embeddings random (they start
    at zero) so that they matter."""
    vqvae = ImageVQVAE(TINY_TOLD_NET)
    for table in vqvae.decoder.modulation.parameters():
        torch.nn.init.normal_(table, 0, 0.5)
    return vqvae


# 600 index frames per second: a 750-frame segment is 1.25 s, so short clips span segments.
TINY_AUDIO_NET = AudioNetConfig(base_width=4, strides=(2, 4, 5), latent_dim=4, codebook_sizes=(16,) * 4)
TINY_AUDIO_PRIOR = PriorConfig(
    codebook_sizes=TINY_AUDIO_NET.codebook_sizes, embed_dim=4, hidden=16, layers=2, kernel=(1, 3), schedule="1d"
)


# The Vocos decoder (aud2's): it sees 29 frames either side, more than a conv decoder's 8.
TINY_VOCOS_NET = replace(TINY_AUDIO_NET, decoder="istft", decoder_width=16, stage_embedding=True)


def build_tiny_audio_model(path: Path, name: str = "tinyaudio", seed: int = 0) -> Path:
    return _build(path, name, seed, lambda: AudioVQVAE(TINY_AUDIO_NET), TINY_AUDIO_PRIOR, (2, 1, 64))


def _tiny_vocos() -> AudioVQVAE:
    """The Vocos model, told the stages, with its blocks at full scale (they start at 1/8) so
    that a frame far away changes the samples as much as a trained decoder's does, not by
    rounding errors, and its stage embeddings random (they start at zero) so that they matter."""
    vqvae = AudioVQVAE(TINY_VOCOS_NET)
    for block in vqvae.decoder.blocks:
        torch.nn.init.ones_(block.scale)
        torch.nn.init.normal_(block.modulation.gain.weight, 0, 0.5)
        torch.nn.init.normal_(block.modulation.shift.weight, 0, 0.5)
    return vqvae


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    build_tiny_model(folder / "tiny.safetensors")
    build_tiny_model(folder / "tinygdn.safetensors", name="tinygdn", net=TINY_GDN_NET)
    build_tiny_model(folder / "tinycoarse.safetensors", name="tinycoarse", net=TINY_COARSE_NET)
    _build(folder / "tinytold.safetensors", "tinytold", 0, _tiny_told, TINY_PRIOR, (2, 8, 8))
    # A family: tinyfam's lowest two levels are coded by tinyfam16, at 1/16, its other three by itself.
    build_tiny_model(folder / "tinyfam16.safetensors", name="tinyfam16", net=TINY_COARSE_NET, seed=1)
    build_tiny_model(folder / "tinyfam.safetensors", name="tinyfam", net=TINY_GDN_NET, seed=1)
    set_levels(folder / "tinyfam.safetensors", FAMILY_LEVELS, FAMILY_DEFAULT)
    build_tiny_audio_model(folder / "tinyaudio.safetensors")
    _build(folder / "tinyvocos.safetensors", "tinyvocos", 0, _tiny_vocos, TINY_AUDIO_PRIOR, (2, 1, 64))
    return folder


@pytest.fixture(autouse=True)
def _use_tiny_models(models_dir, monkeypatch):
    monkeypatch.setenv("VQCODEC_MODELS", str(models_dir))


@pytest.fixture
def photo() -> np.ndarray:
    """A smooth synthetic 'photo' with some texture, 48x72 RGB uint8."""
    y, x = np.mgrid[0:48, 0:72]
    rng = np.random.default_rng(0)
    img = np.stack([x * 3, y * 4, (x + y) * 2], -1) + rng.integers(0, 30, (48, 72, 3))
    return np.clip(img, 0, 255).astype(np.uint8)
