"""Encoder and decoder networks of the image VQ-VAE (downsampling factor 8).

Plain convolutional stacks with residual blocks and no normalisation layers, so that the
networks are fully convolutional: a tile of an image gives the same latents as the same
region of the whole image, away from the tile's border (see ``codec.tiled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


@dataclass(frozen=True)
class ImageNetConfig:
    """Widths of the three resolution levels (1/2, 1/4, 1/8) and the latent size."""

    widths: tuple[int, int, int] = (64, 128, 192)
    latent_dim: int = 32
    blocks: tuple[int, int, int] = (1, 1, 2)
    codebook_sizes: tuple[int, ...] = field(default=(128,) + (256,) * 11)

    @property
    def factor(self) -> int:
        return 8


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=False)


class ResBlock(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(
            _act(), nn.Conv2d(width, width, 3, padding=1), _act(), nn.Conv2d(width, width, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """RGB in [-0.5, 0.5], shape [B, 3, H, W] with H, W multiples of 8 -> [B, D, H/8, W/8]."""

    def __init__(self, cfg: ImageNetConfig):
        super().__init__()
        w1, w2, w3 = cfg.widths
        b1, b2, b3 = cfg.blocks
        self.net = nn.Sequential(
            nn.PixelUnshuffle(2),
            nn.Conv2d(12, w1, 3, padding=1),
            *[ResBlock(w1) for _ in range(b1 - 1)],
            _act(),
            nn.Conv2d(w1, w2, 3, stride=2, padding=1),
            *[ResBlock(w2) for _ in range(b2)],
            _act(),
            nn.Conv2d(w2, w3, 3, stride=2, padding=1),
            *[ResBlock(w3) for _ in range(b3)],
            _act(),
            nn.Conv2d(w3, cfg.latent_dim, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Decoder(nn.Module):
    """Latents [B, D, h, w] -> RGB [B, 3, 8h, 8w] (not clamped)."""

    def __init__(self, cfg: ImageNetConfig):
        super().__init__()
        w1, w2, w3 = cfg.widths
        b1, b2, b3 = cfg.blocks
        self.net = nn.Sequential(
            nn.Conv2d(cfg.latent_dim, w3, 3, padding=1),
            *[ResBlock(w3) for _ in range(b3)],
            _act(),
            nn.Conv2d(w3, w2 * 4, 3, padding=1),
            nn.PixelShuffle(2),
            *[ResBlock(w2) for _ in range(b2)],
            _act(),
            nn.Conv2d(w2, w1 * 4, 3, padding=1),
            nn.PixelShuffle(2),
            *[ResBlock(w1) for _ in range(b1)],
            _act(),
            nn.Conv2d(w1, 12, 3, padding=1),
            nn.PixelShuffle(2),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)
