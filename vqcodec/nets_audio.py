"""Encoder and decoder networks of the audio VQ-VAE (1-D, 24 kHz, hop 320 = 75 frames/s).

Latents are returned as [B, D, 1, T] so that the image quantizer and prior (which work on 2-D
grids) apply to audio unchanged, with grids of height 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class AudioNetConfig:
    sample_rate: int = 24000
    base_width: int = 16  # channels at full rate; doubled at every downsampling
    strides: tuple[int, ...] = (2, 4, 5, 8)
    latent_dim: int = 64
    codebook_sizes: tuple[int, ...] = (1024,) * 16

    @property
    def hop(self) -> int:
        return math.prod(self.strides)

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop


class ResUnit1d(nn.Module):
    def __init__(self, width: int, dilation: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ELU(),
            nn.Conv1d(width, width, 7, dilation=dilation, padding=3 * dilation),
            nn.ELU(),
            nn.Conv1d(width, width, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class AudioEncoder(nn.Module):
    """Waveform [B, 1, N] (N a multiple of the hop) -> latents [B, D, 1, N / hop]."""

    def __init__(self, cfg: AudioNetConfig):
        super().__init__()
        width = cfg.base_width
        layers: list[nn.Module] = [nn.Conv1d(1, width, 7, padding=3)]
        for stride in cfg.strides:
            layers += [ResUnit1d(width, 1), ResUnit1d(width, 3), nn.ELU()]
            layers.append(nn.Conv1d(width, width * 2, 2 * stride, stride=stride, padding=math.ceil(stride / 2)))
            width *= 2
        layers += [nn.ELU(), nn.Conv1d(width, cfg.latent_dim, 3, padding=1)]
        self.net = nn.Sequential(*layers)
        self.hop = cfg.hop

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        frames = wave.shape[-1] // self.hop
        return self.net(wave)[..., :frames].unsqueeze(2)


class AudioDecoder(nn.Module):
    """Latents [B, D, 1, T] -> waveform [B, 1, T * hop]."""

    def __init__(self, cfg: AudioNetConfig):
        super().__init__()
        width = cfg.base_width * 2 ** len(cfg.strides)
        layers: list[nn.Module] = [nn.Conv1d(cfg.latent_dim, width, 7, padding=3)]
        for stride in reversed(cfg.strides):
            layers.append(nn.ELU())
            layers.append(
                nn.ConvTranspose1d(
                    width,
                    width // 2,
                    2 * stride,
                    stride=stride,
                    padding=stride // 2 + stride % 2,
                    output_padding=stride % 2,
                )
            )
            width //= 2
            layers += [ResUnit1d(width, 1), ResUnit1d(width, 3)]
        layers += [nn.ELU(), nn.Conv1d(width, 1, 7, padding=3)]
        self.net = nn.Sequential(*layers)
        self.hop = cfg.hop

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        frames = latents.shape[-1]
        return self.net(latents.squeeze(2))[..., : frames * self.hop]
