"""The audio benchmark's metrics on known cases, and a small run of both codecs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vqcodec.bench.audio import align, audio_metrics, opus_codec, run_audio_codec, vqcodec_audio_codec
from vqcodec.media.mel import hz_to_mel, mel_distance, mel_filterbank


def _speechlike(rate=16000, seconds=2.0, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(int(rate * seconds)) / rate
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)
    voiced = sum(np.sin(2 * np.pi * f * t) / (i + 1) for i, f in enumerate(range(140, 3000, 140)))
    return (0.1 * envelope * voiced + 0.01 * rng.standard_normal(len(t))).astype(np.float32)[None]


def test_mel_filterbank_shape_and_peaks():
    bank = mel_filterbank(512, 40, 16000)
    assert bank.shape == (40, 257) and float(bank.max()) <= 1.0
    centres = bank.argmax(1).numpy()
    assert (np.diff(centres) >= 0).all()  # filters go up in frequency
    assert hz_to_mel(700.0) == pytest.approx(2595 * np.log10(2))


def test_mel_distance_known_values():
    x = torch.from_numpy(_speechlike(24000))
    assert float(mel_distance(x, x, 24000)) == 0.0
    # A gain of 10x is +2 in log10 power in every band that is above the floor.
    assert float(mel_distance(x * 10, x, 24000)) == pytest.approx(2.0, abs=0.05)
    noisy = x + 0.05 * torch.randn_like(x)
    assert 0 < float(mel_distance(noisy, x, 24000)) < float(mel_distance(torch.zeros_like(x), x, 24000))


def test_align_finds_a_delay():
    x = _speechlike()
    delayed = np.concatenate([np.zeros((1, 333), np.float32), x[:, :-333]], 1)
    assert np.allclose(align(x, delayed, 16000)[:, :-400], x[:, :-400])


def test_pesq_and_stoi_of_identical_and_noisy_speech():
    x = _speechlike()
    same = audio_metrics(x, x, 16000, speech=True)
    assert same["mel"] == 0.0 and same["pesq"] > 4.5 and same["stoi"] > 0.99
    noise = 0.05 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    noisy = audio_metrics(x, x + noise, 16000, True)
    assert noisy["pesq"] < same["pesq"] and noisy["stoi"] < same["stoi"] and noisy["mel"] > 0


def test_opus_and_vqcodec_runs():
    clips = {"speech_a": (_speechlike(), 16000), "music_b": (np.repeat(_speechlike(44100, 1.0, 2), 2, 0), 44100)}
    opus = run_audio_codec(opus_codec(), clips, progress=False)
    speech = opus["results"]["speech"]
    assert speech["kbps"][0] < speech["kbps"][-1] and speech["mel"][0] > speech["mel"][-1]
    ours = run_audio_codec(vqcodec_audio_codec("tinyaudio", "cpu", (2.4, 9.6)), clips, progress=False)
    assert set(ours["results"]) == {"speech", "music"} and len(ours["results"]["music"]["kbps"]) == 2
    assert ours["results"]["music"]["kbps"][0] < ours["results"]["music"]["kbps"][1]
    assert "pesq" in ours["per_clip"]["speech_a"][0] and "pesq" not in ours["per_clip"]["music_b"][0]
    assert len(ours["results"]["speech"]["prior_saving"]) == 2 and "prior_saving" not in speech
