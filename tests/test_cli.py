from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main


def _write_photo(path, photo):
    Image.fromarray(photo).save(path)
    return path


def test_compress_decompress_info(tmp_path, photo):
    src = _write_photo(tmp_path / "photo.png", photo)
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(src), "-q", "2", "-m", "tiny"])
    assert result.exit_code == 0, result.output
    vqc = tmp_path / "photo.vqc"
    assert vqc.exists() and "bpp" in result.output
    result = runner.invoke(main, ["info", str(vqc), "--json"])
    fields = json.loads(result.output)
    assert fields["width"] == 72 and fields["quality"] == 2 and fields["bytes"] == vqc.stat().st_size
    assert abs(fields["bpp"] - vqc.stat().st_size * 8 / (72 * 48)) < 1e-4
    result = runner.invoke(main, ["decompress", str(vqc)])
    assert result.exit_code == 0, result.output
    out = tmp_path / "photo.vqc.png"
    assert Image.open(out).size == (72, 48)
    assert not list(tmp_path.glob("*.part"))


def test_existing_output_needs_force(tmp_path, photo):
    src = _write_photo(tmp_path / "photo.png", photo)
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(src), "-m", "tiny", "-q", "1"]).exit_code == 0
    before = (tmp_path / "photo.vqc").read_bytes()
    result = runner.invoke(main, ["compress", str(src), "-m", "tiny", "-q", "3"])
    assert result.exit_code == 2 and "--force" in result.output
    assert (tmp_path / "photo.vqc").read_bytes() == before
    assert runner.invoke(main, ["compress", str(src), "-m", "tiny", "-q", "3", "--force"]).exit_code == 0
    assert (tmp_path / "photo.vqc").read_bytes() != before


def test_output_equal_to_input_is_refused(tmp_path, photo):
    src = _write_photo(tmp_path / "photo.png", photo)
    result = CliRunner().invoke(main, ["compress", str(src), "-o", str(src), "--force", "-m", "tiny"])
    assert result.exit_code == 2 and "is the input" in result.output
    assert np.array_equal(np.asarray(Image.open(src)), photo)


def test_exit_statuses(tmp_path, photo):
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(tmp_path / "missing.png")]).exit_code == 3
    junk = tmp_path / "junk.vqc"
    junk.write_bytes(b"VQC\x01" + b"\x00" * 40)
    assert runner.invoke(main, ["decompress", str(junk)]).exit_code == 4
    src = _write_photo(tmp_path / "photo.png", photo)
    result = runner.invoke(main, ["compress", str(src), "-m", "tiny", "-q", "7"])
    assert result.exit_code == 2 and "1..3" in result.output
    assert runner.invoke(main, ["compress", str(src), "-m", "absent"]).exit_code == 5


def test_standard_input_and_output(tmp_path, photo):
    src = _write_photo(tmp_path / "photo.png", photo)
    runner = CliRunner()
    coded = runner.invoke(main, ["compress", "-", "-m", "tiny", "-q", "1"], input=src.read_bytes())
    assert coded.exit_code == 0
    assert coded.stdout_bytes[:3] == b"VQC"
    decoded = runner.invoke(main, ["decompress", "-"], input=coded.stdout_bytes)
    assert decoded.exit_code == 0 and decoded.stdout_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert runner.invoke(main, ["compress", "-", "-m", "tiny", "-q", "1"], input=b"not an image").exit_code == 3


def test_interrupted_write_leaves_no_file(tmp_path, photo, monkeypatch):
    src = _write_photo(tmp_path / "photo.png", photo)

    def interrupted(pixels, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("vqcodec.codec.image.compress", interrupted)
    result = CliRunner().invoke(main, ["compress", str(src), "-m", "tiny", "-q", "1"])
    assert result.exit_code == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, photo, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    src = _write_photo(tmp_path / "photo.png", photo)
    result = CliRunner().invoke(main, ["compress", str(src), "-m", "tiny", "-q", "1", "--device", "cuda"])
    assert result.exit_code == 2 and "no CUDA GPU" in result.output


def test_atomic_write_removes_its_partial_file(tmp_path):
    import pytest

    from cli.main import _write_atomic

    def write_then_die(f):
        f.write(b"half a file")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _write_atomic(tmp_path / "out.vqc", write_then_die)
    assert list(tmp_path.iterdir()) == []


def _write_sound(path, rate=22050, seconds=1.5, channels=2):
    import soundfile

    t = np.arange(int(rate * seconds)) / rate
    wave = np.stack([0.3 * np.sin(2 * np.pi * (200 + 150 * c) * t) for c in range(channels)], 1)
    soundfile.write(path, wave, rate)
    return path


def test_audio_compress_decompress_info(tmp_path):
    import soundfile

    src = _write_sound(tmp_path / "talk.flac")
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(src), "-b", "5", "-m", "tinyaudio"])
    assert result.exit_code == 0, result.output
    vqc = tmp_path / "talk.vqc"
    assert "kbps" in result.output and "stages 2+0" in result.output
    fields = json.loads(runner.invoke(main, ["info", str(vqc), "--json"]).output)
    assert (fields["kind"], fields["sample_rate"], fields["channels"], fields["samples"]) == ("audio", 22050, 2, 33075)
    assert fields["duration_s"] == 1.5 and fields["bytes"] == vqc.stat().st_size
    assert fields["kbps"] == pytest.approx(vqc.stat().st_size * 8 / 1000 / 1.5, abs=1e-3)
    result = runner.invoke(main, ["decompress", str(vqc)])
    assert result.exit_code == 0, result.output
    decoded = soundfile.info(str(tmp_path / "talk.vqc.wav"))
    assert (decoded.samplerate, decoded.channels, decoded.frames) == (22050, 2, 33075)
    assert runner.invoke(main, ["decompress", str(vqc)]).exit_code == 2  # exists: needs --force
    assert runner.invoke(main, ["decompress", str(vqc), "-o", str(tmp_path / "x.flac")]).exit_code == 0
    assert soundfile.info(str(tmp_path / "x.flac")).frames == 33075
    assert runner.invoke(main, ["decompress", str(vqc), "-o", str(tmp_path / "x.mp4")]).exit_code == 2
    assert not list(tmp_path.glob("*.part"))


