"""Training of the audio VQ-VAE (24 kHz mono) on speech and music.

Training data: the speech in ../shared/data/audio/train, plus music and many-voice speech from
Debian packages (fetched with `fetch_debian_audio`, cached, no network needed afterwards).
The prior for audio, the codec and the container come later; this trains the autoencoder.
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .media_audio import list_audio, load_audio
from .model import AudioVQVAE
from .nets_audio import AudioNetConfig
from .training import stages_per_sample, train_loop
from .weights import load_training_state

DEBIAN_AUDIO_PACKAGES = ("wesnoth-1.16-music", "warzone2100-music", "ktuberling-data")


def fetch_debian_audio(cache: Path) -> Path:
    """Download and unpack the music and speech packages (once); returns the unpacked folder."""
    root = cache / "debian-audio"
    done = root / ".complete"
    if done.exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    debs = list(cache.glob("*.deb"))
    missing = [p for p in DEBIAN_AUDIO_PACKAGES if not any(d.name.startswith(p + "_") for d in debs)]
    if missing:
        subprocess.run(["apt-get", "download", *missing], cwd=cache, check=True)
    for deb in cache.glob("*.deb"):
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    done.touch()
    return root


class SegmentSampler:
    """Random segments of mono audio at the model's rate, with a random gain (-20..0 dB).

    All clips are held in memory as int16 after resampling (about 1 GB for 6 hours).
    """

    def __init__(self, paths: list[Path], sample_rate: int, seconds: float, seed: int = 0):
        self.length = int(seconds * sample_rate)
        self.rng = random.Random(seed)
        self.clips, self.weights = [], []
        for path in paths:
            try:
                samples, _ = load_audio(path, sample_rate)
            except Exception:  # noqa: BLE001 - a damaged training file is skipped, not fatal
                continue
            mono = samples.mean(0)
            if len(mono) < sample_rate // 4 or not np.abs(mono).max() > 1e-3:
                continue
            self.clips.append((np.clip(mono, -1, 1) * 32767).astype(np.int16))
            self.weights.append(len(mono))
        if not self.clips:
            raise ValueError("no usable training audio")

    def sample(self, batch: int) -> torch.Tensor:
        out = np.zeros((batch, 1, self.length), dtype=np.float32)
        for i, clip in enumerate(self.rng.choices(self.clips, weights=self.weights, k=batch)):
            start = self.rng.randint(0, max(0, len(clip) - self.length))
            piece = clip[start : start + self.length].astype(np.float32) / 32767
            peak = max(np.abs(piece).max(), 1e-4)
            gain = 10 ** (self.rng.uniform(-20, 0) / 20) / peak
            out[i, 0, : len(piece)] = piece * min(gain, 10.0)
        return torch.from_numpy(out)


def stft_loss(recon: torch.Tensor, target: torch.Tensor, sizes=(256, 512, 1024, 2048)) -> torch.Tensor:
    """Multi-resolution STFT loss: L1 of log magnitudes plus spectral convergence."""
    loss = recon.new_zeros(())
    for n_fft in sizes:
        window = torch.hann_window(n_fft, device=recon.device)
        spec = [
            torch.stft(x.squeeze(1), n_fft, n_fft // 4, window=window, return_complex=True).abs()
            for x in (recon, target)
        ]
        loss = loss + F.l1_loss(torch.log(spec[0] + 1e-5), torch.log(spec[1] + 1e-5))
        loss = loss + (spec[0] - spec[1]).norm() / (spec[1].norm() + 1e-7)
    return loss / len(sizes)


def train_audio_vqvae(
    paths: list[Path],
    cache: Path,
    minutes: float,
    batch: int = 8,
    seconds: float = 1.0,
    lr: float = 3e-4,
    commit_weight: float = 0.25,
    full_rate_prob: float = 0.5,
    cfg: AudioNetConfig | None = None,
    log_every: int = 50,
) -> Path:
    """Train (or resume) the audio VQ-VAE for `minutes`; returns the state file."""
    cache.mkdir(parents=True, exist_ok=True)
    state_path, log_path = cache / "vqvae_state.safetensors", cache / "vqvae_log.jsonl"
    cfg = cfg or AudioNetConfig()
    model = AudioVQVAE(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step = 0
    if state_path.exists():
        step = load_training_state(state_path, model, optimizer)["step"]
    sampler = SegmentSampler(paths, cfg.sample_rate, seconds, seed=step)
    torch.manual_seed(step)
    levels = model.num_stages

    def next_loss():
        wave = sampler.sample(batch)
        stages = stages_per_sample(batch, levels, full_rate_prob)
        recon, _, commit, usage = model(wave, stages)
        spectral = stft_loss(recon, wave)
        loss = F.l1_loss(recon, wave) + spectral + commit_weight * commit

        def log_values():
            return {"stft": spectral.item(), "commit": commit.item(), "code_usage": [round(u, 3) for u in usage]}

        return loss, log_values

    train_loop(
        model,
        optimizer,
        step,
        next_loss,
        state_path,
        log_path,
        {"config": asdict(cfg)},
        minutes,
        lr,
        log_every=log_every,
    )
    return state_path


def training_audio(shared_train: Path, cache: Path) -> list[Path]:
    """The training set: shared speech plus the Debian music and speech (fetched if needed)."""
    paths = list_audio(shared_train)
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        paths += list_audio(fetch_debian_audio(cache))
    return paths
