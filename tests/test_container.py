"""The .vqc container: version 2 written and read for both media, version 1 read, and every
damage refused."""

from dataclasses import replace
from pathlib import Path

import pytest

from vqcodec import container
from vqcodec.container import AudioHeader, Header, new_chunk
from vqcodec.errors import CorruptFileError, UsageError

V1_FILES = Path(__file__).parent / "data" / "v1"
HEADER = Header(container.KIND_IMAGE, 0, "img1", b"\x01\x02\x03\x04", 768, 512, 3)
AUDIO = AudioHeader(container.FLAG_MID_SIDE, "aud1", b"abcd", 44100, 2, 44100 * 12, 900, (3, 1))


def _chunks(stage_counts: list[int], prefix: str = "tile") -> list[container.Chunk]:
    """Chunks of `stage_counts[i]` stages, with distinct payloads of 4 and 8 bytes."""
    return [
        new_chunk(f"{prefix} {i + 1}", [bytes([i % 256, s]) * (2 + 2 * (s % 2)) for s in range(n)], list(range(n)))
        for i, n in enumerate(stage_counts)
    ]


def packed() -> bytes:
    return container.pack(HEADER, _chunks([3]))


def packed_audio() -> bytes:
    chunks = [
        new_chunk(container.audio_chunk_label(i, 2), c.payloads, c.indices_crcs)
        for i, c in enumerate(_chunks([3, 1, 3, 1]))
    ]
    return container.pack_audio(AUDIO, chunks)


def test_image_roundtrip_and_size():
    data = packed()
    header, chunks = container.unpack(data)
    assert header == HEADER and chunks == _chunks([3])
    # magic+version+kind 5, flags 1, name 5, hash 4, sizes 2+2, metadata count 1, table 1+3,
    # header CRC 4; payloads 16, payload CRC 4, 3 indices CRCs 12
    assert len(data) == 28 + 16 + 4 + 12


def test_audio_roundtrip_labels_and_stages_per_stream():
    header, chunks = container.unpack_audio(packed_audio())
    assert header == AUDIO
    assert [c.label for c in chunks] == [
        "segment 1, stream 1",
        "segment 1, stream 2",
        "segment 2, stream 1",
        "segment 2, stream 2",
    ]
    assert [c.stages for c in chunks] == [3, 1, 3, 1]


def test_metadata_records_roundtrip():
    with_meta = replace(HEADER, metadata=(("exif", b"Exif\0\0MM"), ("icc", b"\x01" * 300)))
    header, _ = container.unpack(container.pack(with_meta, _chunks([3])))
    assert header.metadata == with_meta.metadata
    with pytest.raises(ValueError, match="metadata"):
        container.pack(replace(HEADER, metadata=(("gps", b"x"),)), _chunks([3]))


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**20, 2**35 - 1])
def test_varint_roundtrip(n):
    r = container._Reader(container._varint(n))
    assert r.varint(max_bytes=5) == n


@pytest.mark.parametrize("factor", [8, 16])
def test_chunk_grid_covers_latents(factor):
    header = Header(0, 0, "m", b"abcd", 2100, 1030, 1)
    grid = header.chunk_grid(factor)
    h, w = header.latent_shape(factor)
    assert (h, w) == {8: (129, 263), 16: (65, 132)}[factor]
    assert sum(ch * cw for _, _, ch, cw in grid) == h * w
    assert len(grid) == 2 * 3  # the same tiles of 1024 pixels, whatever the model's grid


def test_truncation_keeps_the_first_stages_of_every_chunk():
    two_tiles = Header(container.KIND_IMAGE, 0, "img1", b"abcd", 1100, 20, 3)
    data = container.pack(two_tiles, _chunks([3, 3]))
    expected = container.pack(replace(two_tiles, quality=2), [c.first(2) for c in _chunks([3, 3])])
    assert container.truncate(data, 2) == expected
    assert container.unpack(expected)[1][1].payloads == _chunks([3, 3])[1].payloads[:2]
    # Sound: a count per stream; a stream keeps what it has when asked for more.
    header, chunks = container.unpack_audio(container.truncate(packed_audio(), (2, 2)))
    assert header.stages == (2, 1) and [c.stages for c in chunks] == [2, 1, 2, 1]


def test_version_1_files_have_no_stage_boundaries():
    for path in sorted(V1_FILES.glob("*.vqc")):
        with pytest.raises(UsageError, match="version 1"):
            container.truncate(path.read_bytes(), 1)


@pytest.mark.parametrize("name", ["small_q3", "two_tiles_q2", "gray_q1", "speech_3kbps", "stereo_1.5kbps"])
def test_version_1_files_read_into_the_same_records(name):
    data = (V1_FILES / f"{name}.vqc").read_bytes()
    if container.kind_of(data) == "audio":
        header, chunks = container.unpack_audio(data)
        assert header.version == 1 and len(chunks) == header.segments * header.channels
    else:
        header, chunks = container.unpack(data)
        assert header.version == 1 and header.indices_crc is not None
        assert len(chunks) == len(header.chunk_grid()) == (2 if name == "two_tiles_q2" else 1)
    for chunk in chunks:
        chunk.check()
        assert len(chunk.payloads) == 1  # all stages in one range coder stream


def _unpack_and_check(data: bytes) -> None:
    kind = container.kind_of(data)
    _, chunks = container.unpack_audio(data) if kind == "audio" else container.unpack(data)
    for chunk in chunks:
        chunk.check()


@pytest.mark.parametrize("make", [packed, packed_audio])
def test_every_truncation_is_refused(make):
    data = make()
    for n in range(len(data)):
        with pytest.raises(CorruptFileError):
            _unpack_and_check(data[:n])


@pytest.mark.parametrize("make", [packed, packed_audio])
def test_every_bit_flip_outside_the_indices_crcs_is_refused(make):
    """By the header CRC, a chunk's payload CRC, or the sizes; a flip in an indices CRC is
    found when the indices are decoded (tests/test_hostile.py)."""
    data = make()
    kind = container.kind_of(data)
    _, chunks = container.unpack_audio(data) if kind == "audio" else container.unpack(data)
    crc_bytes, end = set(), len(data)
    for chunk in reversed(chunks):
        crc_bytes |= set(range(end - 4 * chunk.stages, end))
        end -= 4 * chunk.stages + 4 + chunk.size
    for i in sorted(set(range(len(data))) - crc_bytes):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(CorruptFileError):
                _unpack_and_check(bytes(bad))


def test_future_version_and_bad_magic():
    data = bytearray(packed())
    data[3] = 9
    with pytest.raises(CorruptFileError, match="version 9"):
        container.unpack(bytes(data))
    with pytest.raises(CorruptFileError, match="magic"):
        container.unpack(b"PNG\x02" + bytes(data[4:]))


def test_huge_claimed_sizes_are_refused_before_allocation():
    big = Header(container.KIND_IMAGE, 0, "img1", b"abcd", 100000, 100000, 1)
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack(container.pack(big, _chunks([1] * len(big.chunk_grid()))))
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack(packed(), max_pixels=1000)
    long = AudioHeader(0, "aud1", b"abcd", 8000, 1, 8000 * 86400 * 10, 600 * 86400 * 10, (4,))
    head = container.pack_audio(long, _chunks([0] * long.segments))
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack_audio(head)
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack_audio(packed_audio(), max_seconds=5)


def test_a_model_name_that_is_not_ascii_is_a_usage_error():
    with pytest.raises(UsageError, match="ASCII"):
        container.pack(replace(HEADER, model_name="bild\u00e9"), _chunks([3]))
