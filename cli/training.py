"""`vqcodec train`: training an image or audio model from a recipe."""

from __future__ import annotations

import os
from pathlib import Path

import click

from cli.main import device_option, main
from vqcodec.errors import UsageError


@main.group()
def train() -> None:
    """Train (or resume training of) a codec model."""


def _train_options(kind: str):
    """The options `train image` and `train audio` share."""

    def decorate(fn):
        options = [
            click.argument("data", required=False, type=click.Path(exists=True, file_okay=False, path_type=Path)),
            click.option(
                "-o",
                "--out",
                type=click.Path(dir_okay=False, path_type=Path),
                required=True,
                help="Model to write: NAME or PATH (.safetensors added), with its .json report beside it.",
            ),
            click.option("--config", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="TOML recipe."),
            click.option("--cache", type=click.Path(file_okay=False, path_type=Path), help="Training state folder."),
            click.option("--vqvae-minutes", type=float, help="Wall-clock minutes for the VQ-VAE (0: skip)."),
            click.option("--prior-minutes", type=float, help="Minutes for the prior (0: no prior, no export)."),
            click.option(
                "--vqvae-from",
                type=click.Path(exists=True, dir_okay=False),
                help="Where the cache has no state: the VQ-VAE's weights from this model file (a training "
                "checkpoint) instead of OUT's; OUT's prior is still the prior's starting point.",
            ),
            click.option("--lr", type=float, help="VQ-VAE learning rate."),
            click.option("--batch", type=int, help="VQ-VAE training crops or segments per step."),
            click.option(
                "--anneal",
                is_flag=True,
                default=None,
                help="Final phase: the VQ-VAE learning rate falls from --lr to a tenth over this run (cosine).",
            ),
            click.option("--max-steps", type=int, help="Stop the VQ-VAE at this step count."),
            device_option(),
            click.option("--threads", type=int, help="CPU threads for torch."),
            click.option("--workers", type=int, help="Data loading processes [0 on a CPU, up to 8 with a GPU]."),
            click.option("--save-every", "save_minutes", type=float, help="Minutes between saved states [5]."),
            click.option(
                "--resume/--fresh",
                default=None,
                help="Continue from the cached state or MODEL's weights (default), or start over "
                "(the old state is moved aside, not deleted).",
            ),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return decorate


def _move_aside(cache: Path) -> None:
    """`--fresh`: the old training state is kept as CACHE.old-N rather than deleted."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise UsageError("--fresh works in one process; under torchrun, give a new --cache instead")
    if cache.exists() and any(cache.iterdir()):
        n = 1
        while cache.with_name(f"{cache.name}.old-{n}").exists():
            n += 1
        cache.rename(cache.with_name(f"{cache.name}.old-{n}"))
        click.echo(f"moved the old training state to {cache.name}.old-{n}", err=True)


def _run_training(kind: str, data: Path | None, out: Path, config: Path | None, cache: Path | None, **given) -> None:
    import torch

    from vqcodec.train.recipe import load_recipe, with_options
    from vqcodec.train.trainer import medium, train_model

    recipe = load_recipe(config, kind)
    threads = given.pop("threads")
    settings = with_options(recipe["train"], given)
    data = data or (Path(settings.data) if settings.data else None)
    if data is None or not data.is_dir():
        raise UsageError("give the training data folder (DATA, or 'data' in the recipe's [train])")
    if threads:
        torch.set_num_threads(threads)
    out = out if out.suffix == ".safetensors" else out.with_name(out.name + ".safetensors")
    cache = cache or Path.home() / ".cache" / "vqcodec" / out.stem
    if not settings.resume:
        _move_aside(cache)
    card = train_model(medium(kind), data, out, cache, settings, recipe["net"], recipe["prior"])
    if card["vqvae_steps"] is None:  # a rank other than 0 of a torchrun job
        return
    if card["prior_steps"]:
        click.echo(f"wrote {out} (VQ-VAE {card['vqvae_steps']} steps, prior {card['prior_steps']} steps)")
    else:
        click.echo(f"VQ-VAE at step {card['vqvae_steps']} (state in {cache}); no prior trained, nothing exported")


@train.command("image")
@_train_options("image")
def train_image(data, out, config, cache, **options) -> None:
    """Train an image model on the photos in DATA (JPEG, PNG, ...; searched recursively).

    Resumes from the cached training state (or from OUT's weights), trains the VQ-VAE, then
    the prior on its indices, and writes OUT. Run under `torchrun` for several processes/GPUs.
    """
    _run_training("image", data, out, config, cache, **options)


@train.command("audio")
@_train_options("audio")
@click.option(
    "--music/--no-music",
    default=None,
    help="Add the Debian soundtracks and many-voice speech (downloaded once with apt-get, then cached) [yes].",
)
def train_audio(data, out, config, cache, **options) -> None:
    """Train an audio model on the sounds in DATA (WAV, FLAC, OGG, ...; searched recursively).

    Resumes from the cached training state (or from OUT's weights), trains the VQ-VAE, then
    the prior on its indices, and writes OUT. Run under `torchrun` for several processes/GPUs.
    """
    _run_training("audio", data, out, config, cache, **options)
