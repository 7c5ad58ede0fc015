"""The .vqc file format (specified in docs/FORMAT.md): version 2 is written, 1 and 2 are read.

A compact binary layout: at 0.05 bpp a Kodak image is ~2.4 kB, so the header uses varints
and single bytes. Every size is an integer; nothing is allocated from a size in the file
before it has been checked against limits.

Version 2 is one design for both media: a common header (magic, version, kind, flags, model,
then the medium's sizes, metadata records and the chunk table) with its CRC, then one record
per chunk (an image tile, or one stream of an audio segment). A chunk's record holds one
range-coded payload per residual stage, the CRC of those payloads and the CRC of each stage's
indices. So a damaged chunk is reported as that chunk, and the first q stages of every chunk
are a complete file of lower quality: `truncate` keeps them without decoding anything.

Version 1 files (one payload per chunk for all its stages; an image checked by one CRC over
the whole file and one over all its indices) read into the same records.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, replace

from vqcodec.errors import CorruptFileError, UsageError

MAGIC = b"VQC"
VERSION = 2
READABLE_VERSIONS = (1, 2)
KIND_IMAGE = 0
KIND_AUDIO = 1
KIND_NAMES = {KIND_IMAGE: "image", KIND_AUDIO: "audio"}
FLAG_GRAY = 1  # the source was grayscale: decode to a one-channel image
FLAG_ALPHA_DROPPED = 2  # the source had an alpha channel, which is not coded
FLAG_MID_SIDE = 4  # audio: a stereo source coded as mid (L+R)/2 and side (L-R)/2
FLAG_CONVERTED_TO_SRGB = 8  # image: the source's ICC profile was not sRGB; its colours were converted
CHUNK_PIXELS = 1024  # image chunks are square tiles of 1024x1024 pixels (128x128 latents at factor 8)
MAX_NAME = 32
MAX_SIDE = 1 << 20
DEFAULT_MAX_PIXELS = 400_000_000
SEGMENT_FRAMES = 750  # audio chunks are segments of 750 index frames (10 s at 75 frames/s)
MAX_RATE = 1_000_000
MAX_CHANNELS = 64
MAX_FRAME_RATE = 1000  # index frames per second of any audio model, for the size check
DEFAULT_MAX_SECONDS = 48 * 3600
MAX_STAGES = 64  # per chunk; a reader also checks them against the model's
MAX_METADATA = 8  # records per file
METADATA_TAGS = {"exif": b"EXIF", "icc": b"ICCP", "xmp": b"XMP "}  # what --keep-metadata keeps


@dataclass(frozen=True)
class Chunk:
    """One chunk's record: its range-coded payloads, one per stage (version 1: one for all its
    stages), and the CRCs of each stage's decoded indices (version 1: one for all its stages;
    none in a version 1 image, which has one CRC for the whole file, `Header.indices_crc`)."""

    label: str  # how errors name it: "tile 2", "segment 3, stream 1"
    stages: int
    payloads: tuple[bytes, ...]
    indices_crcs: tuple[int, ...]
    payload_crc: int = -1  # as read (-1: computed when packed)

    @property
    def per_stage(self) -> bool:
        """Whether each stage has its own payload (version 2), so any first stages decode alone."""
        return len(self.payloads) == self.stages

    @property
    def size(self) -> int:
        return sum(map(len, self.payloads))

    def check(self) -> None:
        if zlib.crc32(b"".join(self.payloads)) != self.payload_crc:
            raise CorruptFileError(f"{self.label} is damaged (CRC mismatch)")

    def first(self, stages: int) -> Chunk:
        """The record of this chunk's first `stages` stages (a version 2 chunk)."""
        stages = min(stages, self.stages)
        payloads = self.payloads[:stages]
        return replace(self, stages=stages, payloads=payloads, indices_crcs=self.indices_crcs[:stages], payload_crc=-1)


def new_chunk(label: str, payloads: list[bytes], indices_crcs: list[int]) -> Chunk:
    """A version 2 chunk record: one payload and one indices CRC per stage."""
    if len(payloads) != len(indices_crcs) or len(payloads) > MAX_STAGES:
        raise ValueError("one payload and one indices CRC per stage")
    return Chunk(label, len(payloads), tuple(payloads), tuple(indices_crcs), zlib.crc32(b"".join(payloads)))


