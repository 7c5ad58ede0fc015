"""The `vqcodec` command line: images and audio, told apart by the input's name or content.

This module holds the group, the coding commands (compress, decompress, truncate, info) and
what every command shares (output checks, atomic writes, errors); `explore` (inspect, sample),
`training` (train) and `bench` hold the others, and `batch` runs many inputs.

Exit statuses: 0 success, 1 unexpected error, 2 usage error, 3 unreadable or unsupported
input, 4 corrupt .vqc file, 5 model or optional package not installed, 130 interrupted.

torch is imported only once a command has checked its options and inputs (`vqcodec.catalog`
knows the models without it), so help, `info` and every usage error answer at once.
"""

from __future__ import annotations

import atexit
import functools
import io
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path

import click

from vqcodec import container
from vqcodec.catalog import (
    DEFAULT_AUDIO_MODEL,
    DEFAULT_BITRATE,
    DEFAULT_IMAGE_MODEL,
    DEFAULT_QUALITY,
)
from vqcodec.codec import CODECS, codec_for, codec_for_input
from vqcodec.codec.base import Decoding
from vqcodec.errors import BadInputError, MissingExtraError, UsageError, VqcodecError

from . import batch

# The codecs' options (`MediaCodec.rate_options`, `limit_option`, ...) as the command line spells them.
FLAGS = {
    "quality": "-q/--quality",
    "bitrate": "-b/--bitrate",
    "max_bytes": "--size",
    "max_bpp": "--bpp",
    "min_psnr": "--psnr",
    "keep_metadata": "--keep-metadata",
    "max_pixels": "--max-pixels",
    "max_hours": "--max-hours",
}


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


def _write_atomic(out: Path, write):
    """Write through a temporary file in the same folder, then rename: never a partial file.
    Returns what `write` returns."""
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            result = write(f)
        umask = os.umask(0)  # mkstemp makes the file private; give it the usual permissions
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return result


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
    """vqcodec: a learned image and audio codec (VQ-VAE + integer-exact prior + range coding)."""


STDIO = Path("-")
SIZE = click.types.FuncParamType(lambda value: _parse_size(value))
POSITIVE = click.FloatRange(0, min_open=True)


def device_option(default: str = "auto"):
    """The --device option every command that runs a network has."""
    return click.option("--device", default=default, show_default=True, type=click.Choice(["auto", "cpu", "cuda"]))


JOBS = click.option("-j", "--jobs", type=click.IntRange(1), default=1, help="Worker processes for many inputs [1].")
# The optional packages each command needs, checked before it starts any work.
EXTRAS = {
    "bench image": ("imagecodecs", "matplotlib"),
    "bench audio": ("av", "pesq", "pystoi", "matplotlib"),
    "inspect": ("matplotlib",),
}


