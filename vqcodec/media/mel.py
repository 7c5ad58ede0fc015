"""Log-mel spectra: one definition for the audio training loss and the benchmark's mel distance.

(torchaudio has no CPU build here and librosa would pull in numba for one matrix, so the
triangular mel filterbank, HTK mel scale, is built from its formula.)
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

# The mel distance of the benchmark: (n_fft, n_mels) pairs, log10 of mel power, floor 1e-5.
MEL_SCALES = ((512, 40), (1024, 80), (2048, 160))
LOG_FLOOR = 1e-5


def hz_to_mel(hz: float | torch.Tensor):
    return 2595.0 * (torch.log10(1 + hz / 700.0) if isinstance(hz, torch.Tensor) else math.log10(1 + hz / 700.0))


@lru_cache(maxsize=32)
def mel_filterbank(n_fft: int, n_mels: int, sample_rate: int) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] triangular filters, equally spaced on the mel scale up to Nyquist."""
    freqs = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)
    edges = torch.linspace(0, hz_to_mel(sample_rate / 2), n_mels + 2, dtype=torch.float64)
    edges_hz = 700.0 * (10 ** (edges / 2595.0) - 1)
    lower, centre, upper = edges_hz[:-2, None], edges_hz[1:-1, None], edges_hz[2:, None]
    rising = (freqs[None] - lower) / (centre - lower)
    falling = (upper - freqs[None]) / (upper - centre)
    return torch.clamp(torch.minimum(rising, falling), min=0).to(torch.float32)


def log_mel(wave: torch.Tensor, sample_rate: int, n_fft: int, n_mels: int) -> torch.Tensor:
    """log10 mel power spectrogram of waves [..., n] -> [..., n_mels, frames]."""
    window = torch.hann_window(n_fft, device=wave.device)
    flat = wave.reshape(-1, wave.shape[-1])
    if flat.shape[-1] < n_fft:  # torch.stft needs at least one full window after padding
        flat = torch.nn.functional.pad(flat, (0, n_fft - flat.shape[-1]))
    power = torch.stft(flat, n_fft, n_fft // 4, window=window, return_complex=True).abs() ** 2
    mel = mel_filterbank(n_fft, n_mels, sample_rate).to(wave.device) @ power
    return torch.log10(mel.clamp_min(LOG_FLOOR)).reshape(*wave.shape[:-1], n_mels, -1)


def mel_distance(recon: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Mean absolute difference of log10 mel spectra, averaged over MEL_SCALES (lower is better)."""
    total = recon.new_zeros(())
    for n_fft, n_mels in MEL_SCALES:
        total = (
            total
            + (log_mel(recon, sample_rate, n_fft, n_mels) - log_mel(target, sample_rate, n_fft, n_mels)).abs().mean()
        )
    return total / len(MEL_SCALES)
