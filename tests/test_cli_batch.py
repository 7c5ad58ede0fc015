"""Many inputs in one command: folders and lists of files, a bad file skipped, worker processes."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from cli.main import main


@pytest.fixture
def photos(tmp_path, photo):
    folder = tmp_path / "photos"
    (folder / "trip").mkdir(parents=True)
    Image.fromarray(photo).save(folder / "a.png")
    Image.fromarray(photo[::-1].copy()).save(folder / "trip" / "b.jpg")
    (folder / "trip" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "notes.txt").write_text("not an image, not looked at")
    return folder


def test_a_folder_is_coded_file_by_file_and_a_bad_file_is_skipped(tmp_path, photos):
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(photos), "-o", str(tmp_path / "coded"), "-m", "tiny", "-q", "2"])
    assert result.exit_code == 3, result.output  # the first failure's status: unreadable input
    assert "broken.png: " in result.output and "2 files compressed, 1 failed" in result.output
    assert (tmp_path / "coded" / "a.vqc").exists() and (tmp_path / "coded" / "trip" / "b.vqc").exists()
    assert not (tmp_path / "coded" / "trip" / "broken.vqc").exists()
    (tmp_path / "coded" / "junk.vqc").write_bytes(b"VQC\x01" + b"\x00" * 40)
    result = runner.invoke(main, ["decompress", str(tmp_path / "coded"), "-o", str(tmp_path / "decoded")])
    assert result.exit_code == 4 and "2 files decompressed, 1 failed" in result.output, result.output
    decoded = Image.open(tmp_path / "decoded" / "trip" / "b.vqc.png")
    assert decoded.size == (72, 48)


def test_several_files_go_beside_their_inputs_and_workers_code_the_same(tmp_path, photos):
    runner = CliRunner()
    files = [str(photos / "a.png"), str(photos / "trip" / "b.jpg")]
    assert runner.invoke(main, ["compress", *files, "-m", "tiny", "-q", "1"]).exit_code == 0
    alone = [(photos / "a.vqc").read_bytes(), (photos / "trip" / "b.vqc").read_bytes()]
    result = runner.invoke(main, ["compress", *files, "-m", "tiny", "-q", "1", "-j", "2", "--force"])
    assert result.exit_code == 0, result.output
    assert [(photos / "a.vqc").read_bytes(), (photos / "trip" / "b.vqc").read_bytes()] == alone
    result = runner.invoke(main, ["decompress", str(photos / "a.vqc"), str(photos / "trip" / "b.vqc"), "-j", "2"])
    assert result.exit_code == 0 and "2 files decompressed, 0 failed" in result.output, result.output
    assert np.asarray(Image.open(photos / "a.vqc.png")).shape == (48, 72, 3)


def test_usage_errors_of_many_inputs(tmp_path, photos, photo):
    runner = CliRunner()
    a = str(photos / "a.png")

    def usage(args, words):
        result = runner.invoke(main, args)
        assert result.exit_code == 2 and words in result.output, result.output

    usage(["compress", a, "-", "-m", "tiny"], "standard input ('-') is for a single input")
    usage(["compress", str(photos), "-o", "-", "-m", "tiny"], "-o names an output folder")
    usage(["compress", str(photos), "-o", a, "-m", "tiny"], "-o names an output folder")
    usage(["compress", str(photos), "-b", "6", "-m", "tiny"], "-b/--bitrate does not apply to these inputs")
    Image.fromarray(photo).save(photos / "a.jpg")
    usage(["compress", str(photos), "-m", "tiny", "-q", "1"], "several inputs would be written to")
    (tmp_path / "empty").mkdir()
    usage(["compress", str(tmp_path / "empty")], "no input files found")
    usage(["decompress", str(photos), "--compare", a], "--compare does not apply to several inputs")


def test_a_folder_of_photos_and_sounds_gives_each_the_options_of_its_medium(tmp_path, photo, monkeypatch):
    import json

    import soundfile

    from vqcodec.catalog import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL

    from .conftest import build_tiny_audio_model, build_tiny_model

    models = tmp_path / "models"  # the tiny models under the default names, so no -m is needed
    build_tiny_model(models / f"{DEFAULT_IMAGE_MODEL}.safetensors", name=DEFAULT_IMAGE_MODEL)
    build_tiny_audio_model(models / f"{DEFAULT_AUDIO_MODEL}.safetensors", name=DEFAULT_AUDIO_MODEL)
    monkeypatch.setenv("VQCODEC_MODELS", str(models))
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.fromarray(photo).save(folder / "a.png")
    t = np.arange(22050) / 22050
    soundfile.write(folder / "b.wav", 0.3 * np.sin(2 * np.pi * 300 * t), 22050)
    runner = CliRunner()
    result = runner.invoke(main, ["compress", str(folder), "-q", "1", "-b", "4.8"])
    assert result.exit_code == 0 and "2 files compressed, 0 failed" in result.output, result.output
    image = json.loads(runner.invoke(main, ["info", "--json", str(folder / "a.vqc")]).output)
    sound = json.loads(runner.invoke(main, ["info", "--json", str(folder / "b.vqc")]).output)
    assert image["quality"] == 1 and sound["stages"] == [2]
