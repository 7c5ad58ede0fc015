"""Encoder and decoder networks of the image VQ-VAE (downsampling factor 8, or 16 with a coarse level).

Two families, chosen by `ImageNetConfig.arch`:
- "res" (img1): 3x3 convolutions with residual blocks and leaky ReLUs;
- "gdn": the transforms of the learned image codecs (Balle et al., CompressAI): 5x5 stride-2
  convolutions with generalized divisive normalisation (GDN) between them, and residual
  blocks at the widest level.
A coarse level (`coarse_width` > 0) halves the latent grid once more, for the lowest rates: a
stride-2 level after the encoder and its mirror before the decoder, so that a model of the
factor-8 architecture can start the coarse one with all its layers (`train.loop.start_layers`).
Neither has batch statistics, so the networks are fully convolutional: a tile of an image
gives the same latents as the same region of the whole image, away from the tile's border
(see ``codec.tiled``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vqcodec.nets.stages import StageModulation


@dataclass(frozen=True)
class ImageNetConfig:
    """Widths of the three resolution levels (1/2, 1/4, 1/8), the residual blocks at each, the
    latent size, and the width of the coarse level at 1/16 (0: none). In the "gdn" arch the
    blocks at 1/2 and 1/4 follow each GDN and start as the identity (a trained model grows)."""

    arch: str = "res"
    widths: tuple[int, int, int] = (64, 128, 192)
    latent_dim: int = 32
    blocks: tuple[int, int, int] = (1, 1, 2)
    # The decoder's blocks where they differ from the encoder's: a decoder grown on frozen codes
    # (in the "gdn" arch only the blocks at 1/2 and 1/4 keep the trained layers' names).
    decoder_blocks: tuple[int, int, int] | None = None
    codebook_sizes: tuple[int, ...] = field(default=(128,) + (256,) * 11)
    coarse_width: int = 0
    # The "gdn" decoder is told how many stages coded each latent position: its features at the
    # latents' resolution are scaled and shifted by embeddings of that count
    # (`nets.stages.StageModulation`).
    stage_embedding: bool = False

    @property
    def factor(self) -> int:
        """Pixels per latent position along each axis."""
        return 16 if self.coarse_width else 8

    @property
    def decoder_levels(self) -> tuple[int, int, int]:
        """The residual blocks of the decoder at 1/2, 1/4 and 1/8."""
        return self.decoder_blocks or self.blocks


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


class GDN(nn.Module):
    """Simplified generalized divisive normalisation, y_i = x_i / (beta_i + sum_j gamma_ij |x_j|)
    (Johnston et al. 2019), or its inverse (multiplication) in the decoder. beta and gamma are
    kept positive by storing their square roots."""

    def __init__(self, width: int, inverse: bool = False, blocks: int = 0):
        super().__init__()
        self.inverse = inverse
        self.beta_root = nn.Parameter(torch.ones(width))
        self.gamma_root = nn.Parameter(torch.eye(width).mul(0.1).sqrt())
        # residual blocks after it, each starting as the identity, kept inside this module so
        # that a model grown with them (`ImageNetConfig.blocks`) loads the trained layers by name
        self.blocks = nn.Sequential(*(identity_block(width) for _ in range(blocks))) if blocks else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gamma = self.gamma_root.square()[:, :, None, None]
        norm = torch.nn.functional.conv2d(x.abs(), gamma, self.beta_root.square() + 1e-6)
        x = x * norm if self.inverse else x / norm
        return x if self.blocks is None else self.blocks(x)


def identity_block(width: int) -> ResBlock:
    """A residual block whose last convolution starts at zero: the identity until it learns."""
    block = ResBlock(width)
    nn.init.zeros_(block.body[3].weight)
    nn.init.zeros_(block.body[3].bias)
    return block


def _down(cin: int, cout: int) -> nn.Module:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _up(cin: int, cout: int) -> nn.Module:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


def _gdn_encoder(cfg: ImageNetConfig) -> nn.Sequential:
    w1, w2, w3 = cfg.widths
    b1, b2, _ = cfg.blocks
    return nn.Sequential(
        _down(3, w1),
        GDN(w1, blocks=b1),
        _down(w1, w2),
        GDN(w2, blocks=b2),
        _down(w2, w3),
        *[ResBlock(w3) for _ in range(cfg.blocks[2])],
        nn.Conv2d(w3, cfg.latent_dim, 3, padding=1),
    )


def _gdn_decoder(cfg: ImageNetConfig) -> nn.Sequential:
    w1, w2, w3 = cfg.widths
    b1, b2, b3 = cfg.decoder_levels
    return nn.Sequential(
        nn.Conv2d(cfg.latent_dim, w3, 3, padding=1),
        *[ResBlock(w3) for _ in range(b3)],
        _up(w3, w2),
        GDN(w2, inverse=True, blocks=b2),
        _up(w2, w1),
        GDN(w1, inverse=True, blocks=b1),
        _up(w1, 3),
    )


def _coarse_encoder(cfg: ImageNetConfig) -> nn.Sequential:
    width, latent = cfg.coarse_width, cfg.latent_dim
    return nn.Sequential(_down(latent, width), GDN(width), ResBlock(width), nn.Conv2d(width, latent, 3, padding=1))


def _coarse_decoder(cfg: ImageNetConfig) -> nn.Sequential:
    width, latent = cfg.coarse_width, cfg.latent_dim
    return nn.Sequential(nn.Conv2d(latent, width, 3, padding=1), ResBlock(width), _up(width, latent))


class Encoder(nn.Module):
    """RGB in [-0.5, 0.5], shape [B, 3, H, W] with H, W multiples of the factor f ->
    [B, D, H/f, W/f]."""

    def __init__(self, cfg: ImageNetConfig):
        super().__init__()
        self.coarse = _coarse_encoder(cfg) if cfg.coarse_width else nn.Identity()
        if cfg.arch == "gdn":
            self.net = _gdn_encoder(cfg)
            return
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
        return self.coarse(self.net(x))


class Decoder(nn.Module):
    """Latents [B, D, h, w] -> RGB [B, 3, f h, f w] (not clamped)."""

    def __init__(self, cfg: ImageNetConfig):
        super().__init__()
        self.coarse = _coarse_decoder(cfg) if cfg.coarse_width else nn.Identity()
        # How many stages coded each position, where the decoder is told (0: it is not).
        self.stage_count = len(cfg.codebook_sizes) if cfg.stage_embedding else 0
        if cfg.arch == "gdn":
            self.net = _gdn_decoder(cfg)
            if self.stage_count:  # after the first convolution and after the residual blocks
                self.residual_blocks = cfg.decoder_levels[2]
                self.modulation = nn.ModuleList(StageModulation(self.stage_count, cfg.widths[2]) for _ in range(2))
            return
        if cfg.stage_embedding:
            raise ValueError("only the gdn decoder can be told the stages")
        w1, w2, w3 = cfg.widths
        b1, b2, b3 = cfg.decoder_levels
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

    def forward(self, z: torch.Tensor, stages: torch.Tensor | None = None) -> torch.Tensor:
        """`stages`: how many stages coded the latents, [B] or [B, h, w] (None: all of them, or
        unquantized latents, read as the finest codes); used if `stage_count`."""
        x = self.coarse(z)
        if not self.stage_count:
            return self.net(x)
        b, _, h, w = x.shape
        if stages is None:
            stages = torch.full((b, 1, 1), self.stage_count, device=x.device)
        elif stages.dim() == 1:
            stages = stages[:, None, None]
        stages = stages.expand(b, *z.shape[2:])
        if h != z.shape[2]:  # the coarse level's positions cover 2x2 of the finer grid
            stages = stages.repeat_interleave(h // z.shape[2], 1).repeat_interleave(w // z.shape[3], 2)
        after_blocks = 1 + self.residual_blocks  # the first convolution, then the residual blocks at 1/8
        x = self._modulated(0, self.net[0](x), stages)
        x = self._modulated(1, self.net[1:after_blocks](x), stages)
        return self.net[after_blocks:](x)

    def _modulated(self, which: int, x: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        return self.modulation[which](x.permute(0, 2, 3, 1), stages).permute(0, 3, 1, 2)
