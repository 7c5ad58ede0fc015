"""vqcodec: a learned image codec.

>>> import vqcodec
>>> data = vqcodec.compress("photo.png", quality=4)   # bytes of a .vqc file
>>> image = vqcodec.decompress(data)                  # PIL.Image
"""

from .codec import DEFAULT_QUALITY, compress, decompress, read_header
from .errors import BadInputError, CorruptFileError, MissingModelError, UsageError, VqcodecError

__all__ = [
    "DEFAULT_QUALITY",
    "compress",
    "decompress",
    "read_header",
    "VqcodecError",
    "UsageError",
    "BadInputError",
    "CorruptFileError",
    "MissingModelError",
]
