"""Scalable files (decoding fewer stages, `truncate`), metadata kept on request, and files of
format version 1 decoding with the shipped models."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image, ImageCms, PngImagePlugin

import vqcodec
from cli.main import main
from vqcodec import container
from vqcodec.codec import audio as audio_codec
from vqcodec.errors import UsageError

from .test_media import ADOBE_RGB, _in_adobe_rgb, _saturated

V1_FILES = Path(__file__).parent / "data" / "v1"
REPO_MODELS = Path(__file__).resolve().parent.parent / "models"


def _sound(seconds: float = 2.0, rate: int = 22050) -> tuple[np.ndarray, int]:
    t = np.arange(int(rate * seconds)) / rate
    wave = np.stack([np.sin(2 * np.pi * 300 * t), 0.5 * np.sin(2 * np.pi * 450 * t)]) * 0.3
    return wave.astype(np.float32), rate


def test_an_image_decodes_at_fewer_stages_as_its_truncation_does(photo):
    data = vqcodec.compress(photo, quality=3, model="tiny")
    for q in (1, 2):
        smaller = container.truncate(data, q)
        assert len(smaller) < len(data) and vqcodec.read_header(smaller).quality == q
        assert np.array_equal(np.asarray(vqcodec.decompress(smaller)), np.asarray(vqcodec.decompress(data, stages=q)))
    assert container.truncate(data, 3) == data


def test_a_sound_decodes_at_fewer_stages_as_its_truncation_does():
    data = vqcodec.compress_audio(_sound(), bitrate=9.6, model="tinyaudio")  # 3 + 1 stages of 2.4 kbps (mid + side)
    header, _ = container.unpack_audio(data)
    assert header.stages == (3, 1)
    smaller = container.truncate(data, (1, 0))
    assert container.unpack_audio(smaller)[0].stages == (1, 0) and len(smaller) < len(data)
    direct, _ = audio_codec.decompress_audio(data, stages=(1, 0))
    truncated, _ = audio_codec.decompress_audio(smaller)
    assert np.array_equal(direct, truncated) and not np.array_equal(direct, audio_codec.decompress_audio(data)[0])


def test_truncate_and_decompress_on_the_command_line(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "p.png")
    run = CliRunner().invoke
    assert run(main, ["compress", str(tmp_path / "p.png"), "-q", "3", "-m", "tiny"]).exit_code == 0
    big = tmp_path / "p.vqc"
    result = run(main, ["truncate", str(big), "-q", "1", "-o", str(tmp_path / "small.vqc")])
    assert result.exit_code == 0 and "stages 1" in result.output
    small = (tmp_path / "small.vqc").read_bytes()
    assert run(main, ["decompress", str(big), "-q", "1", "-o", str(tmp_path / "a.png")]).exit_code == 0
    assert run(main, ["decompress", str(tmp_path / "small.vqc"), "-o", str(tmp_path / "b.png")]).exit_code == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "a.png")), np.asarray(Image.open(tmp_path / "b.png")))
    info = json.loads(run(main, ["info", "--json", str(tmp_path / "small.vqc")]).output)
    assert info["quality"] == 1 and info["format_version"] == 2 and info["scalable"] and info["bytes"] == len(small)
    for args, message in [
        (["truncate", str(big), "-o", str(tmp_path / "c.vqc")], "give the stages to keep"),
        (["truncate", str(big), "-b", "3", "-o", str(tmp_path / "c.vqc")], "-b/--bitrate does not apply to images"),
        (["truncate", str(big), "-q", "1", "-o", str(tmp_path / "small.vqc")], "exists"),
    ]:
        result = run(main, args)
        assert result.exit_code == 2 and message in result.output, result.output


def test_version_1_files_cannot_be_truncated_as_bytes_but_say_what_to_do():
    with pytest.raises(UsageError, match="upgrade it first"):
        container.truncate((V1_FILES / "small_q3.vqc").read_bytes(), 1)


@pytest.fixture
def shipped_models(monkeypatch):
    monkeypatch.setenv("VQCODEC_MODELS", str(REPO_MODELS))
    if not (REPO_MODELS / "img1.safetensors").exists() or not (REPO_MODELS / "aud1.safetensors").exists():
        pytest.skip("the shipped models are not in this checkout")


@pytest.mark.parametrize(
    "name, shape", [("small_q3", (48, 64, 3)), ("two_tiles_q2", (40, 1108, 3)), ("gray_q1", (48, 64))]
)
def test_version_1_images_still_decode(shipped_models, name, shape):
    data = (V1_FILES / f"{name}.vqc").read_bytes()
    image = np.asarray(vqcodec.decompress(data, device="cpu"))
    assert image.shape == shape  # and its indices passed the file's CRC of them
    header, _, indices = vqcodec.codec.image.decode_indices(data, "cpu")
    assert header.version == 1 and indices.shape[0] == header.quality


@pytest.mark.parametrize("name, channels", [("speech_3kbps", 1), ("stereo_1.5kbps", 2)])
def test_version_1_sounds_still_decode(shipped_models, name, channels):
    samples, rate = vqcodec.decompress_audio((V1_FILES / f"{name}.vqc").read_bytes(), device="cpu")
    assert samples.shape == (channels, 36000) and rate == 24000 and np.abs(samples).max() > 0.01


def _with_metadata(path: Path) -> Path:
    """An Adobe RGB photo with EXIF (a camera make) and XMP, as a PNG."""
    im = _in_adobe_rgb(_saturated())
    exif = Image.Exif()
    exif[0x010F] = "vqcodec test camera"
    info = PngImagePlugin.PngInfo()
    info.add_itxt("XML:com.adobe.xmp", "<x:xmpmeta xmlns:x='adobe:ns:meta/'>rated</x:xmpmeta>")
    im.save(path, icc_profile=ADOBE_RGB.read_bytes(), exif=exif, pnginfo=info)
    return path


def test_metadata_is_kept_only_when_asked(tmp_path):
    src = _with_metadata(tmp_path / "meta.png")
    run = CliRunner().invoke
    assert run(main, ["compress", str(src), "-q", "2", "-m", "tiny", "-o", str(tmp_path / "drop.vqc")]).exit_code == 0
    result = run(
        main, ["compress", str(src), "-q", "2", "-m", "tiny", "--keep-metadata", "-o", str(tmp_path / "keep.vqc")]
    )
    assert result.exit_code == 0 and "icc 580 bytes kept" in result.output, result.output
    info = json.loads(run(main, ["info", "--json", str(tmp_path / "keep.vqc")]).output)
    assert set(info["metadata"]) == {"exif", "icc", "xmp"} and not info["converted_to_srgb"]
    dropped = json.loads(run(main, ["info", "--json", str(tmp_path / "drop.vqc")]).output)
    assert dropped["metadata"] == {} and dropped["converted_to_srgb"]
    assert run(main, ["decompress", str(tmp_path / "keep.vqc"), "-o", str(tmp_path / "keep.png")]).exit_code == 0
    back = Image.open(tmp_path / "keep.png")
    assert back.info["icc_profile"] == ADOBE_RGB.read_bytes()
    assert back.getexif()[0x010F] == "vqcodec test camera" and b"rated" in back.info["xmp"]
    # In WebP too (lossless, as vqcodec writes it), which holds all three.
    assert run(main, ["decompress", str(tmp_path / "keep.vqc"), "-o", str(tmp_path / "keep.webp")]).exit_code == 0
    webp = Image.open(tmp_path / "keep.webp")
    assert webp.info["icc_profile"] == ADOBE_RGB.read_bytes() and webp.getexif()[0x010F] == "vqcodec test camera"
    assert b"rated" in webp.info["xmp"]


def test_a_kept_profile_keeps_the_pixels_and_shows_the_same_colours(tmp_path):
    """Coded in Adobe RGB with the profile kept, the decoded image converted to sRGB by its
    profile matches the sRGB conversion of the source within a few levels (as coding in sRGB
    does), here with no coding loss to blur it: the pixels go through untouched."""
    src = _with_metadata(tmp_path / "meta.png")
    image = vqcodec.codec.image.load_image(src, keep_metadata=True)
    assert image.converted_from is None and np.array_equal(image.pixels, np.asarray(Image.open(src).convert("RGB")))
    shown = ImageCms.profileToProfile(
        Image.fromarray(image.pixels),
        ImageCms.ImageCmsProfile(str(ADOBE_RGB)),
        ImageCms.createProfile("sRGB"),
        ImageCms.Intent.RELATIVE_COLORIMETRIC,
        "RGB",
    )
    assert np.abs(np.asarray(shown).astype(int) - _saturated()).max() <= 3


def test_metadata_does_not_apply_to_sound(tmp_path):
    import soundfile

    wave, rate = _sound(0.5)
    soundfile.write(tmp_path / "a.wav", wave.T, rate)
    result = CliRunner().invoke(main, ["compress", str(tmp_path / "a.wav"), "--keep-metadata", "-m", "tinyaudio"])
    assert result.exit_code == 2 and "--keep-metadata does not apply to sound" in result.output


V1_TRUNCATIONS = [("small_q3", ["-q", "2"]), ("two_tiles_q2", ["-q", "1"]), ("stereo_1.5kbps", ["-b", "0.75"])]


@pytest.mark.parametrize("name, args", V1_TRUNCATIONS)
def test_version_1_files_are_upgraded_to_truncate_them(shipped_models, tmp_path, name, args):
    """The same indices, coded again stage by stage: the upgraded file decodes as the original,
    and its truncation as the original at fewer stages."""
    src = V1_FILES / f"{name}.vqc"
    data = src.read_bytes()
    result = CliRunner().invoke(main, ["truncate", str(src), *args, "-o", str(tmp_path / "t.vqc")])
    assert result.exit_code == 0 and "re-coded from format version 1" in result.output, result.output
    smaller = (tmp_path / "t.vqc").read_bytes()
    assert container.check_magic(smaller) == 2
    if container.kind_of(data) == "audio":
        upgraded = audio_codec.upgrade_audio(data, "cpu")
        same = np.array_equal(vqcodec.decompress_audio(upgraded, "cpu")[0], vqcodec.decompress_audio(data, "cpu")[0])
        fewer = np.array_equal(
            vqcodec.decompress_audio(smaller, "cpu")[0], vqcodec.decompress_audio(data, "cpu", stages=(1, 0))[0]
        )
    else:

        def pixels(coded: bytes, stages: int | None = None) -> np.ndarray:
            return np.asarray(vqcodec.decompress(coded, "cpu", stages=stages))

        same = np.array_equal(pixels(vqcodec.codec.image.upgrade(data, "cpu")), pixels(data))
        fewer = np.array_equal(pixels(smaller), pixels(data, int(args[1])))
    assert same and fewer
