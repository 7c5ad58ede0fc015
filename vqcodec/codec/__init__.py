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


def codec_for_input(src: bytes | Path) -> MediaCodec:
    """The codec of an input to compress: by its first bytes (standard input) or its suffix;
    images when neither says (Pillow reads more formats than their usual suffixes)."""
    if isinstance(src, bytes):
        found = (c for c in CODECS.values() if c.input_magics and src.startswith(c.input_magics))
    else:
        found = (c for c in CODECS.values() if src.suffix.lower() in c.input_suffixes)
    return next(found, CODECS["image"])
