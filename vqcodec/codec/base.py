"""The contract of a medium's codec, as the callers that take any input or .vqc file see it.

The command line's `compress`, `decompress`, `truncate` and `info`, and `vqcodec inspect`,
never test a medium: they look its codec up in `vqcodec.codec.CODECS` and call this. A new
medium's codec is one subclass and one entry there (docs/DESIGN.md, "Where to put a change").
What the two media share below this (the chunk record, the per-stage range coding of a chunk's
indices with the prior, the model check) lives in `container`, `entropy` and `registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, ClassVar

from vqcodec import container
from vqcodec.errors import UsageError

# Makes a progress bar for a total count of chunks: a context manager with update(n).
ProgressBar = Callable[[int], Any]


@dataclass(frozen=True)
class Decoding:
    """How to decode: on which device, how many stages (None: all), within which limit on what
    the header may claim (in the unit of the codec's `limit_option`; None: the default)."""

    device: str = "auto"
    stages: int | tuple[int, ...] | None = None
    limit: float | None = None
    progress: ProgressBar | None = None


class MediaCodec(ABC):
    kind: ClassVar[str]  # the container's kind name: "image", "audio"
    noun: ClassVar[str]  # for messages: "images", "sound"
    one: ClassVar[str]  # for messages: "an image", "a sound"
    input_suffixes: ClassVar[frozenset[str]]  # files of this medium, found in folders
    input_magics: ClassVar[tuple[bytes, ...]]  # first bytes of its inputs, for standard input
    default_model: ClassVar[str]
    rate_options: ClassVar[tuple[str, ...]]  # what `encode` takes to choose the rate: one at a time
    flag_options: ClassVar[tuple[str, ...]] = ()  # and the other options it takes
    output_suffixes: ClassVar[tuple[str, ...]]  # what decoding writes; the first is the default
    level_option: ClassVar[str]  # the API option that picks the stages to decode: quality, bitrate
    limit_option: ClassVar[str]  # the decoder's limit on what a header may claim: max_pixels, max_hours
    can_compare: ClassVar[bool] = False  # decoding returns the media whole, to measure against an original

    @abstractmethod
    def encode(
        self, src: bytes | Path, options: dict, model: str, device: str, progress: ProgressBar | None = None
    ) -> tuple[bytes, str]:
        """Code an input file (or its bytes) with `model`: (the .vqc file, a one-line summary).
        `options` holds the given ones of `rate_options` (at most one) and `flag_options`."""

    @abstractmethod
    def unpack(self, data: bytes) -> tuple[Any, list[container.Chunk]]:
        """The header and chunk records of a file of this medium (checked, nothing decoded)."""

    @abstractmethod
    def describe(self, header: Any, size: int) -> dict:
        """The medium's own fields of `vqcodec info`, from the header and the file's size."""

    @abstractmethod
    def stages_for(self, data: bytes, level: float) -> int | tuple[int, ...]:
        """The stages to keep of the file for `level` (a quality, or a bitrate in kbps)."""

    @abstractmethod
    def decode_to(self, data: bytes, out: IO[bytes], suffix: str, how: Decoding) -> tuple[str, Any]:
        """Decode into the file `out` in the format of `suffix`: (a one-line summary, the decoded
        media when it was held whole, else None)."""

    @abstractmethod
    def upgrade(self, data: bytes, device: str = "auto") -> bytes:
        """A version 1 file as version 2, the same indices coded again stage by stage."""

    @abstractmethod
    def inspect(self, data: bytes, device: str = "auto"):
        """Where the file's bits go (`vqcodec.tools.inspection.Inspection`)."""

    def info(self, data: bytes) -> dict:
        """What `vqcodec info` shows: the model, the medium's fields, then the file's layout."""
        header, chunks = self.unpack(data)
        named = {"kind": self.kind, "model": header.model_name, "model_hash": header.model_hash.hex()}
        layout = {
            "chunks": len(chunks),
            "format_version": header.version,
            "scalable": all(c.per_stage for c in chunks),  # `truncate` and `decompress -q` read fewer stages
            "bytes": len(data),
            "header_bytes": len(data) - sum(c.size for c in chunks),
            "metadata": {name: len(value) for name, value in header.metadata},
        }
        return {**named, **self.describe(header, len(data)), **layout}

    def check_suffix(self, suffix: str) -> None:
        if suffix not in self.output_suffixes:
            names = ", ".join(sorted(self.output_suffixes))
            raise UsageError(f"cannot write '{suffix}' {self.noun}: use one of {names}")

    def tune_process(self) -> None:
        """Process-wide settings that make coding this medium faster, which the command line
        applies before it codes (the library never changes the process by itself). None here."""
        return None
