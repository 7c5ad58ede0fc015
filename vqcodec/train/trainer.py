"""One trainer for both media: the VQ-VAE, then the prior on its frozen indices, then the export.

What differs between images and sound is a `Medium` (`train.image.ImageTraining`,
`train.audio.AudioTraining`, looked up by `medium(kind)`): where its data comes from, how it is cut
into training batches, its losses, and what is measured on held-out files. How a model trains
(minutes, learning rate, batch, loss weights) is a `recipe.Settings`, the one place of defaults.

Both phases are resumable: the full state (weights, codebook EMAs, Adam moments, step) is kept
in a cache folder outside the repository and saved every few minutes; if that cache is gone,
training restarts from the compact shipped weights (fresh optimizer).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from vqcodec.registry import VQVAE_KINDS
from vqcodec.train.loop import (
    CacheFiles,
    Runtime,
    batch_stream,
    load_trained_vqvae,
    resume_vqvae,
    setup_runtime,
    stages_per_sample,
    train_loop,
)
from vqcodec.train.prior import export_model, shipped_prior, train_prior
from vqcodec.train.recipe import Settings

Groups = dict[str, list[Path]]  # training files by group (photos; speech, music)


class Run(ABC):
    """One training run of a medium's VQ-VAE: its batches, losses and held-out measures."""

    sampler: object  # sample(batch, step) -> a batch tensor
    offered_stages: tuple[int, ...] = ()  # stage counts drawn more often (see stages_per_sample)

    @abstractmethod
    def losses(self, recon: torch.Tensor, target: torch.Tensor, stages: torch.Tensor):
        """(the medium's loss, a function giving the values to log) of one batch."""

    @abstractmethod
    def validate(self) -> dict:
        """Quick held-out numbers for each log line (a fixed batch of held-out crops)."""

    @abstractmethod
    def evaluate(self) -> dict:
        """The evaluation log's record: whole held-out files at several stage counts."""

    def save(self) -> None:
        """Save what else the run trains (discriminators) beside the VQ-VAE's state: none here."""
        return None


class Medium(ABC):
    kind: str  # the registry's kind of the model made

    @abstractmethod
    def training_files(self, data: Path, cache: Path, settings: Settings) -> Groups:
        """The training files under `data` (and what the medium adds, cached under `cache`)."""

    @abstractmethod
    def start(self, model, train: Groups, held_out: Groups, cache: Path, settings: Settings, rt: Runtime) -> Run:
        """A run of `model` on these files."""

    @abstractmethod
    def prior_grids(self, vqvae, groups: Groups, cache: Path, settings: Settings) -> tuple[torch.Tensor, torch.Tensor]:
        """(training, held-out) index grids the encoder's search makes, for the prior."""

    @abstractmethod
    def prior_config(self, vqvae_cfg, options: dict):
        """The prior's `PriorConfig` for this VQ-VAE, with a recipe's [prior] options."""

    @abstractmethod
    def report(self, groups: Groups, data: Path, settings: Settings) -> dict:
        """What the training report says of the data and settings."""


def held_out_split(groups: Groups) -> tuple[Groups, Groups]:
    """(training, held-out) files: every 20th file of each group is held out (the first alone
    in a group of fewer than 20; it then also trains)."""
    held_out = {k: v[::20] if len(v) >= 20 else v[:1] for k, v in groups.items()}
    train = {k: [p for p in v if p not in set(held_out[k])] or v for k, v in groups.items()}
    return train, held_out


