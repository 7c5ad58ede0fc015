"""The two media behind `MediaCodec`: images (tiles of a grid of indices) and sound (segments of
each stream). Light to import: the networks load only when a method codes something."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import IO, Any

from vqcodec import catalog, container
from vqcodec.codec.base import Decoding, MediaCodec, ProgressBar
from vqcodec.errors import BadInputError

# Pillow's format names of the suffixes decoding writes (lossless formats only).
IMAGE_FORMATS = {".png": "PNG", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM"}
# libsndfile's format and sample type of the suffixes decoding writes.
AUDIO_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS")}


class ImageCodec(MediaCodec):
    kind = "image"
    noun = "images"
    one = "an image"
    input_suffixes = frozenset(catalog.IMAGE_SUFFIXES)
    input_magics = ()  # Pillow recognises its formats itself
    default_model = catalog.DEFAULT_IMAGE_MODEL
    rate_options = ("quality", "max_bytes", "max_bpp", "min_psnr")
    flag_options = ("keep_metadata",)
    output_suffixes = tuple(IMAGE_FORMATS)
    level_option = "quality"
    limit_option = "max_pixels"
    can_compare = True

    def encode(
        self, src: bytes | Path, options: dict, model: str, device: str, progress: ProgressBar | None = None
    ) -> tuple[bytes, str]:
        from PIL import Image

        from vqcodec.codec import image as image_codec
        from vqcodec.media.image import load_image

        target = {name: options.get(name) for name in ("max_bytes", "max_bpp", "min_psnr")}
        targeted = any(value is not None for value in target.values())
        meta = catalog.model_meta(model, self.kind)
        quality = options.get("quality") or catalog.default_quality(meta)
        if not targeted:
            catalog.check_quality(meta, quality)
        keep_metadata = bool(options.get("keep_metadata"))
        if isinstance(src, bytes):
            try:
                image = load_image(Image.open(io.BytesIO(src)), keep_metadata)
            except OSError as e:
                raise BadInputError(f"standard input is not a readable image or sound ({e})") from None
        else:
            image = load_image(src, keep_metadata)
        height, width = image.pixels.shape[:2]  # no need to parse the file made
        reached = ""
        if target["max_bpp"] is not None:
            target["max_bytes"] = int(target["max_bpp"] * width * height / 8)
        if targeted:
            data, quality, psnr = image_codec.compress_to_target(
                image, target["max_bytes"], target["min_psnr"], model, device
            )
            reached = "" if psnr is None else f", PSNR {psnr:.2f} dB"
            top = container.unpack(data)[0].quality  # a size target may give some tiles one stage more
            extra = top - catalog.quality_levels(meta)[quality - 1][1]
        else:
            data, extra = image_codec.compress(image, quality=quality, model=model, device=device), 0
        bpp = len(data) * 8 / (width * height)
        kept = "".join(f", {name} {len(value):,} bytes kept" for name, value in image.metadata)
        level = _level_named(meta, quality, extra)
        return data, f"{width}x{height}, {level}, {len(data):,} bytes, {bpp:.4f} bpp{reached}{kept}"

    def unpack(self, data: bytes) -> tuple[container.Header, list[container.Chunk]]:
        return container.unpack(data)

    def describe(self, header: container.Header, size: int) -> dict:
        return {
            "width": header.width,
            "height": header.height,
            "quality": header.quality,
            "grayscale": bool(header.flags & container.FLAG_GRAY),
            "alpha_dropped": bool(header.flags & container.FLAG_ALPHA_DROPPED),
            "converted_to_srgb": bool(header.flags & container.FLAG_CONVERTED_TO_SRGB),
            "bpp": round(size * 8 / (header.width * header.height), 5),
        }

    def stages_for(self, data: bytes, level: float) -> int:
        return min(int(level), container.unpack(data)[0].quality)

    def decode_to(self, data: bytes, out: IO[bytes], suffix: str, how: Decoding) -> tuple[str, Any]:
        from vqcodec.codec.image import decompress
        from vqcodec.media.image import image_file_bytes

        self.check_suffix(suffix)
        image = decompress(data, how.device, int(how.limit or container.DEFAULT_MAX_PIXELS), how.stages)
        out.write(image_file_bytes(image, IMAGE_FORMATS[suffix]))
        kept = f", {how.stages} stage{'s' * (how.stages != 1)}" if how.stages else ""
        return f"{image.width}x{image.height}{kept}", image

    def upgrade(self, data: bytes, device: str = "auto") -> bytes:
        from vqcodec.codec.image import upgrade

        return upgrade(data, device)

    def inspect(self, data: bytes, device: str = "auto"):
        from vqcodec.tools.inspection import inspect_image

        return inspect_image(data, device)


def _level_named(meta: dict, quality: int, extra: int) -> str:
    """The level as `compress` prints it: "quality 4", with `extra` stages more in some tiles
    ("quality 4-5 by tile") and a family's other model that coded it ("quality 2 (img2-16)")."""
    name = catalog.quality_levels(meta)[quality - 1][0]
    level = f"quality {quality}-{quality + extra} by tile" if extra else f"quality {quality}"
    return level if name == meta["name"] else f"{level} ({name})"


