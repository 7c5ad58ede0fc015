"""What a new user meets first: options that do not apply, binary output on a terminal, missing
files and extras, and answers that come before torch is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main
from tests.test_cli import _write_photo, _write_sound


@pytest.fixture
def photo_file(tmp_path, photo):
    return _write_photo(tmp_path / "photo.png", photo)


@pytest.fixture
def sound_file(tmp_path):
    return _write_sound(tmp_path / "talk.flac")


def _usage_error(args: list[str], *words: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    line = result.output.strip()
    assert "\n" not in line and line.startswith("vqcodec: error:"), line
    for word in words:
        assert word in line, line


def test_options_for_the_other_kind_are_usage_errors(tmp_path, photo_file, sound_file):
    _usage_error(["compress", str(sound_file), "-q", "2", "-m", "tinyaudio"], "-q/--quality", "sound", "-b/--bitrate")
    _usage_error(["compress", str(photo_file), "-b", "1.5", "-m", "tiny"], "-b/--bitrate", "images", "-q/--quality")
    assert not (tmp_path / "talk.vqc").exists() and not (tmp_path / "photo.vqc").exists()
    runner = CliRunner()
    assert runner.invoke(main, ["compress", str(sound_file), "-m", "tinyaudio"]).exit_code == 0
    assert runner.invoke(main, ["compress", str(photo_file), "-m", "tiny", "-q", "1"]).exit_code == 0
    sound_vqc, photo_vqc = str(tmp_path / "talk.vqc"), str(tmp_path / "photo.vqc")
    _usage_error(["decompress", sound_vqc, "--compare", str(sound_file)], "--compare", "sound")
    _usage_error(["decompress", sound_vqc, "--max-pixels", "100"], "--max-pixels", "--max-hours")
    _usage_error(["decompress", photo_vqc, "--max-hours", "1"], "--max-hours", "--max-pixels")
    assert not (tmp_path / "talk.vqc.wav").exists() and not (tmp_path / "photo.vqc.png").exists()


def test_a_bitrate_beyond_the_model_is_a_usage_error(sound_file):
    # tinyaudio: 4 stages of 2.4 kbps per channel; the sound is stereo
    _usage_error(["compress", str(sound_file), "-b", "100", "-m", "tinyaudio"], "19.2 kbps", "2 channels")
    assert CliRunner().invoke(main, ["compress", str(sound_file), "-b", "19.2", "-m", "tinyaudio"]).exit_code == 0


def test_a_missing_model_file_says_so(photo_file):
    result = CliRunner().invoke(main, ["compress", str(photo_file), "-m", "nope.safetensors"])
    assert result.exit_code == 5 and "nope.safetensors: no such file" in result.output


def test_a_damaged_model_file_is_a_clear_error(tmp_path, photo_file):
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    result = CliRunner().invoke(main, ["compress", str(photo_file), "-m", str(broken)])
    assert result.exit_code == 5 and "is not a vqcodec model" in result.output and "Traceback" not in result.output


def _on_a_terminal(args: list[str], cwd) -> tuple[int, bytes]:
    """Run the command with its standard output on a pseudo-terminal: (status, what it showed)."""
    import pty

    leader, follower = pty.openpty()
    code = "import sys; from cli.main import main; sys.argv = ['vqcodec', *sys.argv[1:]]; main()"
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", code, *args], stdout=follower, stderr=subprocess.PIPE, cwd=cwd, env=env, timeout=120
    )
    os.close(follower)
    shown = b""
    try:
        while chunk := os.read(leader, 65536):
            shown += chunk
    except OSError:  # the terminal is closed once everything is read
        pass
    os.close(leader)
    return done.returncode, shown + done.stderr


def test_binary_output_is_never_written_to_a_terminal(tmp_path, photo_file):
    status, shown = _on_a_terminal(["compress", str(photo_file), "-o", "-", "-m", "tiny"], tmp_path)
    assert status == 2 and b"not writing a .vqc file to a terminal" in shown and b"VQC" not in shown
    assert CliRunner().invoke(main, ["compress", str(photo_file), "-m", "tiny", "-q", "1"]).exit_code == 0
    status, shown = _on_a_terminal(["decompress", str(tmp_path / "photo.vqc"), "-o", "-"], tmp_path)
    assert status == 2 and b"not writing an image to a terminal" in shown and b"PNG" not in shown
    forced = ["compress", str(photo_file), "-o", "-", "-m", "tiny", "-q", "1", "--force"]
    status, shown = _on_a_terminal(forced, tmp_path)
    assert status == 0 and b"VQC" in shown


def _torch_imported(args: list[str], env: dict) -> tuple[int, bool, str]:
    code = (
        "import sys\nfrom cli.main import main\nsys.argv = ['vqcodec', *sys.argv[1:]]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    status = e.code\n"
        "print(status, 'torch' in sys.modules, file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120)
    status, imported = done.stderr.split()[-2:]
    return int(status or 0), imported == "True", done.stderr + done.stdout


def test_help_info_and_usage_errors_answer_without_torch(tmp_path, photo_file, sound_file, models_dir):
    env = {**os.environ, "VQCODEC_MODELS": str(models_dir), "PYTHONPATH": os.getcwd()}
    assert CliRunner().invoke(main, ["compress", str(photo_file), "-m", "tiny", "-q", "1"]).exit_code == 0
    cases = [
        (["--help"], 0),
        (["compress", "--help"], 0),
        (["info", str(tmp_path / "photo.vqc")], 0),
        (["compress", str(photo_file), "-m", "tiny", "-q", "9"], 2),
        (["compress", str(photo_file), "-m", "tiny", "-b", "6"], 2),
        (["compress", str(photo_file), "-m", "tiny"], 2),  # the output exists
        (["compress", str(sound_file), "-m", "tinyaudio", "-q", "1"], 2),
        (["compress", str(sound_file), "-m", "tinyaudio", "-b", "99"], 2),
        (["decompress", str(tmp_path / "nothing.vqc")], 2),
    ]
    for args, expected in cases:
        status, imported, output = _torch_imported(args, env)
        assert status == expected and not imported, (args, output)


def test_a_missing_extra_is_named_before_any_work(tmp_path, photo_file, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    folder = tmp_path / "photos"
    folder.mkdir()
    _write_photo(folder / "a.png", np.asarray(Image.open(photo_file)))
    for args in (["bench", "image", str(folder)], ["inspect", str(tmp_path / "photo.vqc")]):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 5, result.output
        assert "needs matplotlib" in result.output and "pip install 'vqcodec[bench]'" in result.output


def test_counts_are_spelled_right(tmp_path):
    args = ["sample", "image", "-n", "1", "-o", str(tmp_path), "--size", "16x16", "-m", "tiny"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0 and "1 image of 16x16" in result.output


def test_bench_reports_each_quality_when_not_on_a_terminal(capsys, photo):
    from vqcodec.bench.image import baseline_codecs, run_codec

    jpeg = next(c for c in baseline_codecs() if c.name == "JPEG")
    jpeg.qualities = [20, 80]
    big = np.tile(photo, (4, 3, 1))  # MS-SSIM needs more than 160 pixels a side
    result = run_codec(jpeg, {"a": big, "b": big[::-1].copy()}, progress=False)
    lines = capsys.readouterr().err.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["JPEG quality 20", "JPEG quality 80"]
    assert "2 images" in lines[0] and json.dumps(result["results"]["quality"]) == "[20, 80]"


def test_size_and_quality_targets_on_the_command_line(tmp_path, photo_file, sound_file):
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(photo_file), "-m", "tiny", "--size", "0.2k"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "photo.vqc").stat().st_size <= 200 and "quality " in result.output
    result = runner.invoke(main, ["compress", str(photo_file), "-m", "tiny", "--bpp", "0.5", "--force"])
    assert result.exit_code == 0 and (tmp_path / "photo.vqc").stat().st_size * 8 <= 0.5 * 72 * 48
    _usage_error(["compress", str(photo_file), "-m", "tiny", "--size", "3", "--force"], "the smallest is")
    _usage_error(["compress", str(photo_file), "-m", "tiny", "--size", "2k", "-q", "2"], "give one of")
    _usage_error(["compress", str(sound_file), "-m", "tinyaudio", "--bpp", "0.5"], "--bpp does not apply to sound")
    result = runner.invoke(main, ["compress", str(photo_file), "-m", "tiny", "--size", "lots"])
    assert result.exit_code == 2 and "is not a size" in result.output


def test_a_size_target_for_sound_varies_the_stages_by_segment(tmp_path):
    """The sound is coded once with every stage; the stage counts of its 10-second chunks (here
    1.25 s: the tiny model's segments) are chosen to fill the size, finer than a whole level."""
    import soundfile

    from vqcodec import container

    rng = np.random.default_rng(0)
    src = tmp_path / "long.wav"
    soundfile.write(src, (0.2 * rng.standard_normal((22050 * 7, 2))).astype(np.float32), 22050, subtype="FLOAT")
    out = tmp_path / "s.vqc"
    args = ["compress", str(src), "-m", "tinyaudio", "-o", str(out), "-f", "--size"]

    def totals(size: int) -> list[int]:
        """The stages (mid + side) of each segment of the file made for `size`."""
        result = CliRunner().invoke(main, [*args, str(size)])
        assert result.exit_code == 0 and "stages up to" in result.output, result.output
        assert out.stat().st_size <= size
        chunks = container.unpack_audio(out.read_bytes())[1]
        return [mid.stages + side.stages for mid, side in zip(chunks[::2], chunks[1::2], strict=True)]

    # 6 segments; every segment at 1, 2 and 3 stages makes 2,394, 4,674 and 7,078 bytes.
    made = [totals(size) for size in (3500, 4900, 6000, 8000)]
    assert all(max(t) - min(t) <= 1 for t in made)  # T or T + 1 stages in each segment
    assert [len(set(t)) for t in made] == [2, 1, 2, 2]  # finer than a level between the levels
    assert [min(t) for t in made] == [1, 2, 2, 3]
    _usage_error([*args, "20"], "the smallest is")
    _usage_error(["compress", str(src), "-m", "tinyaudio", "--size", "2k", "-b", "3"], "give one of")
