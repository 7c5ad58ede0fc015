"""Seeing inside the codec: `inspect` (where a file's bits go) and `sample` (draws from a prior)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from cli.main import _check_output, _read, _require_extra, _write_atomic, device_option, main
from vqcodec.catalog import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Report PNG [SRC.inspect.png].")
@click.option("--json", "as_json", is_flag=True, help="Print the numbers as JSON (and write no picture).")
@device_option()
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing report.")
def inspect(src: Path, output: Path | None, as_json: bool, device: str, force: bool) -> None:
    """Show where the bits of a .vqc file go: per region (images) or over time (audio), per
    stage, and codebook usage, from the prior's probabilities of the coded indices."""
    _require_extra("inspect")
    from vqcodec.tools.inspection import inspect_file, plot_report

    result = inspect_file(_read(src), device)
    summary = result.summary()
    if as_json:
        click.echo(json.dumps(summary))
        return
    out = output or src.with_name(src.name + ".inspect.png")
    _check_output(src, out, force)
    _write_atomic(out, lambda f: plot_report(result, f, f"{src.name}: {summary['file_bits'] / 8:,.0f} bytes"))
    click.echo(
        f"{src} -> {out}: payload {summary['payload_bits']:,} bits, prior's estimate "
        f"{summary['information_bits']:,.0f} bits; bits per stage {summary['bits_per_stage']}"
    )


@main.group()
def sample() -> None:
    """Draw new images or sounds from a model's prior."""


def _size(value: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"'{value}' is not WIDTHxHEIGHT") from None
    if not (0 < width <= 4096 and 0 < height <= 4096):
        raise click.BadParameter("each side must be 1..4096")
    return width, height


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' * (n != 1)}"


@sample.command("image")
@click.option("-n", "count", type=click.IntRange(1, 256), default=8, show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("samples"))
@click.option("-q", "--quality", type=int, default=None, help="Stages to sample [all].")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", default="256x256", show_default=True, help="WIDTHxHEIGHT")
@click.option("-m", "--model", default=DEFAULT_IMAGE_MODEL, show_default=True)
@device_option()
def sample_image(count, output, quality, temperature, seed, size, model, device) -> None:
    """PNG images sampled from the prior, and a contact sheet of them (sheet.png)."""
    from PIL import Image

    from vqcodec.tools.sampling import contact_sheet, sample_images

    width, height = _size(size)
    images = sample_images(model, count, width, height, quality, temperature, seed, device)
    output.mkdir(parents=True, exist_ok=True)
    for i, pixels in enumerate(images):
        _write_atomic(output / f"sample_{i:03d}.png", lambda f, p=pixels: Image.fromarray(p).save(f, format="PNG"))
    _write_atomic(output / "sheet.png", lambda f: contact_sheet(images).save(f, format="PNG"))
    click.echo(f"{_count(count, 'image')} of {width}x{height} and sheet.png in {output}")


@sample.command("audio")
@click.option("-n", "count", type=click.IntRange(1, 64), default=4, show_default=True)
@click.option("-o", "--output", type=click.Path(file_okay=False, path_type=Path), default=Path("samples"))
@click.option("--seconds", type=click.FloatRange(0.05, 600), default=5.0, show_default=True)
@click.option("--stages", type=int, default=None, help="Stages to sample [all].")
@click.option("--temperature", type=float, default=1.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("-m", "--model", default=DEFAULT_AUDIO_MODEL, show_default=True)
@device_option()
def sample_audio(count, output, seconds, stages, temperature, seed, model, device) -> None:
    """WAV sounds sampled from the prior."""
    import soundfile

    from vqcodec.tools.sampling import sample_sounds

    sounds, rate = sample_sounds(model, count, seconds, stages, temperature, seed, device)
    output.mkdir(parents=True, exist_ok=True)
    for i, wave in enumerate(sounds):
        _write_atomic(output / f"sample_{i:03d}.wav", lambda f, w=wave: soundfile.write(f, w, rate, format="WAV"))
    click.echo(f"{_count(count, 'sound')} of {seconds:g} s at {rate} Hz in {output}")
