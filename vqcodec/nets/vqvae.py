"""The VQ-VAE of either medium: encoder -> residual quantizer -> decoder.

One class holds what both media share (the quantizer, the training pass); the medium gives its
networks, the offset that centres its input (images in [0, 1], sound already centred) and the
layout its networks code fastest in.
"""

from __future__ import annotations

import torch
from torch import nn

from vqcodec.nets.audio import AudioDecoder, AudioEncoder, AudioNetConfig, ISTFTDecoder, activations_in_place, planar
from vqcodec.nets.image import Decoder, Encoder, ImageNetConfig
from vqcodec.quantizer import ResidualVQ


class VQVAE(nn.Module):
    PARTS = ("encoder", "quantizer", "decoder")
    offset = 0.0  # subtracted from the input before the encoder, added back after the decoder

    def __init__(self, cfg, encoder: nn.Module, decoder: nn.Module):
        super().__init__()
        self.cfg = cfg
        self.encoder = encoder
        self.quantizer = ResidualVQ(cfg.latent_dim, cfg.codebook_sizes)
        self.decoder = decoder
        self.frozen: tuple[str, ...] = ()

    def freeze(self, parts: tuple[str, ...]) -> None:
        """Keep `parts` (of PARTS) as they are in training: no gradients, and always in eval mode,
        so the quantizer's codebooks make no moving-average updates."""
        unknown = set(parts) - set(self.PARTS)
        if unknown:
            raise ValueError(f"cannot freeze {', '.join(sorted(unknown))}: not a part of the VQ-VAE")
        self.frozen = tuple(parts)
        for part in parts:
            getattr(self, part).requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> VQVAE:
        super().train(mode)
        for part in self.frozen:
            getattr(self, part).train(False)
        return self

    @property
    def num_stages(self) -> int:
        return self.quantizer.num_stages

    def forward(self, x: torch.Tensor, stages_per_sample: torch.Tensor):
        """Training pass: (reconstruction, indices, commitment loss, per-stage code usage); sample
        b is reconstructed from its first stages_per_sample[b] stages."""
        latents = self.encoder(x - self.offset if self.offset else x)
        quantized, indices, commit, usage = self.quantizer(latents, stages_per_sample)
        return self.decode(quantized, stages_per_sample), indices, commit, usage

    def decode(self, latents: torch.Tensor, stages: torch.Tensor | None = None) -> torch.Tensor:
        """The decoder's output (in the input's range) of `latents` coded with `stages` stages
        ([B], or [B, h, w] for each position; None: all stages, or unquantized), which the
        decoder is told where it reads them (the configs' `stage_embedding`)."""
        recon = self.decoder(latents, stages) if self.decoder_told else self.decoder(latents)
        return recon + self.offset if self.offset else recon

    def reconstruct(self, indices: torch.Tensor) -> torch.Tensor:
        """[B, q, h, w] indices (-1: no code at that stage) -> the decoded input."""
        stages = (indices >= 0).sum(1) if self.decoder_told else None
        return self.decode(self.quantizer.decode(indices), stages)

    @property
    def decoder_told(self) -> bool:
        """Whether the decoder reads how many stages coded its latents (`stage_embedding`)."""
        return getattr(self.decoder, "stage_count", 0) > 0


class ImageVQVAE(VQVAE):
    """Images [B, 3, H, W] in [0, 1] -> latents at 1/8 -> residual VQ -> decoder."""

    offset = 0.5

    def __init__(self, cfg: ImageNetConfig):
        super().__init__(cfg, Encoder(cfg), Decoder(cfg))

    def for_coding(self) -> ImageVQVAE:
        """Switch the encoder and decoder to channels-last weights, which oneDNN convolves 20 %
        faster on this project's CPU (a Kodak image's decoder: 0.50 s to 0.40 s); the same
        weights and results up to float rounding (the indices are chosen from the encoder's
        output, the integer prior never sees these networks), for coding only."""
        for net in (self.encoder, self.decoder):
            net.to(memory_format=torch.channels_last)
        return self


class AudioVQVAE(VQVAE):
    """Waveform [B, 1, N] -> latents [B, D, 1, N/hop] -> residual VQ -> decoder."""

    def __init__(self, cfg: AudioNetConfig):
        decoder = ISTFTDecoder(cfg) if cfg.decoder == "istft" else AudioDecoder(cfg)
        super().__init__(cfg, AudioEncoder(cfg), decoder)

    @property
    def context_frames(self) -> int:
        """Frames either side that reach a frame's latent or its samples: the context a segment
        needs so that a file coded segment by segment decodes as if it were coded whole."""
        return max(self.encoder.context_frames, self.decoder.context_frames)

    def for_coding(self) -> AudioVQVAE:
        """Switch the encoder and decoder to their faster inference layout (`nets.audio.planar`),
        the same arithmetic on the same weights; for coding only, not for training or saving."""
        for net in (self.encoder, self.decoder):
            if hasattr(net, "net"):  # (the inverse-STFT decoder has no full-rate layers to switch)
                net.net, net.planar = activations_in_place(planar(net.net)), True
        return self
