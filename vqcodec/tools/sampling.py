"""`vqcodec sample`: new images and sounds drawn from the prior (ancestral sampling in the
codec's decoding schedule) and decoded by the VQ-VAE: what the prior has learned about the
index grids, made visible."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from vqcodec.codec.image import decode_pixels, pick_device
from vqcodec.entropy import sample_grid
from vqcodec.errors import UsageError
from vqcodec.registry import load_audio_model, load_image_model


def _check(stages: int | None, temperature: float, levels: int) -> int:
    stages = levels if stages is None else stages
    if not 1 <= stages <= levels:
        raise UsageError(f"quality must be 1..{levels}, not {stages}")
    if not temperature > 0:
        raise UsageError(f"temperature must be positive, not {temperature}")
    return stages


def sample_images(
    model: str, count: int, width: int, height: int, quality: int | None, temperature: float, seed: int, device="auto"
) -> list[np.ndarray]:
    """`count` images [height, width, 3] uint8 from the prior (reproducible with `seed`)."""
    codec_model = load_image_model(model, pick_device(device))
    stages = _check(quality, temperature, codec_model.num_stages)
    rng = np.random.default_rng(seed)
    factor = codec_model.vqvae.cfg.factor
    h, w = -(-height // factor), -(-width // factor)
    return [
        decode_pixels(codec_model, sample_grid(codec_model.prior, stages, h, w, temperature, rng), height, width)
        for _ in range(count)
    ]


@torch.inference_mode()
def sample_sounds(
    model: str, count: int, seconds: float, stages: int | None, temperature: float, seed: int, device="auto"
) -> tuple[list[np.ndarray], int]:
    """`count` mono sounds (float32 [n]) at the model's rate, and that rate."""
    codec_model = load_audio_model(model, pick_device(device))
    stages = _check(stages, temperature, codec_model.num_stages)
    cfg = codec_model.vqvae.cfg
    frames = max(1, round(seconds * cfg.frame_rate))
    rng = np.random.default_rng(seed)
    sounds = []
    for _ in range(count):
        grid = sample_grid(codec_model.prior, stages, 1, frames, temperature, rng)
        sounds.append(codec_model.vqvae.reconstruct(grid[None].to(codec_model.device))[0, 0].clamp(-1, 1).cpu().numpy())
    return sounds, cfg.sample_rate


def contact_sheet(images: list[np.ndarray], columns: int = 4, gap: int = 4) -> Image.Image:
    """The images in a grid on a white background."""
    h, w = images[0].shape[:2]
    columns = min(columns, len(images))
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * w + (columns + 1) * gap, rows * h + (rows + 1) * gap), "white")
    for i, pixels in enumerate(images):
        r, c = divmod(i, columns)
        sheet.paste(Image.fromarray(pixels), (gap + c * (w + gap), gap + r * (h + gap)))
    return sheet
