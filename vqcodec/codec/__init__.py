"""The codec stage: a medium's input to a .vqc file and back (`image`, `audio`), and the one
table from a file's kind to its codec that every kind-blind caller uses."""

from __future__ import annotations

from pathlib import Path

from vqcodec import container
from vqcodec.codec.base import MediaCodec
from vqcodec.codec.kinds import AudioCodec, ImageCodec

CODECS: dict[str, MediaCodec] = {codec.kind: codec for codec in (ImageCodec(), AudioCodec())}


def codec_for(data: bytes) -> MediaCodec:
    """The codec of a .vqc file (from its header's kind; a foreign or damaged file raises)."""
    return CODECS[container.kind_of(data)]


def codec_for_path(path: Path) -> MediaCodec | None:
    """The codec of an input file by its suffix, or None when no medium takes it."""
    suffix = path.suffix.lower()
    return next((c for c in CODECS.values() if suffix in c.input_suffixes), None)
