"""`vqcodec bench`: rate-distortion against the baselines, long recordings and large images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.main import _require_extra, device_option, main
from vqcodec import catalog
from vqcodec.catalog import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL


def results_option(default: str, folder: bool = True):
    """-o: where a benchmark writes (a folder of JSON results and plots, or one JSON file)."""
    kind = click.Path(file_okay=not folder, dir_okay=folder, path_type=Path)
    what = "Folder for the JSON results and plots." if folder else "JSON file of the results."
    return click.option("-o", "--output", type=kind, default=Path(default), show_default=True, help=what)


@main.group()
def bench() -> None:
    """Measure rate, quality and speed against other codecs."""


@bench.command("image")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@results_option("results/image")
@click.option("-m", "--model", default=DEFAULT_IMAGE_MODEL, show_default=True)
@click.option("-q", "--quality", "qualities", type=int, multiple=True, help="vqcodec levels [default: all].")
@click.option("--baseline", "baselines", multiple=True, help="Only these baselines (JPEG, WebP, AVIF, 'JPEG XL').")
@device_option("cpu")
@click.option("--reuse", is_flag=True, help="Read back codecs whose results are already in the output folder.")
def bench_image(
    folder: Path,
    output: Path,
    model: str,
    qualities: tuple[int, ...],
    baselines: tuple[str, ...],
    device: str,
    reuse: bool,
) -> None:
    """Every image in FOLDER with vqcodec at each quality and the baselines over their range."""
    _require_extra("bench image")
    from vqcodec.bench.image import bench_images

    summary = bench_images(
        folder,
        output,
        model,
        device,
        list(qualities) or None,
        list(baselines) or None,
        progress=sys.stderr.isatty(),
        reuse=reuse,
    )

    def fmt(v):
        return "no overlap" if v is None else f"{v:+.1f} %"

    for row in summary["bd_rate_vs_baselines"]:
        click.echo(
            f"BD-rate vs {row['baseline']:>8}: PSNR {fmt(row['bd_rate_psnr_percent'])}, "
            f"MS-SSIM {fmt(row['bd_rate_ms_ssim_percent'])}"
        )
    click.echo(f"results in {output}")


@bench.command("audio")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@results_option("results/audio")
@click.option("-m", "--model", default=DEFAULT_AUDIO_MODEL, show_default=True)
@click.option("-b", "--bitrate", "bitrates", type=float, multiple=True, help="vqcodec kbps [default: 1.5 3 6 12].")
@device_option("cpu")
def bench_audio_cmd(folder: Path, output: Path, model: str, bitrates: tuple[float, ...], device: str) -> None:
    """Every sound in FOLDER with vqcodec at each bitrate and Opus at 6-24 kbps (speech: files named speech*)."""
    _require_extra("bench audio")
    from vqcodec.bench.audio import bench_audio
    from vqcodec.codec.allocator import tune_allocator

    tune_allocator()

    summary = bench_audio(folder, output, model, device, list(bitrates) or None, progress=sys.stderr.isatty())
    for name, groups in summary["codecs"].items():
        for group, r in groups.items():
            points = ", ".join(
                f"{k:.2f} kbps mel {m:.3f}" + (f" PESQ {p:.2f} STOI {s:.3f}" if group == "speech" else "")
                for k, m, p, s in zip(
                    r["kbps"], r["mel"], r.get("pesq", r["mel"]), r.get("stoi", r["mel"]), strict=True
                )
            )
            click.echo(f"{name} {group}: {points}")
    click.echo(f"results in {output}")


@bench.command("long")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@results_option("results/long.json", folder=False)
@click.option("--minutes", "minutes", type=float, multiple=True, help="Durations [default: 1 10 60].")
@click.option("-b", "--bitrate", type=float, default=6.0, show_default=True)
@click.option("-m", "--model", default=DEFAULT_AUDIO_MODEL, show_default=True)
def bench_long_cmd(source: Path, output: Path, minutes: tuple[float, ...], bitrate: float, model: str) -> None:
    """Time and peak memory of compress/decompress of long 44.1 kHz stereo files looped from SOURCE."""
    from vqcodec.bench.audio import bench_long
    from vqcodec.codec.allocator import tune_allocator

    tune_allocator()

    rows = bench_long(source, list(minutes) or [1, 10, 60], bitrate, model, output.parent / ".long-work")
    _save_rows(
        output,
        rows,
        "{minutes:g} min: encode {encode_realtime_x:.1f}x real time ({encode_peak_rss_mb:.0f} MB), "
        "decode {decode_realtime_x:.1f}x ({decode_peak_rss_mb:.0f} MB), {kbps:.2f} kbps",
    )


@bench.command("large")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@results_option("results/large.json", folder=False)
@click.option("-m", "--model", default=DEFAULT_IMAGE_MODEL, show_default=True)
@click.option("-q", "--quality", type=int, help="Level [the model's default].")
@device_option("cpu")
def bench_large_cmd(source: Path, output: Path, model: str, quality: int | None, device: str) -> None:
    """Time and peak memory of 1.5, 6 and 24 megapixel photos made by resizing SOURCE."""
    from vqcodec.bench.image import bench_large

    quality = quality or catalog.default_quality(catalog.model_meta(model, "image"))
    rows = bench_large(source, [(1500, 1000), (3000, 2000), (6000, 4000)], quality, model, device)
    line = "{width}x{height}: encode {encode_s:.1f} s, decode {decode_s:.1f} s, peak memory {peak_rss_mb:.0f} MB"
    _save_rows(output, rows, line)


def _save_rows(output: Path, rows: list[dict], line: str) -> None:
    """Write the rows of a timing bench as JSON and show each, as `line` formats it."""
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(rows, indent=1))
    for row in rows:
        click.echo(line.format(**row))
