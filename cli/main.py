"""The `vqcodec` command line.

Exit statuses: 0 success, 1 unexpected error, 2 usage error, 3 unreadable or unsupported
input, 4 corrupt .vqc file, 5 model not installed, 130 interrupted.
"""

from __future__ import annotations

import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import click
from PIL import Image

from vqcodec import codec, container
from vqcodec.errors import BadInputError, UsageError, VqcodecError
from vqcodec.media import load_image
from vqcodec.registry import DEFAULT_IMAGE_MODEL

IMAGE_OUTPUT_SUFFIXES = {".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm"}


def _fail(err: VqcodecError) -> None:
    click.echo(f"vqcodec: error: {err}", err=True)
    sys.exit(err.exit_code)


def _check_output(src: Path, out: Path, force: bool) -> None:
    if out.exists() and src.exists() and out.resolve() == src.resolve():
        raise UsageError(f"output {out} is the input file")
    if out.exists() and not force:
        raise UsageError(f"{out} exists (use --force to overwrite)")
    if out.is_dir():
        raise UsageError(f"{out} is a directory")


def _write_atomic(out: Path, write) -> None:
    """Write through a temporary file in the same folder, then rename: never a partial file."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _Group(click.Group):
    def invoke(self, ctx):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            try:
                return super().invoke(ctx)
            except VqcodecError as e:
                _fail(e)
            except KeyboardInterrupt:
                click.echo("vqcodec: interrupted", err=True)
                sys.exit(130)
            finally:
                for w in caught:
                    if issubclass(w.category, UserWarning):
                        click.echo(f"vqcodec: warning: {w.message}", err=True)


@click.group(cls=_Group)
@click.version_option(package_name="vqcodec")
def main() -> None:
    """vqcodec: a learned image codec (VQ-VAE + integer-exact prior + range coding)."""


STDIO = Path("-")


def _emit(out: Path, data: bytes, force: bool, src: Path) -> None:
    """Write `data` to `out` (atomically), or to standard output for '-'."""
    if out == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _check_output(src, out, force)
    _write_atomic(out, lambda f: f.write(data))


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Output .vqc file ('-': standard output).",
)
@click.option("-q", "--quality", type=int, default=codec.DEFAULT_QUALITY, show_default=True, help="1 = smallest file.")
@click.option("-m", "--model", default=DEFAULT_IMAGE_MODEL, show_default=True, help="Model name or .safetensors path.")
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
def compress(src: Path, output: Path | None, quality: int, model: str, device: str, force: bool) -> None:
    """Compress an image (PNG, JPEG, WebP, TIFF, BMP, ...) into a .vqc file ('-': standard input)."""
    out = output or (STDIO if src == STDIO else src.with_suffix(".vqc"))
    if out != STDIO:
        _check_output(src, out, force)
    if src == STDIO:
        try:
            image = load_image(Image.open(io.BytesIO(sys.stdin.buffer.read())))
        except OSError as e:
            raise BadInputError(f"standard input is not a readable image ({e})") from None
    else:
        image = load_image(src)
    data = codec.compress(image, quality=quality, model=model, device=device)
    _emit(out, data, force, src)
    height, width = image.pixels.shape[:2]  # no need to parse the file just made
    bpp = len(data) * 8 / (width * height)
    summary = f"{src} -> {out}: {width}x{height}, quality {quality}, {len(data):,} bytes, {bpp:.4f} bpp"
    click.echo(summary, err=out == STDIO)


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="Output image, by its extension (default PNG; '-': PNG on standard output).",
)
@click.option("--device", default="auto", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file.")
@click.option(
    "--compare",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Original image: also print PSNR and MS-SSIM against it.",
)
def decompress(src: Path, output: Path | None, device: str, force: bool, compare: Path | None) -> None:
    """Decode a .vqc file into an image (PNG by default, beside the input as NAME.vqc.png)."""
    out = output or (STDIO if src == STDIO else src.with_name(src.name + ".png"))
    suffix = ".png" if out == STDIO else out.suffix.lower()
    if suffix not in IMAGE_OUTPUT_SUFFIXES:
        raise UsageError(f"cannot write '{suffix}' images: use one of {', '.join(sorted(IMAGE_OUTPUT_SUFFIXES))}")
    if out != STDIO:
        _check_output(src, out, force)
    coded = _read(src)
    image = codec.decompress(coded, device=device)
    fmt = {".tif": "TIFF", ".ppm": "PPM"}.get(suffix, suffix[1:].upper())
    buf = io.BytesIO()
    image.save(buf, format=fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    _emit(out, buf.getvalue(), force, src)
    click.echo(f"{src} -> {out}: {image.width}x{image.height}", err=out == STDIO)
    if compare:
        import numpy as np

        from vqcodec.bench import ms_ssim_rgb, psnr_rgb

        original = load_image(compare).pixels
        decoded = np.asarray(image.convert("RGB"))
        if original.shape != decoded.shape:
            raise UsageError(f"{compare} is {original.shape[1]}x{original.shape[0]}, not the decoded size")
        bpp = len(coded) * 8 / (image.width * image.height)
        msssim = f", MS-SSIM {ms_ssim_rgb(original, decoded):.4f}" if min(original.shape[:2]) > 160 else ""
        click.echo(f"{bpp:.4f} bpp, PSNR {psnr_rgb(original, decoded):.2f} dB{msssim}", err=out == STDIO)


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def info(src: Path, as_json: bool) -> None:
    """Show what is inside a .vqc file (without decoding it)."""
    data = _read(src)
    header, payloads, _ = container.unpack(data)
    pixels = header.width * header.height
    fields = {
        "file": str(src),
        "kind": container.KIND_NAMES[header.kind],
        "model": header.model_name,
        "model_hash": header.model_hash.hex(),
        "width": header.width,
        "height": header.height,
        "quality": header.quality,
        "grayscale": bool(header.flags & container.FLAG_GRAY),
        "alpha_dropped": bool(header.flags & container.FLAG_ALPHA_DROPPED),
        "chunks": len(payloads),
        "bytes": len(data),
        "header_bytes": len(data) - sum(len(p) for p in payloads),
        "bpp": round(len(data) * 8 / pixels, 5),
    }
    if as_json:
        click.echo(json.dumps(fields))
    else:
        for key, value in fields.items():
            click.echo(f"{key:>14}: {value}")


@main.group()
def train() -> None:
    """Train (or resume training of) a codec model."""


@train.command("image")
@click.option(
    "--data",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    required=True,
    help="Folder of training photos (searched recursively).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("models/img1.safetensors"),
    show_default=True,
    help="Model file to write (its stem is the model name).",
)
@click.option(
    "--cache",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Training state folder [default: ~/.cache/vqcodec/NAME].",
)
@click.option("--vqvae-minutes", type=float, default=60, show_default=True)
@click.option("--prior-minutes", type=float, default=20, show_default=True)
@click.option("--lr", type=float, default=4e-4, show_default=True, help="VQ-VAE learning rate (lower it to anneal).")
@click.option("--threads", type=int, default=None, help="CPU threads for torch.")
def train_image(
    data: Path,
    out: Path,
    cache: Path | None,
    vqvae_minutes: float,
    prior_minutes: float,
    lr: float,
    threads: int | None,
) -> None:
    """Resume the VQ-VAE from its cached state (or from OUT), train the prior, export OUT."""
    import torch

    from vqcodec.train_image import train_image_model

    if threads:
        torch.set_num_threads(threads)
    cache = cache or Path.home() / ".cache" / "vqcodec" / out.stem
    card = train_image_model(data, out, cache, vqvae_minutes, prior_minutes, name=out.stem, lr=lr)
    if card["prior_steps"]:
        click.echo(f"wrote {out} (VQ-VAE {card['vqvae_steps']} steps, prior {card['prior_steps']} steps)")
    else:
        click.echo(f"VQ-VAE at step {card['vqvae_steps']} (state in {cache}); no prior trained, nothing exported")


@main.group()
def bench() -> None:
    """Measure rate, quality and speed against other codecs."""


@bench.command("image")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("results/image"),
    show_default=True,
    help="Folder for the JSON results and plots.",
)
@click.option("-m", "--model", default=DEFAULT_IMAGE_MODEL, show_default=True)
@click.option("-q", "--quality", "qualities", type=int, multiple=True, help="vqcodec levels [default: all].")
@click.option("--baseline", "baselines", multiple=True, help="Only these baselines (JPEG, WebP, AVIF, 'JPEG XL').")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
def bench_image(
    folder: Path,
    output: Path,
    model: str,
    qualities: tuple[int, ...],
    baselines: tuple[str, ...],
    device: str,
) -> None:
    """Every image in FOLDER with vqcodec at each quality and the baselines over their range."""
    from vqcodec.bench import bench_images

    summary = bench_images(
        folder, output, model, device, list(qualities) or None, list(baselines) or None, progress=sys.stderr.isatty()
    )

    def fmt(v):
        return "no overlap" if v is None else f"{v:+.1f} %"

    for row in summary["bd_rate_vs_baselines"]:
        click.echo(
            f"BD-rate vs {row['baseline']:>8}: PSNR {fmt(row['bd_rate_psnr_percent'])}, "
            f"MS-SSIM {fmt(row['bd_rate_ms_ssim_percent'])}"
        )
    click.echo(f"results in {output}")


@bench.command("large")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("results/large.json"),
    show_default=True,
)
@click.option("-m", "--model", default=DEFAULT_IMAGE_MODEL, show_default=True)
@click.option("-q", "--quality", type=int, default=codec.DEFAULT_QUALITY, show_default=True)
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))
def bench_large_cmd(source: Path, output: Path, model: str, quality: int, device: str) -> None:
    """Time and peak memory of 1.5, 6 and 24 megapixel photos made by resizing SOURCE."""
    from vqcodec.bench import bench_large

    rows = bench_large(source, [(1500, 1000), (3000, 2000), (6000, 4000)], quality, model, device)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(rows, indent=1))
    for r in rows:
        click.echo(
            f"{r['width']}x{r['height']}: encode {r['encode_s']:.1f} s, decode {r['decode_s']:.1f} s, "
            f"peak memory {r['peak_rss_mb']:.0f} MB"
        )


def _read(path: Path) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


if __name__ == "__main__":
    main()