def train_vqvae(
    medium: Medium, groups: Groups, cache: Path, settings: Settings, cfg=None, init_weights: Path | None = None
) -> Path:
    """Train (or resume) the VQ-VAE for `settings.vqvae_minutes` (or up to `max_steps`);
    returns the state file. Under `torchrun`, each rank runs this with its own batches."""
    rt = setup_runtime(settings.device, settings.mixed_precision)
    files = CacheFiles(cache)
    cache.mkdir(parents=True, exist_ok=True)
    vqvae_class, cfg_class = VQVAE_KINDS[medium.kind]
    cfg = cfg or cfg_class()
    torch.manual_seed(0)  # the same initial weights in every fresh run
    model = vqvae_class(cfg).to(rt.device)
    model.freeze(settings.frozen)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=settings.lr)
    start_from = Path(settings.start_from) if settings.start_from else None
    step, trained_seconds = resume_vqvae(model, optimizer, files.vqvae_state, init_weights, start_from)
    run = medium.start(model, *held_out_split(groups), cache, settings, rt)
    net, levels, batch = rt.wrap(model), model.num_stages, settings.batch
    stream = batch_stream(run.sampler, batch, step, rt, settings.workers)

    def next_loss(step: int) -> tuple[torch.Tensor, Callable[[], dict]]:
        target = next(stream).to(rt.device, non_blocking=True)
        stages = stages_per_sample(batch, levels, settings.full_rate_prob, run.offered_stages).to(rt.device)
        with rt.autocast():
            recon, _, commit, usage = net(target, stages)
        loss, values = run.losses(recon.float(), target, stages)

        def log_values() -> dict:
            return {**values(), "commit": commit.item(), "code_usage": [round(u, 3) for u in usage]}

        return loss + settings.commit_weight * commit, log_values

    train_loop(
        model,
        optimizer,
        step,
        next_loss,
        files.vqvae_state,
        files.vqvae_log,
        {"config": asdict(cfg), "train_seconds": trained_seconds},
        settings.vqvae_minutes,
        settings.lr,
        anneal=settings.anneal,
        log_every=settings.log_every,
        save_every_s=60 * settings.save_minutes,
        max_steps=settings.max_steps,
        runtime=rt,
        validate=run.validate,
        evaluate=run.evaluate,
        on_save=run.save,
    )
    return files.vqvae_state


def train_model(
    medium: Medium,
    data: Path,
    out: Path,
    cache: Path,
    settings: Settings,
    net=None,
    prior_options: dict | None = None,
) -> dict:
    """Make a shipped model: resume the VQ-VAE, train the prior, export both as `out` (fp16
    VQ-VAE + integer prior) with its .json training report beside it. With `prior_minutes`
    <= 0 only the VQ-VAE trains and nothing is exported. `net` and `prior_options` (PriorConfig
    fields) come from a recipe. Where the cache has no state, the VQ-VAE starts from
    `settings.vqvae_from` (else `out`), the prior from `out`'s. With `settings.resume` False,
    `out`'s weights are no starting point (the caller clears the cache)."""
    groups = medium.training_files(data, cache, settings)
    init = out if settings.resume and out.exists() else None
    vqvae_init = Path(settings.vqvae_from) if settings.vqvae_from else init
    rt = setup_runtime(settings.device)
    if settings.vqvae_minutes > 0:
        train_vqvae(medium, groups, cache, settings, net, vqvae_init)
    rt.finish()  # the prior trains in one process: the other ranks are done
    if not rt.main:
        return {"vqvae_steps": None, "prior_steps": 0}
    vqvae, vqvae_steps = load_trained_vqvae(cache, medium.kind, vqvae_init)
    if settings.prior_minutes <= 0:
        return {"vqvae_steps": vqvae_steps, "prior_steps": 0}
    grids, val = medium.prior_grids(vqvae, groups, cache, settings)
    prior_cfg = medium.prior_config(vqvae.cfg, prior_options or {})
    prior, report = train_prior(
        grids, val, prior_cfg, cache, settings.prior_minutes, device=rt.device, init=shipped_prior(init, prior_cfg)
    )
    return export_model(out, out.stem, vqvae, prior, report, cache, vqvae_steps, medium.report(groups, data, settings))


def medium(kind: str) -> Medium:
    """The training of images or sound (imported here: their modules build on this one)."""
    from vqcodec.train.audio import AudioTraining
    from vqcodec.train.image import ImageTraining

    return {"image": ImageTraining, "audio": AudioTraining}[kind]()
