"""Smoke tests of the shipped audio models on the sample recording (skipped if not installed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vqcodec
from vqcodec.bench.audio import audio_metrics
from vqcodec.codec import audio as audio_codec
from vqcodec.media.audio import load_audio

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "aud2.safetensors"  # the default
OLDER = ROOT / "models" / "aud1.safetensors"  # its files must still decode
SAMPLE = ROOT / "examples" / "speech.flac"
pytestmark = pytest.mark.skipif(not MODEL.exists(), reason="shipped audio model not present")


@pytest.fixture(autouse=True)
def _shipped_models(monkeypatch):
    monkeypatch.setenv("VQCODEC_MODELS", str(MODEL.parent))


@pytest.mark.parametrize("model", [MODEL.stem, OLDER.stem])
def test_rate_and_quality_rise_with_bitrate(model):
    original, rate = load_audio(SAMPLE)
    points = []
    for kbps in (1.5, 6, 12):
        data = vqcodec.compress_audio(SAMPLE, bitrate=kbps, model=model, device="cpu")
        decoded, out_rate = vqcodec.decompress_audio(data, device="cpu")
        assert out_rate == rate and decoded.shape == original.shape
        seconds = original.shape[1] / rate
        points.append((len(data) * 8 / 1000 / seconds, audio_metrics(original, decoded, rate, speech=False)["mel"]))
    (k1, mel1), (k6, mel6), (k12, mel12) = points
    assert k1 < 1.5 and k1 < k6 < 6 and k6 < k12 < 12  # the prior saves bits at every rate
    assert mel1 > mel6 > mel12


WORKER = r"""
import sys, torch
torch.set_num_threads(int(sys.argv[1]))
import vqcodec
from vqcodec.codec import audio as audio_codec
if sys.argv[2] == "encode":
    sys.stdout.buffer.write(vqcodec.compress_audio(sys.argv[3], bitrate=6, device="cpu"))
else:
    segments = list(audio_codec.decode_audio_indices(open(sys.argv[3], "rb").read(), device="cpu"))
    print(sum(int(g.sum()) for seg in segments for g in seg), [tuple(g.shape) for g in segments[0]])
"""


def test_shipped_audio_prior_is_thread_count_independent(tmp_path):
    env = {**os.environ, "VQCODEC_MODELS": str(MODEL.parent)}
    run = [sys.executable, "-c", WORKER]
    coded = subprocess.run([*run, "1", "encode", str(SAMPLE)], env=env, capture_output=True, check=True).stdout
    path = tmp_path / "s.vqc"
    path.write_bytes(coded)
    out = subprocess.run([*run, "2", "decode", str(path)], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "[(8, 1, 319)]" in out.stdout and np.isfinite(float(out.stdout.split()[0]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("encoded_on", ["cuda", "cpu"])
def test_a_file_coded_on_either_device_decodes_to_the_same_indices_on_both(encoded_on):
    """Principle 1 with the shipped audio model: the prior's integers are the same on a GPU."""
    for kbps in (1.5, 12):
        data = vqcodec.compress_audio(SAMPLE, bitrate=kbps, device=encoded_on)
        on_cpu = list(audio_codec.decode_audio_indices(data, device="cpu"))
        on_gpu = list(audio_codec.decode_audio_indices(data, device="cuda"))
        assert len(on_cpu) == len(on_gpu)
        for cpu_grids, gpu_grids in zip(on_cpu, on_gpu, strict=True):
            assert all(torch.equal(a.cpu(), b.cpu()) for a, b in zip(cpu_grids, gpu_grids, strict=True))