class AudioCodec(MediaCodec):
    kind = "audio"
    noun = "sound"
    one = "a sound"
    input_suffixes = frozenset(catalog.AUDIO_SUFFIXES)
    # First bytes of the audio containers libsndfile reads (for standard input).
    input_magics = (b"RIFF", b"RF64", b"fLaC", b"OggS", b"FORM", b"ID3", b"\xff\xfb")
    default_model = catalog.DEFAULT_AUDIO_MODEL
    rate_options = ("bitrate", "max_bytes")
    output_suffixes = tuple(AUDIO_FORMATS)
    level_option = "bitrate"
    limit_option = "max_hours"

    def encode(
        self, src: bytes | Path, options: dict, model: str, device: str, progress: ProgressBar | None = None
    ) -> tuple[bytes, str]:
        import soundfile

        bitrate, max_bytes = options.get("bitrate", catalog.DEFAULT_BITRATE), options.get("max_bytes")
        meta = catalog.model_meta(model, self.kind)
        try:  # to check the bitrate and size the progress bar; unreadable input is the encoder's to report
            found = soundfile.info(io.BytesIO(src) if isinstance(src, bytes) else str(src))
            seconds, channels = found.duration, found.channels
        except Exception:  # noqa: BLE001
            seconds, channels = 0.0, 1
        catalog.stages_for_bitrate(bitrate, channels, catalog.num_stages(meta), catalog.kbps_per_stage(meta["net"]))
        from vqcodec.codec import audio as audio_codec  # (torch: after the checks, which answer without it)

        with (progress or _no_bar)(int(seconds / 10) + 1) as bar:
            if max_bytes is None:
                header, chunks, _ = audio_codec.encode_audio(src, bitrate, model, device, bar.update)
                data, stages = container.pack_audio(header, chunks), "+".join(map(str, header.stages))
            else:
                data, stage_kbps = audio_codec.compress_audio_to_size(src, max_bytes, model, device, bar.update)
                header = container.unpack_audio(data)[0]
                stages = f"up to {'+'.join(map(str, header.stages))} ({stage_kbps:.2f} kbps before the prior)"
        kbps = container.audio_bitrate(header, len(data))
        return data, (
            f"{header.length / header.sample_rate:.2f} s, {header.sample_rate} Hz, {header.channels} ch, "
            f"stages {stages}, {len(data):,} bytes, {kbps:.2f} kbps"
        )

    def unpack(self, data: bytes) -> tuple[container.AudioHeader, list[container.Chunk]]:
        return container.unpack_audio(data)

    def describe(self, header: container.AudioHeader, size: int) -> dict:
        return {
            "duration_s": round(header.length / header.sample_rate, 3),
            "sample_rate": header.sample_rate,
            "channels": header.channels,
            "samples": header.length,
            "stages": list(header.stages),
            "mid_side": bool(header.flags & container.FLAG_MID_SIDE),
            "kbps": round(container.audio_bitrate(header, size), 3),
        }

    def stages_for(self, data: bytes, level: float) -> tuple[int, ...]:
        header, _ = container.unpack_audio(data)
        meta = catalog.model_meta(header.model_name, "audio")
        levels, stage_kbps = catalog.num_stages(meta), catalog.kbps_per_stage(meta["net"])
        wanted = catalog.stages_for_bitrate(level, header.channels, levels, stage_kbps)[0]
        return tuple(min(w, q) for w, q in zip(wanted, header.stages, strict=True))

    def decode_to(self, data: bytes, out: IO[bytes], suffix: str, how: Decoding) -> tuple[str, Any]:
        import numpy as np
        import soundfile

        from vqcodec.codec.audio import decode_audio_blocks

        self.check_suffix(suffix)
        fmt, subtype = AUDIO_FORMATS[suffix]
        max_seconds = (how.limit or container.DEFAULT_MAX_SECONDS / 3600) * 3600
        bars = []  # made when writing starts: the blocks are decoded lazily, segment by segment
        header, blocks = decode_audio_blocks(
            data, how.device, max_seconds, lambda n: bars[0].update(n), stages=how.stages
        )
        with (how.progress or _no_bar)(header.segments) as bar:
            bars.append(bar)
            with soundfile.SoundFile(out, "w", header.sample_rate, header.channels, subtype, format=fmt) as sf:
                for block in blocks:
                    sf.write(np.clip(block, -1.0, 1.0))
        kept = f", stages {'+'.join(map(str, how.stages))}" if how.stages else ""
        seconds = header.length / header.sample_rate
        return f"{seconds:.2f} s, {header.sample_rate} Hz, {header.channels} ch{kept}", None

    def upgrade(self, data: bytes, device: str = "auto") -> bytes:
        from vqcodec.codec.audio import upgrade_audio

        return upgrade_audio(data, device)

    def inspect(self, data: bytes, device: str = "auto"):
        from vqcodec.tools.inspection import inspect_audio

        return inspect_audio(data, device)

    def tune_process(self) -> None:
        from vqcodec.codec.allocator import tune_allocator

        tune_allocator()


class _Silent:
    def update(self, n: int) -> None:
        pass


@contextlib.contextmanager
def _no_bar(total: int):
    yield _Silent()