@dataclass(frozen=True)
class Header:
    kind: int
    flags: int
    model_name: str
    model_hash: bytes  # 4 bytes: the start of the SHA-256 of the model's tensors
    width: int
    height: int
    quality: int  # the most stages any chunk has
    metadata: tuple[tuple[str, bytes], ...] = ()  # (name in METADATA_TAGS, bytes) kept from the source
    version: int = VERSION
    indices_crc: int | None = None  # version 1: the CRC of all chunks' indices

    def latent_shape(self, factor: int = 8) -> tuple[int, int]:
        """The grid of latent positions of a model with `factor` pixels per position."""
        return -(-self.height // factor), -(-self.width // factor)

    def chunk_grid(self, factor: int = 8) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each chunk in latent positions, row-major. How many
        chunks there are does not depend on the factor (a power of 2 up to CHUNK_PIXELS), so
        the file is parsed before its model is known."""
        h, w = self.latent_shape(factor)
        side = CHUNK_PIXELS // factor
        tops, lefts = range(0, h, side), range(0, w, side)
        return [(top, left, min(side, h - top), min(side, w - left)) for top in tops for left in lefts]


@dataclass(frozen=True)
class AudioHeader:
    flags: int
    model_name: str
    model_hash: bytes
    sample_rate: int  # of the source, restored on decoding
    channels: int
    length: int  # samples per channel of the source
    frames: int  # index frames of the model per stream
    stages: tuple[int, ...]  # the most residual stages of each stream's chunks (0 = silent stream)
    kind: int = KIND_AUDIO
    metadata: tuple[tuple[str, bytes], ...] = ()
    version: int = VERSION

    @property
    def segments(self) -> int:
        return -(-self.frames // SEGMENT_FRAMES)

    def segment_frames(self, segment: int) -> int:
        return min(SEGMENT_FRAMES, self.frames - segment * SEGMENT_FRAMES)


def image_chunk_label(i: int) -> str:
    return f"tile {i + 1}"


def audio_chunk_label(i: int, channels: int) -> str:
    return f"segment {i // channels + 1}, stream {i % channels + 1}"


# --- writing ---------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _crc(data: bytes) -> bytes:
    return zlib.crc32(data).to_bytes(4, "little")


def _model_name_bytes(name: str, model_hash: bytes) -> bytes:
    try:
        encoded = name.encode("ascii")
    except UnicodeEncodeError:
        encoded = b""
    if not 0 < len(encoded) <= MAX_NAME or len(model_hash) != 4:
        raise UsageError(f"model name must be 1..32 ASCII characters, not '{name}'")
    return encoded


def _pack(header: Header | AudioHeader, sizes: list[bytes], chunks: list[Chunk]) -> bytes:
    """The version 2 layout shared by both media: common fields, the medium's `sizes` fields,
    metadata and chunk table, header CRC, chunk records."""
    name = _model_name_bytes(header.model_name, header.model_hash)
    if len(header.metadata) > MAX_METADATA or any(tag not in METADATA_TAGS for tag, _ in header.metadata):
        raise ValueError("unknown or too many metadata records")
    head = [MAGIC, bytes([VERSION, header.kind]), _varint(header.flags), bytes([len(name)]), name, header.model_hash]
    head += [*sizes, bytes([len(header.metadata)])]
    for tag, value in header.metadata:
        head += [METADATA_TAGS[tag], _varint(len(value)), value]
    for chunk in chunks:
        if not chunk.per_stage:
            raise ValueError("version 2 chunks have one payload per stage")
        head += [bytes([chunk.stages]), *[_varint(len(p)) for p in chunk.payloads]]
    head_bytes = b"".join(head)
    parts = [head_bytes, _crc(head_bytes)]
    for chunk in chunks:
        body = b"".join(chunk.payloads)
        parts += [body, _crc(body), *[crc.to_bytes(4, "little") for crc in chunk.indices_crcs]]
    return b"".join(parts)


def pack(header: Header, chunks: list[Chunk]) -> bytes:
    """An image file: one chunk per tile of `header.chunk_grid()`."""
    if len(chunks) != len(header.chunk_grid()):
        raise ValueError("one chunk per tile")
    return _pack(header, [_varint(header.width), _varint(header.height)], chunks)


def pack_audio(header: AudioHeader, chunks: list[Chunk]) -> bytes:
    """An audio file: one chunk per segment and stream, segment by segment."""
    if len(chunks) != header.segments * header.channels or len(header.stages) != header.channels:
        raise ValueError("one chunk per segment and stream, one stage count per stream")
    sizes = [_varint(header.sample_rate), bytes([header.channels]), _varint(header.length), _varint(header.frames)]
    return _pack(header, sizes, chunks)


def pack_first(header: Header | AudioHeader, chunks: list[Chunk], counts: list[int]) -> bytes:
    """The file of the first `counts[i]` stages of each chunk i (version 2 chunks), of either kind."""
    kept = [chunk.first(n) for chunk, n in zip(chunks, counts, strict=True)]
    if isinstance(header, AudioHeader):
        return pack_audio(replace(header, stages=_stream_stages(kept, header.channels)), kept)
    return pack(replace(header, quality=max(c.stages for c in kept)), kept)


def largest_fitting(lo: int, hi: int, make: Callable[[int], bytes], max_bytes: int) -> tuple[int, bytes | None]:
    """The largest n in lo..hi whose file `make(n)` has at most `max_bytes`, by bisection (the
    files grow with n): (n, that file), or (lo - 1, None) when none fits."""
    best, found = lo - 1, None
    while lo <= hi:
        n = (lo + hi) // 2
        data = make(n)
        if len(data) <= max_bytes:
            best, found, lo = n, data, n + 1
        else:
            hi = n - 1
    return best, found


def spread(base: int, more: int, count: int) -> list[int]:
    """`count` stage counts: `base`, and `base + 1` for `more` of them, spread evenly."""
    return [base + (i * more // count != (i + 1) * more // count) for i in range(count)]


def _stream_stages(chunks: list[Chunk], channels: int) -> tuple[int, ...]:
    """The most stages of each stream's chunks."""
    return tuple(max((c.stages for c in chunks[s::channels]), default=0) for s in range(channels))


def truncate(data: bytes, keep: int | tuple[int, ...]) -> bytes:
    """The file of the first `keep` stages of every chunk (audio: a count per stream), made by
    dropping the other stages' records: no decoding, no model. Version 2 files only (the
    command line upgrades a version 1 file first, which needs its model's prior)."""
    version = check_magic(data)
    if version < 2:
        raise UsageError("a version 1 file has no stage boundaries: upgrade it first (codec_for(data).upgrade)")
    if kind_of(data) == "audio":
        header, chunks = unpack_audio(data)
        counts = keep if isinstance(keep, tuple) else (keep,) * header.channels
        return pack_first(header, chunks, [counts[i % header.channels] for i in range(len(chunks))])
    header, chunks = unpack(data)
    return pack_first(header, chunks, [keep if isinstance(keep, int) else max(keep)] * len(chunks))


# --- reading ---------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CorruptFileError("file is truncated")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self.take(1)[0]

    def varint(self, max_bytes: int = 5) -> int:
        value = 0
        for i in range(max_bytes):
            b = self.byte()
            value |= (b & 0x7F) << (7 * i)
            if not b & 0x80:
                return value
        raise CorruptFileError("malformed size field")

    def crc32(self) -> int:
        return int.from_bytes(self.take(4), "little")


def check_magic(data: bytes) -> int:
    """The format version of a .vqc file (checking magic and version)."""
    if len(data) < 5 or data[:3] != MAGIC:
        raise CorruptFileError("not a .vqc file (bad magic)")
    if data[3] not in READABLE_VERSIONS:
        raise CorruptFileError(f"unsupported .vqc format version {data[3]} (this vqcodec reads versions 1 and 2)")
    return data[3]


def kind_of(data: bytes) -> str:
    """'image' or 'audio' from the first bytes of a .vqc file (checking magic and version)."""
    check_magic(data)
    if data[4] not in KIND_NAMES:
        raise CorruptFileError(f"unknown media kind {data[4]}")
    return KIND_NAMES[data[4]]


def _read_common(r: _Reader, version: int) -> tuple[int, int, str, bytes]:
    """kind, flags, model name and hash; the model name checked."""
    r.take(4)
    kind = r.byte()
    flags = r.varint() if version >= 2 else r.byte()
    name_len = r.byte()
    if not 0 < name_len <= MAX_NAME:
        raise CorruptFileError("bad model name length")
    try:
        name = r.take(name_len).decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFileError("model name is not ASCII") from None
    return kind, flags, name, r.take(4)


def _read_image_size(r: _Reader, max_pixels: int) -> tuple[int, int]:
    width, height = r.varint(), r.varint()
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise CorruptFileError(f"implausible image size {width}x{height}")
    if width * height > max_pixels:
        raise CorruptFileError(f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    return width, height


def _read_audio_size(r: _Reader, max_seconds: float) -> tuple[int, int, int, int]:
    rate, channels, length, frames = r.varint(), r.byte(), r.varint(8), r.varint()
    if not (0 < rate <= MAX_RATE and 0 < channels <= MAX_CHANNELS):
        raise CorruptFileError(f"implausible audio format: {rate} Hz, {channels} channels")
    if length > max_seconds * rate:
        raise CorruptFileError(f"audio of {length / rate:.0f} s is over the limit of {max_seconds:.0f} s")
    if frames > (length / rate + 1) * MAX_FRAME_RATE:
        raise CorruptFileError(f"implausible frame count {frames} for {length} samples")
    return rate, channels, length, frames


def _read_metadata(r: _Reader) -> tuple[tuple[str, bytes], ...]:
    count = r.byte()
    if count > MAX_METADATA:
        raise CorruptFileError(f"{count} metadata records (at most {MAX_METADATA})")
    names = {tag: name for name, tag in METADATA_TAGS.items()}
    records = []
    for _ in range(count):
        tag = r.take(4)
        value = r.take(r.varint())
        if tag in names:  # records of later versions are skipped
            records.append((names[tag], value))
    return tuple(records)


def _read_chunks_v2(r: _Reader, data: bytes, count: int, label) -> list[Chunk]:
    """The chunk table, the header CRC and the chunk records of a version 2 file."""
    table = _read_table(r, count, label)
    if zlib.crc32(data[: r.pos]) != r.crc32():
        raise CorruptFileError("file header is damaged (CRC mismatch)")
    if r.pos + sum(sum(t) + 4 + 4 * len(t) for t in table) != len(data):
        raise CorruptFileError("file is truncated or has trailing bytes")
    chunks = []
    for i, lengths in enumerate(table):
        payloads = tuple(r.take(n) for n in lengths)
        payload_crc = r.crc32()
        chunks.append(Chunk(label(i), len(lengths), payloads, tuple(r.crc32() for _ in lengths), payload_crc))
    return chunks


def _read_table(r: _Reader, count: int, label) -> list[list[int]]:
    """For each of `count` chunks, the byte lengths of its stages' payloads."""
    table = []
    for _ in range(count):
        stages = r.byte()
        if stages > MAX_STAGES:
            raise CorruptFileError(f"{label(len(table))}: {stages} stages (at most {MAX_STAGES})")
        table.append([r.varint() for _ in range(stages)])
    return table


def _header_length(data: bytes) -> int:
    """Where a version 2 file's header CRC starts (for tests that damage a header and mend its CRC)."""
    r = _Reader(data)
    if _read_common(r, 2)[0] == KIND_IMAGE:
        width, height = _read_image_size(r, DEFAULT_MAX_PIXELS)
        count = len(Header(KIND_IMAGE, 0, "", b"", width, height, 0).chunk_grid())
    else:
        _, channels, _, frames = _read_audio_size(r, DEFAULT_MAX_SECONDS)
        count = -(-frames // SEGMENT_FRAMES) * channels
    _read_metadata(r)
    _read_table(r, count, str)
    return r.pos


def unpack(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, list[Chunk]]:
    """Parse and check an image .vqc file: (header, one chunk per tile, checked when decoded)."""
    version = check_magic(data)
    if version == 1:
        return _unpack_image_v1(data, max_pixels)
    r = _Reader(data)
    kind, flags, name, model_hash = _read_common(r, version)
    if kind != KIND_IMAGE:
        raise CorruptFileError(f"not an image .vqc file (media kind {kind})")
    width, height = _read_image_size(r, max_pixels)
    metadata = _read_metadata(r)
    header = Header(kind, flags, name, model_hash, width, height, 0, metadata)
    chunks = _read_chunks_v2(r, data, len(header.chunk_grid()), image_chunk_label)
    return replace(header, quality=max(c.stages for c in chunks)), chunks


def unpack_audio(data: bytes, max_seconds: float = DEFAULT_MAX_SECONDS) -> tuple[AudioHeader, list[Chunk]]:
    """Parse an audio .vqc file: its header (checked) and its chunks (checked when decoded)."""
    if kind_of(data) != "audio":
        raise CorruptFileError("not an audio .vqc file")
    version = data[3]
    r = _Reader(data)
    _, flags, name, model_hash = _read_common(r, version)
    rate, channels, length, frames = _read_audio_size(r, max_seconds)
    if version == 1:
        header = AudioHeader(flags, name, model_hash, rate, channels, length, frames, (), version=1)
        return _unpack_audio_v1(r, data, header)
    metadata = _read_metadata(r)
    header = AudioHeader(flags, name, model_hash, rate, channels, length, frames, (), metadata=metadata)
    chunks = _read_chunks_v2(r, data, header.segments * channels, lambda i: audio_chunk_label(i, channels))
    return replace(header, stages=_stream_stages(chunks, channels)), chunks


def _unpack_image_v1(data: bytes, max_pixels: int) -> tuple[Header, list[Chunk]]:
    """Version 1: one payload per chunk for all its stages, one CRC over all indices, a file CRC."""
    if len(data) < 8 or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise CorruptFileError("file is damaged or truncated (CRC mismatch)")
    r = _Reader(data[:-4])
    kind, flags, name, model_hash = _read_common(r, 1)
    if kind != KIND_IMAGE:
        raise CorruptFileError(f"not an image .vqc file (media kind {kind})")
    width, height = _read_image_size(r, max_pixels)
    quality = r.byte()
    header = Header(kind, flags, name, model_hash, width, height, quality, version=1)
    lengths = [r.varint() for _ in header.chunk_grid()]
    payloads = [r.take(n) for n in lengths]
    header = replace(header, indices_crc=r.crc32())
    if r.pos != len(r.data):
        raise CorruptFileError("trailing bytes after the payload")
    # The file CRC covers the payloads: each chunk's own CRC is set to pass.
    chunks = [Chunk(image_chunk_label(i), quality, (p,), (), zlib.crc32(p)) for i, p in enumerate(payloads)]
    return header, chunks


def _unpack_audio_v1(r: _Reader, data: bytes, header: AudioHeader) -> tuple[AudioHeader, list[Chunk]]:
    """Version 1: the stages of each stream in the header, one payload and two CRCs per chunk."""
    stages = tuple(r.take(header.channels))
    lengths = [r.varint() for _ in range(header.segments * header.channels)]
    if zlib.crc32(data[: r.pos]) != r.crc32():
        raise CorruptFileError("file header is damaged (CRC mismatch)")
    if r.pos + sum(lengths) + 8 * len(lengths) != len(data):
        raise CorruptFileError("file is truncated or has trailing bytes")
    chunks = []
    for i, n in enumerate(lengths):
        payload = r.take(n)
        payload_crc, indices_crc = r.crc32(), r.crc32()
        label = audio_chunk_label(i, header.channels)
        chunks.append(Chunk(label, stages[i % header.channels], (payload,), (indices_crc,), payload_crc))
    return replace(header, stages=stages), chunks


def audio_bitrate(header: AudioHeader, file_size: int) -> float:
    """Real bitrate of a file in kbps, header included."""
    seconds = header.length / header.sample_rate
    return file_size * 8 / 1000 / seconds if seconds else 0.0
