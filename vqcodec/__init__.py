"""vqcodec: a learned image and audio codec.

>>> import vqcodec
>>> data = vqcodec.compress("photo.png", quality=4)        # bytes of a .vqc file
>>> image = vqcodec.decompress(data)                       # PIL.Image
>>> data = vqcodec.compress_audio("talk.flac", bitrate=6)  # kbps before the prior's saving
>>> samples, rate = vqcodec.decompress_audio(data)         # [channels, n] float32, source rate
"""

from .codec import DEFAULT_QUALITY, compress, decompress, read_header
from .codec_audio import DEFAULT_BITRATE, compress_audio, decompress_audio
from .container import kind_of
from .errors import BadInputError, CorruptFileError, MissingModelError, UsageError, VqcodecError

__all__ = [
    "DEFAULT_QUALITY",
    "DEFAULT_BITRATE",
    "compress",
    "decompress",
    "compress_audio",
    "decompress_audio",
    "kind_of",
    "read_header",
    "VqcodecError",
    "UsageError",
    "BadInputError",
    "CorruptFileError",
    "MissingModelError",
]
