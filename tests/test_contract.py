"""What every medium's codec promises, tested for each: a round trip of the right shape, the
same indices however often it is decoded, fewer stages decoded as the truncated file, a damaged
chunk named, a file of other weights refused (and one of a retired version decoded), `info`
without decoding, and the table's codec
(`vqcodec.codec.CODECS`) doing for the command line what the API does."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import soundfile
from click.testing import CliRunner
from PIL import Image

import vqcodec
from cli.main import main
from vqcodec import container
from vqcodec.codec import CODECS, codec_for
from vqcodec.codec.base import Decoding
from vqcodec.errors import CorruptFileError, MissingModelError

from .conftest import build_tiny_audio_model, build_tiny_model


@dataclass
class Medium:
    name: str
    model: str
    encode: Callable[[], bytes]  # a small input, coded at its top rate
    decode: Callable[..., np.ndarray]  # file (, stages) -> samples or pixels
    fewer: object  # what `truncate` and `stages=` take for fewer stages
    fewer_level: float  # the quality or bitrate that keeps those stages
    unpack: Callable[[bytes], tuple]
    write_source: Callable  # path -> a file the command line codes
    rebuild_model: Callable  # path -> other weights under the same name
    rate: list[str]  # the command line's options for that top rate


def _photo() -> np.ndarray:
    y, x = np.mgrid[0:40, 0:56]
    return np.stack([x * 4, y * 5, x + y], -1).astype(np.uint8)


def _sound() -> tuple[np.ndarray, int]:
    t = np.arange(int(22050 * 2.6)) / 22050
    return (np.stack([np.sin(2 * np.pi * 300 * t), 0.4 * np.sin(2 * np.pi * 500 * t)]) * 0.3).astype(np.float32), 22050


MEDIA = {
    "image": Medium(
        "image",
        "tiny",
        lambda: vqcodec.compress(_photo(), quality=3, model="tiny"),
        lambda data, stages=None: np.asarray(vqcodec.decompress(data, stages=stages)),
        2,
        2,
        container.unpack,
        lambda path: Image.fromarray(_photo()).save(path.with_suffix(".png")) or path.with_suffix(".png"),
        lambda path: build_tiny_model(path, seed=1),
        ["-q", "3"],
    ),
    "audio": Medium(
        "audio",
        "tinyaudio",
        lambda: vqcodec.compress_audio(_sound(), bitrate=9.6, model="tinyaudio"),
        lambda data, stages=None: vqcodec.decompress_audio(data, stages=stages)[0],
        (1, 0),
        2.4,
        container.unpack_audio,
        lambda path: (
            soundfile.write(path.with_suffix(".wav"), _sound()[0].T, 22050, subtype="FLOAT") or path.with_suffix(".wav")
        ),
        lambda path: build_tiny_audio_model(path, seed=1),
        ["-b", "9.6"],
    ),
}


@pytest.fixture(params=sorted(MEDIA))
def medium(request) -> Medium:
    return MEDIA[request.param]


def test_round_trip_has_the_source_shape_and_is_deterministic(medium):
    data = medium.encode()
    assert vqcodec.kind_of(data) == medium.name and container.check_magic(data) == container.VERSION
    first, second = medium.decode(data), medium.decode(data)
    assert np.array_equal(first, second)
    assert first.shape == ((40, 56, 3) if medium.name == "image" else (2, int(22050 * 2.6)))


def test_fewer_stages_decode_as_the_truncated_file(medium):
    data = medium.encode()
    smaller = container.truncate(data, medium.fewer)
    assert len(smaller) < len(data)
    assert np.array_equal(medium.decode(smaller), medium.decode(data, medium.fewer))
    assert not np.array_equal(medium.decode(smaller), medium.decode(data))


def test_a_damaged_chunk_is_named(medium):
    data = bytearray(medium.encode())
    _, chunks = medium.unpack(bytes(data))
    last = chunks[-1]
    start = len(data) - 4 * last.stages - 4 - last.size  # the last chunk's payloads
    data[start + last.size // 2] ^= 0x21
    with pytest.raises(CorruptFileError, match=f"{last.label} is damaged"):
        medium.decode(bytes(data))


def test_a_file_of_other_weights_is_refused(medium, tmp_path, monkeypatch):
    data = medium.encode()
    medium.rebuild_model(tmp_path / f"{medium.model}.safetensors")
    monkeypatch.setenv("VQCODEC_MODELS", str(tmp_path))
    with pytest.raises(MissingModelError, match=f"different version of model '{medium.model}'"):
        medium.decode(data)


def test_a_file_of_a_retired_version_still_decodes(medium, tmp_path, monkeypatch, models_dir):
    """A shipped model rebuilt after its old version is retired: the files of both decode, each
    with its own weights."""
    import shutil

    from vqcodec.registry import _load, retire_model

    for path in models_dir.glob("*.safetensors"):
        shutil.copy(path, tmp_path)
    monkeypatch.setenv("VQCODEC_MODELS", str(tmp_path))
    old = medium.encode()
    decoded = medium.decode(old)
    retired = retire_model(medium.model)
    assert retired.parent == tmp_path / "retired" and retired.name.startswith(f"{medium.model}-")
    medium.rebuild_model(tmp_path / f"{medium.model}.safetensors")
    _load.cache_clear()
    new = medium.encode()
    assert medium.unpack(new)[0].model_hash != medium.unpack(old)[0].model_hash
    assert np.array_equal(medium.decode(old), decoded)
    assert medium.decode(new).shape == decoded.shape
    retired.unlink()
    with pytest.raises(MissingModelError, match="different version"):
        medium.decode(old)


def test_info_reads_the_header_without_decoding(medium, tmp_path):
    src = medium.write_source(tmp_path / "source")
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(src), "-m", medium.model, *medium.rate]).exit_code == 0
    fields = json.loads(runner.invoke(main, ["info", "--json", str(src.with_suffix(".vqc"))]).output)
    assert fields["kind"] == medium.name and fields["model"] == medium.model and fields["format_version"] == 2
    assert fields["scalable"] and fields["bytes"] == src.with_suffix(".vqc").stat().st_size
    assert src.with_suffix(".vqc").read_bytes() == medium.encode()  # the command line codes as the API does


def test_every_kind_of_file_has_one_codec_in_the_table():
    assert sorted(CODECS) == sorted(container.KIND_NAMES.values()) == sorted(MEDIA)
    assert all(codec.kind == kind for kind, codec in CODECS.items())


def test_the_tables_codec_decodes_into_a_file_as_the_api_does(medium):
    data = medium.encode()
    codec = codec_for(data)
    assert codec.kind == medium.name and codec.stages_for(data, medium.fewer_level) == medium.fewer
    out = io.BytesIO()
    summary, _ = codec.decode_to(data, out, codec.output_suffixes[0], Decoding("cpu", medium.fewer))
    out.seek(0)
    expected = medium.decode(data, medium.fewer)
    if medium.name == "image":
        assert np.array_equal(np.asarray(Image.open(out)), expected)
    else:  # 16-bit PCM of the decoded samples
        written, rate = soundfile.read(out, dtype="float32", always_2d=True)
        assert rate == 22050 and np.abs(written.T - np.clip(expected, -1, 1)).max() <= 1 / 32768
    assert summary and codec.info(data)["kind"] == medium.name
