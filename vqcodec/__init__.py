"""vqcodec: a learned image and audio codec.

>>> import vqcodec
>>> data = vqcodec.compress("photo.png", quality=4)        # bytes of a .vqc file
>>> image = vqcodec.decompress(data)                       # PIL.Image
>>> data = vqcodec.compress_audio("talk.flac", bitrate=6)  # kbps before the prior's saving
>>> samples, rate = vqcodec.decompress_audio(data)         # [channels, n] float32, source rate
>>> smaller = vqcodec.truncate(data, (2, 0))               # the first stages of each stream

The coding functions are imported on first use, so that `import vqcodec` (and the command
line's help and usage errors) do not wait for torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from vqcodec.catalog import DEFAULT_BITRATE, DEFAULT_QUALITY
from vqcodec.container import kind_of, truncate
from vqcodec.errors import BadInputError, CorruptFileError, MissingModelError, UsageError, VqcodecError

if TYPE_CHECKING:
    from vqcodec.codec.audio import compress_audio, decompress_audio
    from vqcodec.codec.image import compress, decompress, read_header

_LAZY = {
    "compress": "codec.image",
    "decompress": "codec.image",
    "read_header": "codec.image",
    "compress_audio": "codec.audio",
    "decompress_audio": "codec.audio",
}

__all__ = [
    "DEFAULT_QUALITY",
    "DEFAULT_BITRATE",
    "compress",
    "decompress",
    "compress_audio",
    "decompress_audio",
    "kind_of",
    "truncate",
    "read_header",
    "VqcodecError",
    "UsageError",
    "BadInputError",
    "CorruptFileError",
    "MissingModelError",
]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'vqcodec' has no attribute '{name}'")
