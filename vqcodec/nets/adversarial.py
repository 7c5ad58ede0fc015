"""Adversarial training of the audio decoder: multi-scale STFT discriminators (as EnCodec's),
a hinge loss, and feature matching relative to the real features' size.

Spectral losses alone reward the average of the plausible outputs, which sounds muffled and
buzzy; a discriminator rewards outputs that look like real recordings in every band.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

STFT_SCALES = (256, 512, 1024)  # FFT sizes of the discriminators (EnCodec uses five, 128..2048)


class STFTDiscriminator(nn.Module):
    """2-D convolutions over the real and imaginary parts of one STFT [B, 2, frames, bins],
    strided along frequency; returns (logits, the feature maps of every layer)."""

    def __init__(self, n_fft: int, width: int = 16):
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        layers = [nn.Conv2d(2, width, (3, 9), padding=(1, 4))]
        for dilation in (1, 2, 4):
            layers.append(nn.Conv2d(width, width, (3, 9), stride=(1, 2), dilation=(dilation, 1), padding=(dilation, 4)))
        layers.append(nn.Conv2d(width, width, 3, padding=1))
        self.layers = nn.ModuleList(layers)
        self.out = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, wave: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        spec = torch.stft(wave.squeeze(1).float(), self.n_fft, self.n_fft // 4, window=self.window, return_complex=True)
        x = torch.view_as_real(spec).permute(0, 3, 2, 1)
        features = []
        for layer in self.layers:
            x = F.leaky_relu(layer(x), 0.2)
            features.append(x)
        return self.out(x), features


class MultiScaleDiscriminator(nn.Module):
    """One STFTDiscriminator per FFT size of STFT_SCALES."""

    def __init__(self, scales: tuple[int, ...] = STFT_SCALES, width: int = 16):
        super().__init__()
        self.discriminators = nn.ModuleList(STFTDiscriminator(n, width) for n in scales)

    def forward(self, wave: torch.Tensor) -> list[tuple[torch.Tensor, list[torch.Tensor]]]:
        return [d(wave) for d in self.discriminators]


def discriminator_loss(disc: MultiScaleDiscriminator, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """Hinge loss of the discriminators: real above +1, generated below -1 (no gradient to the
    generator)."""
    loss = real.new_zeros(())
    for (real_logits, _), (fake_logits, _) in zip(disc(real), disc(fake.detach()), strict=True):
        loss = loss + F.relu(1 - real_logits).mean() + F.relu(1 + fake_logits).mean()
    return loss / len(disc.discriminators)


def generator_losses(
    disc: MultiScaleDiscriminator, real: torch.Tensor, fake: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(adversarial hinge loss, feature matching) of the generated audio: the second is the L1
    distance of each layer's features to those of the real audio, relative to their mean size,
    averaged over layers and discriminators."""
    with torch.no_grad():
        real_out = disc(real)
    adversarial = real.new_zeros(())
    matching = real.new_zeros(())
    for (_, real_features), (fake_logits, fake_features) in zip(real_out, disc(fake), strict=True):
        adversarial = adversarial + F.relu(1 - fake_logits).mean()
        for r, f in zip(real_features, fake_features, strict=True):
            matching = matching + F.l1_loss(f, r) / (r.abs().mean() + 1e-5) / len(real_features)
    count = len(disc.discriminators)
    return adversarial / count, matching / count
