"""Corrupt and hostile .vqc files end in a VqcodecError (one line, distinct exit status),
never another exception, a hang or a huge allocation."""

from __future__ import annotations

import os
import time
import zlib

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import vqcodec
from vqcodec import container
from vqcodec.errors import CorruptFileError, VqcodecError

FUZZ_EXAMPLES = int(os.environ.get("VQCODEC_FUZZ_EXAMPLES", "200"))


@pytest.fixture(scope="module")
def valid_file(models_dir):
    y, x = np.mgrid[0:40, 0:56]
    img = np.stack([x * 4, y * 5, x + y], -1).astype(np.uint8)
    with pytest.MonkeyPatch.context() as env:  # (module fixtures come before the per-test one)
        env.setenv("VQCODEC_MODELS", str(models_dir))
        return vqcodec.compress(img, quality=3, model="tiny")


def _recrc(body: bytes) -> bytes:
    """Make the last 4 bytes the CRC of those before (a version 1 image's file CRC)."""
    return body[:-4] + zlib.crc32(body[:-4]).to_bytes(4, "little")


def _recrc_header(data: bytes) -> bytes:
    """Make a version 2 file's header CRC right again (where the header still parses), so that
    damage reaches the deeper checks."""
    try:
        end = container._header_length(data)
    except CorruptFileError:
        return data
    return data[:end] + zlib.crc32(data[:end]).to_bytes(4, "little") + data[end + 4 :]


def _decode(data: bytes) -> None:
    """Decode as the command line does (image or audio by the file's kind): only our errors, and
    no long work (CPU time of this process: other processes' load does not count)."""
    start = time.process_time()
    try:
        if vqcodec.kind_of(data) == "audio":
            vqcodec.decompress_audio(data, device="cpu")
        else:
            vqcodec.decompress(data, device="cpu")
    except VqcodecError:
        pass
    assert time.process_time() - start < 5


@pytest.fixture(scope="module")
def valid_audio(models_dir):
    t = np.arange(int(22050 * 1.6)) / 22050
    wave = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 500 * t)]).astype(np.float32) * 0.3
    with pytest.MonkeyPatch.context() as env:
        env.setenv("VQCODEC_MODELS", str(models_dir))
        return vqcodec.compress_audio((wave, 22050), bitrate=9.6, model="tinyaudio")


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.binary(max_size=200))
def test_random_bytes(data):
    _decode(data)
    _decode(b"VQC\x01" + data)
    _decode(_recrc(b"VQC\x01" + data + b"\x00\x00\x00\x00"))
    _decode(b"VQC\x02\x01" + data)


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_valid_files(valid_file, data):
    body = bytearray(valid_file)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 5))
        body[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(8, len(body)))
    _decode(bytes(body))
    _decode(_recrc_header(bytes(body)))
    _decode(_recrc_header(bytes(body[:cut])))


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(st.data())
def test_mutated_audio_files(valid_audio, data):
    body = bytearray(valid_audio)
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(body) - 1))
        body[i] = data.draw(st.integers(0, 255))
    _decode(bytes(body))
    _decode(bytes(body[: data.draw(st.integers(0, len(body)))]))
    _decode(_recrc_header(bytes(body)))


def test_every_truncation_and_bit_flip_of_an_audio_file_is_refused(valid_audio):
    for n in range(len(valid_audio)):
        with pytest.raises(CorruptFileError):
            vqcodec.decompress_audio(valid_audio[:n])
    chunks = container.unpack_audio(valid_audio)[1]
    header_size = len(valid_audio) - sum(c.size + 4 + 4 * c.stages for c in chunks)
    # Every bit of the header; payload and CRC bytes at a stride (each of those costs a decode).
    for i in [*range(header_size), *range(header_size, len(valid_audio), 41)]:
        for bit in (0, 3, 7) if i < header_size else (5,):
            body = bytearray(valid_audio)
            body[i] ^= 1 << bit
            with pytest.raises(VqcodecError):
                vqcodec.decompress_audio(bytes(body))


def test_a_damaged_payload_with_its_crc_made_right_fails_the_indices_crc(valid_file):
    """Damage that the payload CRC does not see (here the CRC is recomputed) must still be
    caught: the decoded indices fail their CRC, or decode to the same image."""
    _, chunks = container.unpack(valid_file)
    chunk = chunks[0]
    start = len(valid_file) - 4 * chunk.stages - 4 - chunk.size

    def damaged(offset: int) -> bytes:
        body = bytearray(valid_file)
        body[start + offset] ^= 0x5A
        payload = bytes(body[start : start + chunk.size])
        body[start + chunk.size : start + chunk.size + 4] = zlib.crc32(payload).to_bytes(4, "little")
        assert container.unpack(bytes(body))[1][0].check() is None  # the file's own checks pass
        return bytes(body)

    for offset in (0, len(chunk.payloads[0]) // 2):
        with pytest.raises(CorruptFileError, match="indices fail their CRC"):
            vqcodec.decompress(damaged(offset))
    # The range coder's last word may end in padding: damage there is caught or changes nothing.
    try:
        decoded = vqcodec.decompress(damaged(chunk.size - 1))
    except CorruptFileError:
        return
    assert np.array_equal(np.asarray(decoded), np.asarray(vqcodec.decompress(valid_file)))


def test_claimed_giant_image_is_refused_quickly():
    header = container.Header(container.KIND_IMAGE, 0, "tiny", b"abcd", 1 << 20, 1 << 20, 1)
    body = b"VQC\x02\x00\x00\x04tinyabcd" + container._varint(1 << 20) * 2 + b"\x00\x01" + b"\x00" * 8
    start = time.process_time()
    with pytest.raises(CorruptFileError, match="over the limit"):
        vqcodec.decompress(_recrc(body))
    assert time.process_time() - start < 1
    assert header.width == 1 << 20
