"""The .vqc file format, version 1 (specified in docs/FORMAT.md).

A compact binary layout: at 0.05 bpp a Kodak image is ~2.4 kB, so the header uses varints
and single bytes, about 30 bytes in all. Every size is an integer; nothing is allocated from
a size in the file before it has been checked against limits.

Images and audio share the first fields (magic, version, kind, flags, model name and hash).
An image file is checked by one CRC over the whole file. An audio file, which may be hours
long, has a CRC over its header and two CRCs per chunk (its bytes and its decoded indices), so
a damaged chunk is reported as that chunk, and a long file is decoded chunk by chunk.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

from .errors import CorruptFileError, UsageError

MAGIC = b"VQC"
VERSION = 1
KIND_IMAGE = 0
KIND_AUDIO = 1
KIND_NAMES = {KIND_IMAGE: "image", KIND_AUDIO: "audio"}
FLAG_GRAY = 1  # the source was grayscale: decode to a one-channel image
FLAG_ALPHA_DROPPED = 2  # the source had an alpha channel, which is not coded
FLAG_MID_SIDE = 4  # audio: a stereo source coded as mid (L+R)/2 and side (L-R)/2
FLAG_CONVERTED_TO_SRGB = 8  # image: the source's ICC profile was not sRGB; its colours were converted
CHUNK_LATENTS = 128  # chunks are square tiles of 128x128 latent positions (1024x1024 pixels)
MAX_NAME = 32
MAX_SIDE = 1 << 20
DEFAULT_MAX_PIXELS = 400_000_000
SEGMENT_FRAMES = 750  # audio chunks are segments of 750 index frames (10 s at 75 frames/s)
MAX_RATE = 1_000_000
MAX_CHANNELS = 64
MAX_FRAME_RATE = 1000  # index frames per second of any audio model, for the size check
DEFAULT_MAX_SECONDS = 48 * 3600


@dataclass(frozen=True)
class Header:
    kind: int
    flags: int
    model_name: str
    model_hash: bytes  # 4 bytes: the start of the SHA-256 of the model's tensors
    width: int
    height: int
    quality: int

    @property
    def latent_shape(self) -> tuple[int, int]:
        return -(-self.height // 8), -(-self.width // 8)

    def chunk_grid(self) -> list[tuple[int, int, int, int]]:
        """(top, left, height, width) of each chunk in latent positions, row-major."""
        h, w = self.latent_shape
        return [
            (top, left, min(CHUNK_LATENTS, h - top), min(CHUNK_LATENTS, w - left))
            for top in range(0, h, CHUNK_LATENTS)
            for left in range(0, w, CHUNK_LATENTS)
        ]


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


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


def _model_name_bytes(name: str, model_hash: bytes) -> bytes:
    encoded = name.encode("ascii")
    if not 0 < len(encoded) <= MAX_NAME or len(model_hash) != 4:
        raise UsageError("model name must be 1..32 ASCII characters")
    return encoded


def _read_model(r: _Reader) -> tuple[str, bytes]:
    """The model name (length byte, ASCII) and the 4-byte weights hash, checked."""
    name_len = r.byte()
    if not 0 < name_len <= MAX_NAME:
        raise CorruptFileError("bad model name length")
    try:
        name = r.take(name_len).decode("ascii")
    except UnicodeDecodeError:
        raise CorruptFileError("model name is not ASCII") from None
    return name, r.take(4)


def pack(header: Header, payloads: list[bytes], indices_crc: int) -> bytes:
    name = _model_name_bytes(header.model_name, header.model_hash)
    if len(payloads) != len(header.chunk_grid()):
        raise ValueError("one payload per chunk")
    parts = [
        MAGIC,
        bytes([VERSION, header.kind, header.flags, len(name)]),
        name,
        header.model_hash,
        _varint(header.width),
        _varint(header.height),
        bytes([header.quality]),
        *[_varint(len(p)) for p in payloads],
        *payloads,
        indices_crc.to_bytes(4, "little"),
    ]
    body = b"".join(parts)
    return body + zlib.crc32(body).to_bytes(4, "little")


def unpack(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Header, list[bytes], int]:
    """Parse and check a .vqc file: (header, chunk payloads, CRC32 of the indices)."""
    if len(data) < 4 or data[:3] != MAGIC:
        raise CorruptFileError("not a .vqc file (bad magic)")
    if data[3] != VERSION:
        raise CorruptFileError(f"unsupported .vqc format version {data[3]} (this vqcodec reads version {VERSION})")
    if len(data) < 8 or zlib.crc32(data[:-4]) != int.from_bytes(data[-4:], "little"):
        raise CorruptFileError("file is damaged or truncated (CRC mismatch)")
    r = _Reader(data[:-4])
    r.take(4)
    kind, flags = r.byte(), r.byte()
    if kind != KIND_IMAGE:
        raise CorruptFileError(f"not an image .vqc file (media kind {kind})")
    name, model_hash = _read_model(r)
    width, height = r.varint(), r.varint()
    if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
        raise CorruptFileError(f"implausible image size {width}x{height}")
    if width * height > max_pixels:
        raise CorruptFileError(f"image of {width}x{height} pixels is over the limit of {max_pixels} pixels")
    header = Header(kind, flags, name, model_hash, width, height, r.byte())
    lengths = [r.varint() for _ in header.chunk_grid()]
    payloads = [r.take(n) for n in lengths]
    indices_crc = int.from_bytes(r.take(4), "little")
    if r.pos != len(r.data):
        raise CorruptFileError("trailing bytes after the payload")
    return header, payloads, indices_crc


@dataclass(frozen=True)
class AudioHeader:
    flags: int
    model_name: str
    model_hash: bytes
    sample_rate: int  # of the source, restored on decoding
    channels: int
    length: int  # samples per channel of the source
    frames: int  # index frames of the model per stream
    stages: tuple[int, ...]  # residual stages coded for each stream (0 = silent stream)
    kind: int = KIND_AUDIO

    @property
    def segments(self) -> int:
        return -(-self.frames // SEGMENT_FRAMES)

    def segment_frames(self, segment: int) -> int:
        return min(SEGMENT_FRAMES, self.frames - segment * SEGMENT_FRAMES)


@dataclass(frozen=True)
class AudioChunk:
    """One stream of one segment: the range-coded payload and its two checks."""

    segment: int
    stream: int
    payload: bytes
    payload_crc: int
    indices_crc: int

    def check(self) -> None:
        if zlib.crc32(self.payload) != self.payload_crc:
            raise CorruptFileError(f"segment {self.segment + 1}, stream {self.stream + 1} is damaged (CRC mismatch)")


def kind_of(data: bytes) -> str:
    """'image' or 'audio' from the first bytes of a .vqc file (checking magic and version)."""
    if len(data) < 5 or data[:3] != MAGIC:
        raise CorruptFileError("not a .vqc file (bad magic)")
    if data[3] != VERSION:
        raise CorruptFileError(f"unsupported .vqc format version {data[3]} (this vqcodec reads version {VERSION})")
    if data[4] not in KIND_NAMES:
        raise CorruptFileError(f"unknown media kind {data[4]}")
    return KIND_NAMES[data[4]]


def pack_audio(header: AudioHeader, chunks: list[AudioChunk]) -> bytes:
    name = _model_name_bytes(header.model_name, header.model_hash)
    if len(chunks) != header.segments * header.channels or len(header.stages) != header.channels:
        raise ValueError("one chunk per segment and stream, one stage count per stream")
    head = b"".join(
        [
            MAGIC,
            bytes([VERSION, KIND_AUDIO, header.flags, len(name)]),
            name,
            header.model_hash,
            _varint(header.sample_rate),
            bytes([header.channels]),
            _varint(header.length),
            _varint(header.frames),
            bytes(header.stages),
            *[_varint(len(c.payload)) for c in chunks],
        ]
    )
    parts = [head, zlib.crc32(head).to_bytes(4, "little")]
    for c in chunks:
        parts += [c.payload, c.payload_crc.to_bytes(4, "little"), c.indices_crc.to_bytes(4, "little")]
    return b"".join(parts)


def unpack_audio(data: bytes, max_seconds: float = DEFAULT_MAX_SECONDS) -> tuple[AudioHeader, list[AudioChunk]]:
    """Parse an audio .vqc file: its header (checked) and its chunks (checked when decoded)."""
    if kind_of(data) != "audio":
        raise CorruptFileError("not an audio .vqc file")
    r = _Reader(data)
    r.take(5)
    flags = r.byte()
    name, model_hash = _read_model(r)
    rate, channels, length, frames = r.varint(), r.byte(), r.varint(8), r.varint()
    if not (0 < rate <= MAX_RATE and 0 < channels <= MAX_CHANNELS):
        raise CorruptFileError(f"implausible audio format: {rate} Hz, {channels} channels")
    if length > max_seconds * rate:
        raise CorruptFileError(f"audio of {length / rate:.0f} s is over the limit of {max_seconds:.0f} s")
    if frames > (length / rate + 1) * MAX_FRAME_RATE:
        raise CorruptFileError(f"implausible frame count {frames} for {length} samples")
    header = AudioHeader(flags, name, model_hash, rate, channels, length, frames, tuple(r.take(channels)))
    lengths = [r.varint() for _ in range(header.segments * channels)]
    if zlib.crc32(data[: r.pos]) != int.from_bytes(r.take(4), "little"):
        raise CorruptFileError("file header is damaged (CRC mismatch)")
    if r.pos + sum(lengths) + 8 * len(lengths) != len(data):
        raise CorruptFileError("file is truncated or has trailing bytes")
    chunks = []
    for i, n in enumerate(lengths):
        payload = r.take(n)
        payload_crc, indices_crc = int.from_bytes(r.take(4), "little"), int.from_bytes(r.take(4), "little")
        chunks.append(AudioChunk(i // channels, i % channels, payload, payload_crc, indices_crc))
    return header, chunks


def audio_bitrate(header: AudioHeader, file_size: int) -> float:
    """Real bitrate of a file in kbps, header included."""
    seconds = header.length / header.sample_rate
    return file_size * 8 / 1000 / seconds if seconds else 0.0