def test_decoding_limits_are_options(tmp_path, photo):
    runner = CliRunner()
    src = _write_photo(tmp_path / "photo.png", photo)
    assert runner.invoke(main, ["compress", str(src), "-m", "tiny", "-q", "1"]).exit_code == 0
    result = runner.invoke(main, ["decompress", str(tmp_path / "photo.vqc"), "--max-pixels", "100"])
    assert result.exit_code == 4 and "over the limit of 100 pixels" in result.output
    assert not (tmp_path / "photo.vqc.png").exists()
    sound = _write_sound(tmp_path / "talk.flac")  # 1.5 s
    assert runner.invoke(main, ["compress", str(sound), "-m", "tinyaudio"]).exit_code == 0
    result = runner.invoke(main, ["decompress", str(tmp_path / "talk.vqc"), "--max-hours", "0.0001"])
    assert result.exit_code == 4 and "over the limit" in result.output
    assert runner.invoke(main, ["decompress", str(tmp_path / "talk.vqc"), "--max-hours", "0.001"]).exit_code == 0


def test_audio_on_stdin_is_recognised(tmp_path):
    src = _write_sound(tmp_path / "a.wav", channels=1)
    result = CliRunner().invoke(main, ["compress", "-", "-m", "tinyaudio"], input=src.read_bytes())
    assert result.exit_code == 0
    assert result.stdout_bytes[:5] == b"VQC\x02\x01"


def test_bad_audio_exit_status(tmp_path):
    import soundfile

    bad = tmp_path / "nan.wav"
    soundfile.write(bad, np.array([0.0, np.nan, 0.1], dtype=np.float32), 8000, subtype="FLOAT")
    result = CliRunner().invoke(main, ["compress", str(bad), "-m", "tinyaudio"])
    assert result.exit_code == 3 and "NaN" in result.output
    empty = tmp_path / "empty.flac"
    empty.write_bytes(b"")
    assert CliRunner().invoke(main, ["compress", str(empty), "-m", "tinyaudio"]).exit_code == 3


def test_the_console_script_keeps_exit_statuses_and_output(tmp_path, photo):
    """`run` (the installed `vqcodec`) ends the process without the interpreter's teardown:
    the exit status, the piped output and the written file are as `main` makes them."""
    import subprocess
    import sys

    src = _write_photo(tmp_path / "photo.png", photo)

    def vqcodec(*args):
        code = "import sys; from cli.main import run; sys.argv = ['vqcodec', *sys.argv[1:]]; run()"
        return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)

    done = vqcodec("compress", str(src), "-m", "tiny", "-q", "1")
    assert done.returncode == 0 and "bpp" in done.stdout, done.stderr
    info = vqcodec("info", str(tmp_path / "photo.vqc"), "--json")
    assert info.returncode == 0 and json.loads(info.stdout)["bytes"] == (tmp_path / "photo.vqc").stat().st_size
    again = vqcodec("compress", str(src), "-m", "tiny", "-q", "1")
    assert again.returncode == 2 and "--force" in again.stderr
    missing = vqcodec("decompress", str(tmp_path / "nothing.vqc"))
    assert missing.returncode == 2 and "error" in missing.stderr


def test_a_profiled_image_is_coded_as_srgb_and_info_says_so(tmp_path, photo):
    from pathlib import Path

    profile = (Path(__file__).parent / "data" / "compatibleWithAdobeRGB1998.icc").read_bytes()
    Image.fromarray(photo).save(tmp_path / "adobe.png", icc_profile=profile)
    _write_photo(tmp_path / "plain.png", photo)
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(tmp_path / "adobe.png"), "-m", "tiny", "-q", "1"])
    assert result.exit_code == 0 and "warning: colours converted to sRGB" in result.output
    assert runner.invoke(main, ["compress", str(tmp_path / "plain.png"), "-m", "tiny", "-q", "1"]).exit_code == 0
    for name, converted in (("adobe", True), ("plain", False)):
        fields = json.loads(runner.invoke(main, ["info", str(tmp_path / f"{name}.vqc"), "--json"]).output)
        assert fields["converted_to_srgb"] is converted


def test_library_failures_a_user_causes_are_one_line_errors(tmp_path, monkeypatch):
    """An empty bench folder is bad input (3); training on a GPU that is not there a usage error (2)."""
    import torch

    (tmp_path / "empty").mkdir()
    result = CliRunner().invoke(main, ["bench", "image", str(tmp_path / "empty"), "-o", str(tmp_path / "r")])
    assert result.exit_code == 3 and "no images in" in result.output, result.output
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(photos / "a.png")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    args = ["train", "image", str(photos), "-o", str(tmp_path / "m"), "--device", "cuda", "--vqvae-minutes", "0.01"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "no CUDA GPU" in result.output and "Traceback" not in result.output, result.output