def _require_extra(command: str) -> None:
    import importlib.util

    missing = [name for name in EXTRAS[command] if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingExtraError(f"'vqcodec {command}' needs {', '.join(missing)}: pip install 'vqcodec[bench]'")


def _no_binary_to_terminal(out: Path, force: bool, what: str) -> None:
    """As gzip and zstd do: binary output never lands on a terminal unless forced."""
    if out == STDIO and sys.stdout.isatty() and not force:
        raise UsageError(f"not writing {what} to a terminal: give -o FILE, redirect the output, or use --force")


def _not_for(kind: str, given: dict[str, object], instead: str) -> None:
    """A usage error for options given that do not apply to this kind of input."""
    wrong = [name for name, value in given.items() if value is not None]
    if wrong:
        raise UsageError(f"{' and '.join(wrong)} do{'es' * (len(wrong) == 1)} not apply to {kind}: {instead}")


def _emit(out: Path, data: bytes, force: bool, src: Path) -> None:
    """Write `data` to `out` (atomically), or to standard output for '-'."""
    if out == STDIO:
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
        return
    _check_output(src, out, force)
    _write_atomic(out, lambda f: f.write(data))


def _progress_bar(total: int, label: str):
    """A tqdm bar on a terminal, nothing otherwise (logs and pipes stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=label, unit="seg", disable=not sys.stderr.isatty() or total < 2, leave=False)


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(allow_dash=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True, path_type=Path),
    help="Output .vqc file ('-': standard output); for several inputs or a folder, the output folder.",
)
@click.option(
    "-q",
    "--quality",
    type=int,
    help="Images: quality level, 1 = smallest file (the stages coded; a family's also picks its model) "
    f"[the model's default: for img2's family its level nearest 0.4 bpp; {DEFAULT_QUALITY} for a model naming none].",
)
@click.option("--size", "max_bytes", type=SIZE, help="The best file of at most this size (bytes; k, M: 1000s).")
@click.option("--bpp", "max_bpp", type=POSITIVE, help="Images: the best file within this bpp.")
@click.option("--psnr", "min_psnr", type=float, help="Images: the smallest file reaching this PSNR (dB).")
@click.option(
    "--keep-metadata",
    is_flag=True,
    default=None,
    help="Images: store the EXIF, XMP and ICC profile and write them back on decoding (an RGB or gray profile "
    "is then kept with the pixels instead of converting them to sRGB). Default: dropped.",
)
@click.option(
    "-b",
    "--bitrate",
    type=float,
    help=f"Sound: kbps before the prior's saving (1.5, 3, 6, 12; the file comes out smaller) [{DEFAULT_BITRATE:g}].",
)
@click.option(
    "-m",
    "--model",
    default=None,
    help=f"Model name or .safetensors path [{DEFAULT_IMAGE_MODEL} / {DEFAULT_AUDIO_MODEL}].",
)
@device_option()
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file (or write to a terminal).")
@JOBS
def compress(
    sources: tuple[Path, ...],
    output: Path | None,
    quality: int | None,
    max_bytes: int | None,
    max_bpp: float | None,
    min_psnr: float | None,
    keep_metadata: bool | None,
    bitrate: float | None,
    model: str | None,
    device: str,
    force: bool,
    jobs: int,
) -> None:
    """Compress images (PNG, JPEG, WebP, TIFF, ...) or sounds (WAV, FLAC, OGG, ...) into .vqc
    files: one file ('-': standard input, written to standard output unless -o is given), or
    several and folders (searched recursively), each beside its input or under -o FOLDER."""
    options = {"quality": quality, "max_bytes": max_bytes, "max_bpp": max_bpp, "min_psnr": min_psnr}
    options |= {"keep_metadata": keep_metadata, "bitrate": bitrate}
    given = {name: value for name, value in options.items() if value is not None}
    common = {"options": given, "model": model, "device": device, "force": force}
    if len(sources) == 1 and not sources[0].is_dir():
        _compress_one(sources[0], output, **common)
        return
    suffixes = set().union(*(media.input_suffixes for media in CODECS.values()))
    files = batch.expand(_many_inputs(sources, output), suffixes, output)
    found = {codec_for_input(src) for src, _ in files}
    unused = [FLAGS[name] for name in given if not any(name in m.rate_options + m.flag_options for m in found)]
    if unused:
        nouns = " and ".join(sorted(m.noun for m in found))
        _not_for("these inputs", dict.fromkeys(unused, True), f"they are all {nouns}")
    files = [(src, base.with_suffix(".vqc")) for src, base in files]
    batch.check_distinct([out for _, out in files])
    sys.exit(batch.run(files, functools.partial(_compress_its_own, **common, progress=False), jobs, "compressed"))


def _many_inputs(sources: tuple[Path, ...], output: Path | None) -> tuple[Path, ...]:
    if STDIO in sources:
        raise UsageError("standard input ('-') is for a single input")
    if output == STDIO or (output is not None and output.exists() and not output.is_dir()):
        raise UsageError(f"with several inputs or a folder, -o names an output folder, not {output}")
    return sources


def _compress_one(src: Path, output: Path | None, force: bool, **coding) -> None:
    out = output or (STDIO if src == STDIO else src.with_suffix(".vqc"))
    if out != STDIO and src != STDIO:
        out, summary = _compress_file(src, out, force, **coding)
        click.echo(f"{src} -> {out}: {summary}")
        return
    media = None if src == STDIO else _checked_options(src, coding["options"])  # (stdin's: once read)
    if out != STDIO:
        _check_output(src, out, force)
    _no_binary_to_terminal(out, force, "a .vqc file")
    if src != STDIO and not src.exists():
        raise BadInputError(f"{src}: no such file")
    source = sys.stdin.buffer.read() if src == STDIO else src
    data, summary = _compress_source(source, media or _checked_options(source, coding["options"]), **coding)
    _emit(out, data, force, src)
    click.echo(f"{src} -> {out}: {summary}", err=out == STDIO)


def _compress_its_own(src: Path, out: Path, options: dict, **rest) -> tuple[Path, str]:
    """One of many inputs, given those of the options that its medium takes (a folder of photos
    and sounds takes -q for the one and -b for the other)."""
    media = codec_for_input(src)
    own = {name: value for name, value in options.items() if name in media.rate_options + media.flag_options}
    return _compress_file(src, out, options=own, **rest)


def _compress_file(src: Path, out: Path, force: bool, **coding) -> tuple[Path, str]:
    """Code the file `src` into `out` (written atomically): (out, summary)."""
    media = _checked_options(src, coding["options"])
    _check_output(src, out, force)
    if not src.exists():  # before the options, which need the model's metadata
        raise BadInputError(f"{src}: no such file")
    data, summary = _compress_source(src, media, **coding)
    _write_atomic(out, lambda f: f.write(data))
    return out, summary


def _checked_options(src: bytes | Path, options: dict):
    """The codec of `src`, once the options given are ones it takes, with one rate at most."""
    media = codec_for_input(src)
    takes = media.rate_options + media.flag_options
    wrong = {FLAGS[name]: value for name, value in options.items() if name not in takes}
    _not_for(media.noun, wrong, f"for {media.noun}, give {' or '.join(FLAGS[name] for name in takes)}")
    rates = [FLAGS[name] for name in options if name in media.rate_options]
    if len(rates) > 1:
        raise UsageError(f"give one of {', '.join(FLAGS[name] for name in media.rate_options)}")
    return media


def _compress_source(
    src: bytes | Path, media, options: dict, model: str | None, device: str, progress: bool = True
) -> tuple[bytes, str]:
    """Code an input (a path, or the bytes of standard input) with its medium's codec, `media`
    (from `_checked_options`)."""
    media.tune_process()
    bars = functools.partial(_progress_bar, label="compressing") if progress else None
    return media.encode(src, options, model or media.default_model, device, bars)


def _parse_size(value: str) -> int:
    """Bytes, with an optional k or M (1000s): '20k' -> 20000."""
    text = value.strip()
    scale = {"k": 1000, "K": 1000, "M": 1000**2}.get(text[-1:], 1)
    try:
        size = float(text[:-1] if scale > 1 else text) * scale
    except ValueError:
        raise click.BadParameter(f"'{value}' is not a size (bytes, or with k or M: 20k, 1.5M)") from None
    if size < 1:
        raise click.BadParameter("a size must be at least 1 byte")
    return int(size)


@main.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(allow_dash=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(allow_dash=True, path_type=Path),
    help="Output file, by its extension (default PNG for an image, WAV for a sound; '-': standard output); "
    "for several inputs or a folder, the output folder.",
)
@device_option()
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file (or write to a terminal).")
@click.option("-q", "--quality", type=click.IntRange(1), help="Images: decode only the first Q stages [all].")
@click.option("-b", "--bitrate", type=POSITIVE, help="Sound: decode only the stages of this many kbps [all].")
@click.option(
    "--compare",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Images: the original, to print PSNR and MS-SSIM against it (one input).",
)
@click.option(
    "--max-pixels",
    type=click.IntRange(1),
    help="Images: refuse a file whose header claims more pixels (checked before anything is allocated) "
    f"[{container.DEFAULT_MAX_PIXELS:,}].",
)
@click.option(
    "--max-hours",
    type=click.FloatRange(0, min_open=True),
    help=f"Sound: refuse a file whose header claims a longer duration [{container.DEFAULT_MAX_SECONDS / 3600:g}].",
)
@JOBS
def decompress(
    sources: tuple[Path, ...],
    output: Path | None,
    device: str,
    force: bool,
    quality: int | None,
    bitrate: float | None,
    compare: Path | None,
    max_pixels: int | None,
    max_hours: float | None,
    jobs: int,
) -> None:
    """Decode .vqc files: an image (PNG by default, beside the input as NAME.vqc.png) or a
    sound (WAV by default, NAME.vqc.wav, at the source's rate, channels and length); several
    files and folders (searched recursively for .vqc files) go beside their inputs or under
    -o FOLDER."""
    limits = {"max_pixels": max_pixels, "max_hours": max_hours, "quality": quality, "bitrate": bitrate}
    if len(sources) == 1 and not sources[0].is_dir():
        src = sources[0]
        coded = _read(src)
        media = codec_for(coded)
        default = STDIO if src == STDIO else src.with_name(src.name + media.output_suffixes[0])
        out = output or default
        if out != STDIO:
            _check_output(src, out, force)
        _no_binary_to_terminal(out, force, media.one)
        if not media.can_compare:
            _not_for(media.noun, {"--compare": compare}, "it compares images")
        summary, image = _decode_to(coded, src, out, device, force, **limits)
        click.echo(f"{src} -> {out}: {summary}", err=out == STDIO)
        if compare:
            _compare(compare, image, len(coded), err=out == STDIO)
        return
    _not_for("several inputs", {"--compare": compare}, "give one file to compare")
    files = batch.expand(_many_inputs(sources, output), {".vqc"}, output)
    batch.check_distinct([base for _, base in files])
    work = functools.partial(_decompress_file, device=device, force=force, **limits)
    sys.exit(batch.run(files, work, jobs, "decompressed"))


def _decompress_file(src: Path, base: Path, device: str, force: bool, **limits) -> tuple[Path, str]:
    """Decode the .vqc file `src` beside `base` (NAME.vqc.png or NAME.vqc.wav): (out, summary)."""
    coded = _read(src)
    out = base.with_name(base.name + codec_for(coded).output_suffixes[0])
    _check_output(src, out, force)
    return out, _decode_to(coded, src, out, device, force, progress=False, **limits)[0]


def _decode_to(coded: bytes, src: Path, out: Path, device: str, force: bool, progress: bool = True, **options):
    """Decode `coded` into `out` (a checked path or standard output): (summary, the image or None).
    `options` are the command's -q, -b, --max-pixels and --max-hours."""
    media = codec_for(coded)
    stages = _stages_to_keep(coded, media, options["quality"], options["bitrate"])
    _only_for(media, {name: options[name] for name in ("max_pixels", "max_hours")}, media.limit_option)
    suffix = media.output_suffixes[0] if out == STDIO else out.suffix.lower()
    media.check_suffix(suffix)
    media.tune_process()

    bars = functools.partial(_progress_bar, label="decompressing") if progress else None
    how = Decoding(device, stages, options[media.limit_option], bars)

    def decode(f) -> tuple[str, object]:
        return media.decode_to(coded, f, suffix, how)

    if out != STDIO:
        return _write_atomic(out, decode)
    buf = io.BytesIO()
    decoded = decode(buf)
    _emit(out, buf.getvalue(), force, src)
    return decoded


def _only_for(media, options: dict, own: str) -> None:
    """A usage error for each of `options` that is not `own`, the option of this file's medium."""
    wrong = {FLAGS[name]: value for name, value in options.items() if name != own}
    _not_for(media.noun, wrong, f"{FLAGS[own]} is the option for {media.noun}")


def _stages_to_keep(coded: bytes, media, quality: int | None, bitrate: float | None) -> int | tuple[int, ...] | None:
    """The stages that -q (images) or -b (sound) asks to keep of the file `coded`, whose codec
    is `media` (None: all), checked."""
    levels = {"quality": quality, "bitrate": bitrate}
    _only_for(media, levels, media.level_option)
    level = levels[media.level_option]
    return None if level is None else media.stages_for(coded, level)


def _compare(original_path: Path, image, coded_bytes: int, err: bool) -> None:
    import numpy as np

    from vqcodec.bench.image import ms_ssim_rgb, psnr_rgb
    from vqcodec.media.image import load_image

    original = load_image(original_path).pixels
    decoded = np.asarray(image.convert("RGB"))
    if original.shape != decoded.shape:
        raise UsageError(f"{original_path} is {original.shape[1]}x{original.shape[0]}, not the decoded size")
    bpp = coded_bytes * 8 / (image.width * image.height)
    msssim = f", MS-SSIM {ms_ssim_rgb(original, decoded):.4f}" if min(original.shape[:2]) > 160 else ""
    click.echo(f"{bpp:.4f} bpp, PSNR {psnr_rgb(original, decoded):.2f} dB{msssim}", err=err)


@main.command()
@click.argument("src", type=click.Path(allow_dash=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    required=True,
    type=click.Path(allow_dash=True, dir_okay=False, path_type=Path),
    help="The smaller .vqc file ('-': standard output).",
)
@click.option("-q", "--quality", type=click.IntRange(1), help="Images: keep the first Q stages.")
@click.option("-b", "--bitrate", type=POSITIVE, help="Sound: keep the stages of this many kbps.")
@click.option("-f", "--force", is_flag=True, help="Overwrite an existing output file (or write to a terminal).")
def truncate(src: Path, output: Path, quality: int | None, bitrate: float | None, force: bool) -> None:
    """Rewrite a .vqc file with fewer stages: a smaller file of lower quality, made without
    decoding or encoding anything (no model runs, no generation loss). It decodes as the
    original does with `decompress -q Q` (or -b). A file of format version 1 is first re-coded
    stage by stage from its indices (the model's prior runs, not its networks)."""
    data = _read(src)
    media = codec_for(data)
    stages = _stages_to_keep(data, media, quality, bitrate)
    if stages is None:
        raise UsageError("give the stages to keep: -q/--quality for an image, -b/--bitrate for a sound")
    if output != STDIO:
        _check_output(src, output, force)
    _no_binary_to_terminal(output, force, "a .vqc file")
    upgraded = container.check_magic(data) < container.VERSION
    scalable = media.upgrade(data) if upgraded else data
    smaller = container.truncate(scalable, stages)
    _emit(output, smaller, force, src)
    kept = stages if isinstance(stages, int) else "+".join(map(str, stages))
    note = " (re-coded from format version 1, the same indices)" if upgraded else ""
    click.echo(f"{src} -> {output}: stages {kept}, {len(data):,} -> {len(smaller):,} bytes{note}", err=output == STDIO)


@main.command()
@click.argument("src", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
def info(src: Path, as_json: bool) -> None:
    """Show what is inside a .vqc file (without decoding it)."""
    data = _read(src)
    fields = {"file": str(src), **codec_for(data).info(data)}
    if as_json:
        click.echo(json.dumps(fields))
    else:
        for key, value in fields.items():
            click.echo(f"{key:>14}: {value}")


def _read(path: Path) -> bytes:
    if path == STDIO:
        return sys.stdin.buffer.read()
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"{path}: no such file") from None
    except OSError as e:
        raise UsageError(f"{path}: {e.strerror}") from None


# The other commands live in their own modules and join `main` when imported.
from cli import bench, explore, training  # noqa: E402, F401


def run() -> None:
    """The `vqcodec` console script: `main`, then a quick exit.

    With torch loaded, the interpreter's teardown (freeing every module and object one by
    one) takes about 0.4 s on this project's 2-core CPU, as long as coding 5 seconds of audio,
    and does nothing a finished command needs: the output is written and renamed by then. So
    once the command is done, the exit handlers run (atexit: whatever a library registered for
    exit still happens), the output streams are flushed, and the process ends there.
    `python -m cli.main` runs `main` with the usual exit (for profilers that write at exit)."""
    try:
        main()
        code: object = 0
    except SystemExit as done:
        code = done.code
    if code is not None and not isinstance(code, int):  # sys.exit("message"), as Python does it
        print(code, file=sys.stderr)
        code = 1
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe (`vqcodec info x | head`): nothing more to do
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    # The group of this file imported as cli.main, which the command modules joined (this copy,
    # __main__, is another module: they never saw it).
    from cli.main import main as every_command

    every_command()
