import zlib

import pytest

from vqcodec import container
from vqcodec.container import Header
from vqcodec.errors import CorruptFileError

HEADER = Header(container.KIND_IMAGE, 0, "img1", b"\x01\x02\x03\x04", 768, 512, 3)


def packed() -> bytes:
    return container.pack(HEADER, [b"\x00" * 8], 0x12345678)


def test_roundtrip_and_size():
    data = packed()
    header, payloads, crc = container.unpack(data)
    assert header == HEADER and payloads == [b"\x00" * 8] and crc == 0x12345678
    # magic+version 4, kind/flags/len 3, name 4, hash 4, sizes 2+2, quality 1, length 1, CRCs 8
    assert len(data) - 8 == 29


@pytest.mark.parametrize("n", [0, 1, 127, 128, 300, 2**20, 2**35 - 1])
def test_varint_roundtrip(n):
    r = container._Reader(container._varint(n))
    assert r.varint(max_bytes=5) == n


def test_chunk_grid_covers_latents():
    header = Header(0, 0, "m", b"abcd", 2100, 1030, 1)
    grid = header.chunk_grid()
    h, w = header.latent_shape
    assert (h, w) == (129, 263)
    assert sum(ch * cw for _, _, ch, cw in grid) == h * w
    assert len(grid) == 2 * 3


def test_every_truncation_is_refused():
    data = packed()
    for n in range(len(data)):
        with pytest.raises(CorruptFileError):
            container.unpack(data[:n])


def test_every_bit_flip_is_refused():
    data = packed()
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(CorruptFileError):
                container.unpack(bytes(bad))


def test_future_version_and_bad_magic():
    data = bytearray(packed())
    data[3] = 9
    with pytest.raises(CorruptFileError, match="version 9"):
        container.unpack(bytes(data))
    with pytest.raises(CorruptFileError, match="magic"):
        container.unpack(b"PNG\x01" + bytes(data[4:]))


def _with_crc(body: bytes) -> bytes:
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_huge_claimed_size_is_refused_before_allocation():
    big = Header(container.KIND_IMAGE, 0, "img1", b"abcd", 100000, 100000, 1)
    body = container.pack(big, [b""] * len(big.chunk_grid()), 0)[:-4]
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack(_with_crc(body))
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack(packed(), max_pixels=1000)
