"""The audio medium of the trainer (`train.trainer`): 24 kHz mono segments of speech and music,
spectral and adversarial losses, whole held-out clips measured at several stage counts.

Training data: the speech in ../shared/data/audio/train, plus music and many-voice speech from
Debian packages (fetched with `fetch_debian_audio`, cached, no network needed afterwards).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from dataclasses import asdict
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F

from vqcodec.errors import BadInputError
from vqcodec.media.audio import list_audio, load_audio
from vqcodec.media.mel import mel_distance
from vqcodec.nets.adversarial import MultiScaleDiscriminator, discriminator_loss, generator_losses
from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.vqvae import AudioVQVAE
from vqcodec.prior import PriorConfig
from vqcodec.quantizer import SEARCH_BEAM
from vqcodec.train.loop import CacheFiles
from vqcodec.train.prior import cached_grids
from vqcodec.train.recipe import AudioSettings
from vqcodec.train.trainer import Groups, Medium, Run
from vqcodec.weights import load_training_state, save_training_state

# Debian packages of training audio and their group. The speech ones are short words, letters and
# syllables spoken by volunteers, one or more voices per language: the speaker variety that the
# one shared reader lacks.
DEBIAN_AUDIO_PACKAGES = {
    "wesnoth-1.16-music": "music",
    "warzone2100-music": "music",
    "ktuberling-data": "speech",
    "klettres-data": "speech",
}


def fetch_debian_audio(cache: Path) -> dict[str, Path]:
    """Download and unpack each package of DEBIAN_AUDIO_PACKAGES once, into a folder of its own
    (so a package added to the list later is fetched on the next run); returns those folders."""
    folders = {}
    for package in DEBIAN_AUDIO_PACKAGES:
        folder = cache / "debian-audio" / package
        done = folder / ".complete"
        if not done.exists():
            folder.mkdir(parents=True, exist_ok=True)
            if not list(cache.glob(package + "_*.deb")):
                subprocess.run(["apt-get", "download", package], cwd=cache, check=True)
            for deb in cache.glob(package + "_*.deb"):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True)
            done.touch()
        folders[package] = folder
    return folders


class SegmentSampler:
    """Random segments of mono audio at the model's rate, with a random gain (-20..0 dB).

    A share `band_limit_share` of the segments is resampled to 8 or 16 kHz and back, as the
    telephone and wideband recordings that users code are: the training audio itself is all
    24 kHz or more, so without this the model never sees an empty top band.

    `groups` (e.g. speech and music) are drawn in the proportions `shares` (equally by default)
    whatever their durations, so six hours of music do not drown half an hour of speech; within
    a group, clips are drawn in proportion to their length. Clips are held in memory as int16
    (about 1 GB for 6 hours).
    """

    def __init__(
        self,
        groups: dict[str, list[Path]] | list[Path],
        sample_rate: int,
        seconds: float,
        seed: int = 0,
        shares: dict[str, float] | None = None,
        band_limit_share: float = 0.0,
    ):
        self.sample_rate, self.band_limit_share = sample_rate, band_limit_share
        self.length = int(seconds * sample_rate)
        self.rng = random.Random(seed)
        if not isinstance(groups, dict):
            groups = {"all": list(groups)}
        loaded = {name: self._load(paths, sample_rate) for name, paths in groups.items()}
        self.groups = [g for g in loaded.values() if g[0]]
        self.shares = [(shares or {}).get(name, 1.0) for name, g in loaded.items() if g[0]]
        if not self.groups:
            raise BadInputError("no usable training audio")

    @staticmethod
    def _load(paths: list[Path], sample_rate: int) -> tuple[list[np.ndarray], list[int]]:
        clips, weights = [], []
        for path in paths:
            try:
                samples, _ = load_audio(path, sample_rate)
            except Exception:  # noqa: BLE001 - a damaged training file is skipped, not fatal
                continue
            mono = samples.mean(0)
            if len(mono) < sample_rate // 4 or not np.abs(mono).max() > 1e-3:
                continue
            clips.append((np.clip(mono, -1, 1) * 32767).astype(np.int16))
            weights.append(len(mono))
        return clips, weights

    def sample(self, batch: int, step: int | None = None) -> torch.Tensor:
        """A batch of segments; with `step`, the same segments for the same step."""
        rng = self.rng if step is None else random.Random(step)
        out = np.zeros((batch, 1, self.length), dtype=np.float32)
        picks = []
        for clips, weights in rng.choices(self.groups, weights=self.shares, k=batch):
            picks += rng.choices(clips, weights=weights, k=1)
        for i, clip in enumerate(picks):
            start = rng.randint(0, max(0, len(clip) - self.length))
            piece = clip[start : start + self.length].astype(np.float32) / 32767
            if self.band_limit_share and rng.random() < self.band_limit_share:
                piece = self._band_limit(piece, rng.choice((8000, 16000)))
            peak = max(np.abs(piece).max(), 1e-4)
            gain = 10 ** (rng.uniform(-20, 0) / 20) / peak
            out[i, 0, : len(piece)] = piece * min(gain, 10.0)
        return torch.from_numpy(out)

    def _band_limit(self, piece: np.ndarray, rate: int) -> np.ndarray:
        """`piece` through a `rate` Hz recording: resampled down and back up, same length."""
        low = soxr.resample(piece, self.sample_rate, rate)
        return soxr.resample(low, rate, self.sample_rate)[: len(piece)].astype(np.float32)


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


EVAL_CLIPS = 4  # held-out clips of each group in each evaluation, their first EVAL_SECONDS
EVAL_SECONDS = 8.0
EVAL_STAGES = (2, 4, 8, 16)  # the command line's 1.5, 3, 6 and 12 kbps


def held_out_clips(
    held_out: dict[str, list[Path]], cfg: AudioNetConfig, count: int = EVAL_CLIPS
) -> dict[str, list[np.ndarray]]:
    """Up to `count` clips of each group, spread over its held-out files: the first
    EVAL_SECONDS of each, mono at the model's rate, a whole number of frames long."""
    clips: dict[str, list[np.ndarray]] = {}
    for group, paths in held_out.items():
        for path in paths[:: max(1, len(paths) // count)]:
            try:
                samples, _ = load_audio(path, cfg.sample_rate)
            except Exception:  # noqa: BLE001 - a damaged file is left out, as in training
                continue
            mono = samples.mean(0)[: int(EVAL_SECONDS * cfg.sample_rate)]
            mono = mono[: len(mono) // cfg.hop * cfg.hop]
            if len(mono) >= cfg.sample_rate // 2 and np.abs(mono).max() > 1e-3:
                clips.setdefault(group, []).append(np.ascontiguousarray(mono, dtype=np.float32))
            if len(clips.get(group, [])) == count:
                break
    return clips


@torch.no_grad()
def evaluate_clips(model: AudioVQVAE, clips: dict[str, list[np.ndarray]], stage_counts=EVAL_STAGES) -> dict:
    """Mean log-mel distance per group, and PESQ-WB and STOI for speech (where pesq and pystoi
    are installed), unquantized (the autoencoder's ceiling) and from the first n stages of the
    greedy code, with the bitrate those stages cost before the prior."""
    import importlib.util

    from vqcodec.bench.audio import audio_metrics
    from vqcodec.catalog import kbps_per_stage

    model.eval()
    rate, device = model.cfg.sample_rate, next(model.parameters()).device
    counts = [n for n in stage_counts if n <= model.num_stages]
    with_speech_metrics = all(importlib.util.find_spec(name) for name in ("pesq", "pystoi"))
    sums: dict[str, list[float]] = {}
    for group, waves in clips.items():
        for wave in waves:
            latents = model.encoder(torch.from_numpy(wave)[None, None].to(device))
            indices = model.quantizer.encode(latents, max(counts))
            decoded = {"unquantized": model.decode(latents)}
            decoded.update({f"q{n}": model.reconstruct(indices[:, :n]) for n in counts})
            for key, recon in decoded.items():
                recon = recon[0].float().cpu().numpy()
                try:
                    metrics = audio_metrics(wave[None], recon, rate, group == "speech" and with_speech_metrics)
                except Exception:  # noqa: BLE001 - PESQ refuses some inputs (no speech found)
                    metrics = audio_metrics(wave[None], recon, rate, False)
                for name, value in metrics.items():
                    sums.setdefault(f"{group}_{name}_{key}", []).append(value)
    record: dict = {k: round(float(np.mean(v)), 4) for k, v in sums.items()}
    stage_kbps = kbps_per_stage(asdict(model.cfg))
    record["kbps_before_prior"] = {f"q{n}": round(n * stage_kbps, 3) for n in counts}
    model.train()
    return record


class Critic:
    """The discriminators of adversarial training and their optimizer (Adam, betas 0.5 / 0.9
    as EnCodec and DAC), saved beside the VQ-VAE's state and resumed from it."""

    def __init__(self, cache: Path, lr: float, rt):
        self.path, self.rt = CacheFiles(cache).discriminator_state, rt
        self.disc = MultiScaleDiscriminator().to(rt.device)
        self.optimizer = torch.optim.Adam(self.disc.parameters(), lr=lr, betas=(0.5, 0.9))
        if self.path.exists():
            load_training_state(self.path, self.disc, self.optimizer)
        self.net = rt.wrap(self.disc)

    def step(self, real: torch.Tensor, fake: torch.Tensor) -> dict[str, torch.Tensor]:
        """One update of the discriminators, then the generator's losses against them."""
        with self.rt.autocast():
            loss = discriminator_loss(self.net, real, fake)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.disc.parameters(), 1.0)
        self.optimizer.step()
        with self.rt.autocast():
            adversarial, matching = generator_losses(self.net, real, fake)
        return {"discriminator": loss.detach(), "adversarial": adversarial, "feature_matching": matching}

    def save(self) -> None:
        save_training_state(self.path, self.disc, self.optimizer, {})


def training_audio(shared_train: Path, cache: Path) -> dict[str, list[Path]]:
    """The training set as groups: speech (the shared reader plus the Debian many-voice words
    and syllables) and music (the Debian soundtracks), fetched and cached if needed. A folder
    already split into speech/ and music/ (the GPU pack, scripts/gpu_pack.py) is taken as it is."""
    split = {group: shared_train / group for group in ("speech", "music")}
    if all(folder.is_dir() for folder in split.values()):
        return {group: list_audio(folder) for group, folder in split.items()}
    groups = {"speech": list_audio(shared_train), "music": []}
    if shutil.which("apt-get") and shutil.which("dpkg-deb"):
        for package, folder in fetch_debian_audio(cache).items():
            groups[DEBIAN_AUDIO_PACKAGES[package]] += list_audio(folder)
    return groups


def audio_prior_config(net: AudioNetConfig, **options) -> PriorConfig:
    """The audio prior: 1-D convolutions 5 frames wide (a context of +-8 frames, 0.1 s)."""
    settings = {"hidden": 96, "kernel": (1, 5), **options, "schedule": "1d"}
    return PriorConfig(codebook_sizes=net.codebook_sizes, **settings)


@torch.no_grad()
def audio_index_set(
    model: AudioVQVAE,
    groups: dict[str, list[Path]],
    count: int,
    seconds: float,
    seed: int,
    band_limit_share: float = 0.0,
):
    """Index grids [count, L, 1, frames] of random training segments, as int16: the codes the
    encoder's search makes (`SEARCH_BEAM`), which the prior will be given to code."""
    sampler = SegmentSampler(groups, model.cfg.sample_rate, seconds, seed=seed, band_limit_share=band_limit_share)
    out = []
    for start in range(0, count, 16):
        latents = model.encoder(sampler.sample(min(16, count - start)))
        out.append(model.quantizer.encode(latents, model.num_stages, SEARCH_BEAM).to(torch.int16))
    return torch.cat(out)


class AudioTraining(Medium):
    kind = "audio"

    def training_files(self, data: Path, cache: Path, settings: AudioSettings) -> Groups:
        if settings.music:
            return training_audio(data, cache.parent / "audio-src")
        return {"speech": list_audio(data)}

    def start(self, model, train: Groups, held_out: Groups, cache: Path, settings: AudioSettings, rt) -> Run:
        return _AudioRun(model, train, held_out, cache, settings, rt)

    def prior_grids(self, vqvae, groups: Groups, cache: Path, settings: AudioSettings):
        # Every 20th file of each group is held out to measure the prior; a subset of the rest
        # (every 3rd file) gives the training grids, to keep loading short.
        held_out = {k: v[::20] for k, v in groups.items()}
        train = {k: [p for i, p in enumerate(v) if i % 20 and i % 3 == 1] or v for k, v in groups.items()}
        options = {"seconds": 4.0, "band_limit_share": settings.band_limit_share}
        count = settings.prior_grids
        return cached_grids(
            CacheFiles(cache).prior_grids,
            vqvae,
            {"train": train, "held_out": held_out, "count": count, **options},
            lambda: (
                audio_index_set(vqvae, train, count, seed=1, **options),
                audio_index_set(vqvae, held_out, 64, seed=2, **options),
            ),
        )

    def prior_config(self, vqvae_cfg: AudioNetConfig, options: dict) -> PriorConfig:
        return audio_prior_config(vqvae_cfg, **options)

    def report(self, groups: Groups, data: Path, settings: AudioSettings) -> dict:
        chosen = ("speech_share", "offered_stages", "band_limit_share", "adversarial")
        return {
            "training_files": {k: len(v) for k, v in groups.items()},
            "training_settings": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(settings).items() if k in chosen
            },
        }


class _AudioRun(Run):
    """Random segments (speech and music in the recipe's shares), multi-resolution STFT and mel
    losses, and with `adversarial` > 0 multi-scale STFT discriminators beside them: their hinge
    and feature-matching losses, times `adversarial`, join the spectral ones; they learn at
    `discriminator_lr`, so a VQ-VAE refined at a small `lr` still meets trained critics soon.
    Mel distance of held-out segments in the log; PESQ, STOI and mel distance of whole held-out
    clips in the evaluation log."""

    def __init__(self, model: AudioVQVAE, train: Groups, held_out: Groups, cache: Path, settings: AudioSettings, rt):
        self.model, self.settings, rate = model, settings, model.cfg.sample_rate
        shares = {"speech": settings.speech_share, "music": 1 - settings.speech_share}
        self.sampler = SegmentSampler(
            train, rate, settings.seconds, shares=shares, band_limit_share=settings.band_limit_share
        )
        self.offered_stages = settings.offered_stages
        self.val_wave = SegmentSampler(held_out, rate, settings.seconds).sample(8, 0).to(rt.device)
        self.clips = held_out_clips(held_out, model.cfg)
        self.critic = Critic(cache, settings.discriminator_lr, rt) if settings.adversarial > 0 else None

    def losses(self, recon: torch.Tensor, wave: torch.Tensor, stages: torch.Tensor):
        spectral = stft_loss(recon, wave)
        mel = mel_distance(recon, wave, self.model.cfg.sample_rate)
        # Spectral terms make it sound right; the small waveform term keeps the phase anchored.
        loss = 0.1 * F.l1_loss(recon, wave) + spectral + 2.0 * mel
        gan = self.critic.step(wave, recon) if self.critic else {}
        if gan:
            loss = loss + self.settings.adversarial * (gan["adversarial"] + gan["feature_matching"])

        def values() -> dict:
            return {"stft": spectral.item(), "mel": mel.item(), **{k: round(v.item(), 4) for k, v in gan.items()}}

        return loss, values

    def validate(self) -> dict:
        stages = torch.full((8,), self.model.num_stages, device=self.val_wave.device)
        recon = self.model(self.val_wave, stages)[0]
        return {"val_mel": mel_distance(recon, self.val_wave, self.model.cfg.sample_rate).item()}

    def evaluate(self) -> dict:
        return evaluate_clips(self.model, self.clips)

    def save(self) -> None:
        if self.critic:
            self.critic.save()
