"""Audio groundwork: reading and resampling audio, and a few steps of the audio VQ-VAE."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch

from vqcodec.errors import BadInputError
from vqcodec.media.audio import load_audio
from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.vqvae import AudioVQVAE
from vqcodec.train import audio as audio_training
from vqcodec.train.audio import SegmentSampler
from vqcodec.train.recipe import AudioSettings
from vqcodec.train.trainer import medium, train_vqvae
from vqcodec.weights import load_tensors

TINY_AUDIO = AudioNetConfig(base_width=4, strides=(2, 4), latent_dim=4, codebook_sizes=(8, 8))


def _train(files, cache, cfg=TINY_AUDIO, **settings):
    """The tiny audio VQ-VAE trained on `files` (a list: one group) with these settings."""
    groups = files if isinstance(files, dict) else {"all": files}
    return train_vqvae(medium("audio"), groups, cache, AudioSettings(**settings), cfg)


def _tone(path, rate=16000, seconds=1.0, channels=1):
    t = np.arange(int(rate * seconds)) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t)
    soundfile.write(path, np.repeat(wave[:, None], channels, 1), rate)
    return path


def test_load_resamples_and_keeps_channels(tmp_path):
    samples, rate = load_audio(_tone(tmp_path / "a.wav", 16000, 1.0, 2), 24000)
    assert rate == 24000 and samples.shape == (2, 24000) and samples.dtype == np.float32


def test_nan_samples_and_junk_are_refused(tmp_path):
    bad = tmp_path / "nan.wav"
    soundfile.write(bad, np.array([0.0, np.nan, 0.1], dtype=np.float32), 8000, subtype="FLOAT")
    with pytest.raises(BadInputError, match="NaN"):
        load_audio(bad)
    junk = tmp_path / "junk.flac"
    junk.write_bytes(b"not audio")
    with pytest.raises(BadInputError):
        load_audio(junk)


def test_a_few_training_steps_and_resume(tmp_path):
    paths = [_tone(tmp_path / f"t{i}.wav", 24000, 0.5 + i) for i in range(2)]
    sampler = SegmentSampler(paths, 24000, 0.25)
    batch = sampler.sample(3)
    assert batch.shape == (3, 1, 6000) and batch.abs().max() <= 10.0
    cache = tmp_path / "cache"
    _train(paths, cache, vqvae_minutes=0.02, batch=2, seconds=0.1, log_every=1)
    first = len((cache / "vqvae_log.jsonl").read_text().splitlines())
    _train(paths, cache, vqvae_minutes=0.02, batch=2, seconds=0.1, log_every=1)
    lines = (cache / "vqvae_log.jsonl").read_text().splitlines()
    assert len(lines) > first and f'"step": {first + 1},' in lines[first]


def test_groups_are_drawn_in_their_shares(tmp_path):
    """Quiet speech and loud music: the share of quiet segments follows `shares`, not durations."""
    speech, music = tmp_path / "speech.wav", tmp_path / "music.wav"
    soundfile.write(speech, np.full(24000, 0.01), 24000)
    soundfile.write(music, np.full(24000 * 20, -0.5), 24000)
    sampler = SegmentSampler({"speech": [speech], "music": [music]}, 24000, 0.1, shares={"speech": 0.8, "music": 0.2})
    negative = (sampler.sample(2000)[:, 0, 0] < 0).float().mean().item()
    assert 0.17 < negative < 0.23


def test_band_limited_segments_have_an_empty_top_band(tmp_path):
    """A 10 kHz tone survives a full-band segment and is gone from a band-limited one (8 or
    16 kHz recordings have nothing above 4 or 8 kHz); the segment length is unchanged."""
    t = np.arange(24000) / 24000
    path = tmp_path / "hf.wav"
    soundfile.write(path, 0.3 * np.sin(2 * np.pi * 10000 * t) + 0.3 * np.sin(2 * np.pi * 300 * t), 24000)
    full = SegmentSampler([path], 24000, 0.5).sample(4, step=0)
    limited = SegmentSampler([path], 24000, 0.5, band_limit_share=1.0).sample(4, step=0)
    assert limited.shape == full.shape == (4, 1, 12000)

    def top_band_share(batch: torch.Tensor) -> torch.Tensor:
        power = torch.fft.rfft(batch[:, 0]).abs() ** 2
        return power[:, 8500 // 2 :].sum(1) / power.sum(1)  # bins are 2 Hz wide

    assert (top_band_share(full) > 0.3).all() and (top_band_share(limited) < 1e-3).all()


def test_offered_rates_get_most_of_the_quantizer_dropout():
    from vqcodec.train.loop import stages_per_sample

    torch.manual_seed(0)
    stages = stages_per_sample(40000, 16, 0.5, (2, 4, 8, 16))
    share = {n: (stages == n).float().mean().item() for n in range(1, 17)}
    for n in (2, 4, 8, 16):  # 3/4 spread over the four offered counts, plus the uniform share
        assert abs(share[n] - (0.75 / 4 + 0.25 / 16)) < 0.01
    assert abs(share[3] - 0.25 / 16) < 0.005 and stages.min() >= 1 and stages.max() <= 16


def test_resume_makes_the_same_steps_as_an_uninterrupted_run(tmp_path):
    from vqcodec.weights import load_tensors

    paths = [_tone(tmp_path / f"t{i}.wav", 24000, 0.5 + i) for i in range(2)]
    args = {"vqvae_minutes": 5, "batch": 2, "seconds": 0.1, "log_every": 1}
    straight = _train(paths, tmp_path / "a", max_steps=6, **args)
    _train(paths, tmp_path / "b", max_steps=3, **args)
    resumed = _train(paths, tmp_path / "b", max_steps=6, **args)
    (one, meta_one), (two, meta_two) = load_tensors(straight), load_tensors(resumed)
    assert meta_one["step"] == meta_two["step"] == 6 and one.keys() == two.keys()
    for key in one:
        assert torch.equal(one[key], two[key]), key


def test_worker_processes_make_the_same_batches(tmp_path):
    from vqcodec.weights import load_tensors

    paths = [_tone(tmp_path / f"t{i}.wav", 24000, 0.5 + i) for i in range(2)]
    args = {"vqvae_minutes": 5, "batch": 2, "seconds": 0.1, "log_every": 1, "max_steps": 3}
    alone = load_tensors(_train(paths, tmp_path / "a", workers=0, **args))[0]
    helped = load_tensors(_train(paths, tmp_path / "b", workers=2, **args))[0]
    assert all(torch.equal(alone[k], helped[k]) for k in alone)


def test_debian_audio_is_fetched_once_per_package_and_grouped(tmp_path, monkeypatch):
    """Each package is downloaded and unpacked once; a package added later is fetched on the next
    run without unpacking the others again; speech packages land in the speech group."""
    calls = []

    def fake_run(command, cwd=None, check=False):
        calls.append(command[:2])
        if command[:2] == ["apt-get", "download"]:
            (tmp_path / f"{command[2]}_1_all.deb").write_bytes(b"")
        else:  # dpkg-deb -x DEB ROOT: one clip per package, in the package's own folder
            package = Path(command[2]).name.split("_")[0]
            folder = Path(command[3]) / "usr/share" / package.removesuffix("-data")
            folder.mkdir(parents=True, exist_ok=True)
            _tone(folder / "clip.wav")

    monkeypatch.setattr(audio_training.subprocess, "run", fake_run)
    monkeypatch.setattr(audio_training.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    packages = {"warzone2100-music": "music", "ktuberling-data": "speech"}
    monkeypatch.setattr(audio_training, "DEBIAN_AUDIO_PACKAGES", packages)
    audio_training.fetch_debian_audio(tmp_path)
    assert calls.count(["apt-get", "download"]) == 2 and calls.count(["dpkg-deb", "-x"]) == 2

    calls.clear()
    monkeypatch.setattr(audio_training, "DEBIAN_AUDIO_PACKAGES", packages | {"klettres-data": "speech"})
    shared = tmp_path / "shared"
    shared.mkdir()
    _tone(shared / "reader.wav")
    groups = audio_training.training_audio(shared, tmp_path)
    assert calls == [["apt-get", "download"], ["dpkg-deb", "-x"]]
    assert sorted(p.parent.name for p in groups["speech"]) == ["klettres", "ktuberling", "shared"]
    assert [p.parent.name for p in groups["music"]] == ["warzone2100-music"]


def test_a_folder_split_by_group_is_taken_as_it_is(tmp_path, monkeypatch):
    """The GPU pack's audio (speech/ and music/) needs no Debian package: nothing is fetched."""
    monkeypatch.setattr(audio_training.shutil, "which", lambda tool: f"/usr/bin/{tool}")
    monkeypatch.setattr(audio_training.subprocess, "run", lambda *a, **k: pytest.fail("fetched"))
    for group in ("speech", "music"):
        (tmp_path / group).mkdir()
        _tone(tmp_path / group / "00000.wav")
    groups = audio_training.training_audio(tmp_path, tmp_path / "cache")
    assert {group: [p.parent.name for p in paths] for group, paths in groups.items()} == {
        "speech": ["speech"],
        "music": ["music"],
    }


def test_held_out_clips_are_evaluated_at_every_save(tmp_path):
    """Whole held-out clips: mel distance per group, PESQ and STOI for speech (the sample
    recording), unquantized and at each stage count; here with snake activations."""
    import json

    speech = Path(__file__).resolve().parent.parent / "examples" / "speech.flac"
    music = [_tone(tmp_path / "tone.wav", 24000, 1.5)]
    cache = tmp_path / "cache"
    cfg = dataclasses.replace(TINY_AUDIO, activation="snake")
    _train({"speech": [speech], "music": music}, cache, vqvae_minutes=0.02, batch=2, seconds=0.1, cfg=cfg)
    record = json.loads((cache / "vqvae_eval.jsonl").read_text().splitlines()[-1])
    assert record["kbps_before_prior"] == {"q2": 18.0}  # 2 stages of 3,000 frames/s x 3 bits
    assert {"speech_mel_unquantized", "speech_mel_q2", "music_mel_unquantized", "music_mel_q2"} <= set(record)
    assert 1.0 <= record["speech_pesq_q2"] <= 4.6 and 0 <= record["speech_stoi_q2"] <= 1
    assert "music_pesq_q2" not in record and record["train_minutes"] > 0


def test_istft_decoder_inverts_its_framing():
    """The Vocos decoder's inverse STFT gives back a signal from the spectra of its frames (the
    frame of latent t centred on the middle of hop t), edges included."""
    from vqcodec.nets.audio import ISTFTDecoder

    decoder = ISTFTDecoder(dataclasses.replace(TINY_AUDIO, decoder="istft", decoder_width=8, decoder_blocks=1))
    hop, n_fft, frames = decoder.hop, decoder.n_fft, 12
    wave = torch.randn(2, frames * hop, dtype=torch.float64)
    trim = (n_fft - hop) // 2
    padded = torch.nn.functional.pad(wave, (trim, trim))
    windowed = padded.unfold(-1, n_fft, hop) * decoder.window.double()  # [2, frames, n_fft]
    assert windowed.shape[1] == frames
    decoder.window = decoder.window.double()
    recon = decoder.inverse_stft(torch.fft.rfft(windowed, dim=-1).transpose(1, 2))
    assert recon.shape == (2, 1, frames * hop)
    torch.testing.assert_close(recon[:, 0], wave)


def test_adversarial_training_with_the_istft_decoder_saves_and_resumes_the_discriminators(tmp_path):
    import json

    paths = [_tone(tmp_path / f"t{i}.wav", 24000, 0.5 + i) for i in range(2)]
    cache = tmp_path / "cache"
    cfg = dataclasses.replace(TINY_AUDIO, decoder="istft", decoder_width=8, decoder_blocks=2)
    options = {"vqvae_minutes": 0.02, "batch": 2, "seconds": 0.1, "cfg": cfg, "log_every": 1, "adversarial": 1.0}
    _train(paths, cache, **options)
    record = json.loads((cache / "vqvae_log.jsonl").read_text().splitlines()[-1])
    assert record["discriminator"] > 0 and record["adversarial"] >= 0 and record["feature_matching"] > 0
    state = cache / "discriminator_state.safetensors"

    def adam_steps() -> int:
        return int(load_tensors(state)[0]["optim.0.step"])

    assert adam_steps() == record["step"]
    _train(paths, cache, **{**options, "max_steps": record["step"] + 1})
    assert adam_steps() == record["step"] + 1  # resumed, not restarted


def test_a_grown_decoder_starts_as_the_trained_one():
    torch.manual_seed(0)
    trained = AudioVQVAE(TINY_AUDIO).eval()
    grown = AudioVQVAE(dataclasses.replace(TINY_AUDIO, grown_dilation=9)).eval()
    loaded = grown.load_state_dict(trained.state_dict(), strict=False)
    assert not loaded.unexpected_keys and loaded.missing_keys and all(".grown." in k for k in loaded.missing_keys)
    latents = torch.randn(2, TINY_AUDIO.latent_dim, 1, 12)
    with torch.no_grad():
        assert torch.equal(trained.decoder(latents), grown.decoder(latents))
        grown.decoder.net[-3].grown.body[3].weight.add_(0.1)  # and it is a layer that can learn
        assert not torch.equal(trained.decoder(latents), grown.decoder(latents))


def test_a_decoder_told_the_stages_starts_as_the_trained_one():
    """Stage embeddings start at zero, so a trained Vocos decoder loads into one unchanged; once
    they learn, each frame is decoded as coded with its own stage count."""
    torch.manual_seed(0)
    vocos = dataclasses.replace(TINY_AUDIO, decoder="istft", decoder_width=16)
    trained = AudioVQVAE(vocos).eval()
    told = AudioVQVAE(dataclasses.replace(vocos, stage_embedding=True)).eval()
    loaded = told.load_state_dict(trained.state_dict(), strict=False)
    assert not loaded.unexpected_keys and all("modulation" in k for k in loaded.missing_keys)
    latents = torch.randn(2, TINY_AUDIO.latent_dim, 1, 12)
    coarse = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(trained.decode(latents), told.decode(latents, coarse))
        for p in told.decoder.parameters():
            if p.shape[0] == len(TINY_AUDIO.codebook_sizes) + 1:  # the embeddings' tables
                p.normal_(0, 0.5)
        assert not torch.allclose(told.decode(latents), told.decode(latents, coarse))
        per_frame = coarse[:, None, None].expand(-1, 1, 12)  # a count for each frame, as the codec gives
        assert torch.equal(told.decode(latents, coarse), told.decode(latents, per_frame))
        assert torch.equal(told.decode(latents), told.decode(latents, torch.tensor([len(vocos.codebook_sizes)] * 2)))


def test_a_wider_decoder_starts_as_the_trained_one(tmp_path):
    from vqcodec.train.loop import load_grown

    torch.manual_seed(0)
    trained = AudioVQVAE(dataclasses.replace(TINY_AUDIO, grown_dilation=9)).eval()
    wider = dataclasses.replace(TINY_AUDIO, grown_dilation=9, decoder_widths=(20, 12, 4), frame_units=2)
    grown = AudioVQVAE(wider).eval()
    assert load_grown(grown, trained.state_dict()) > 0
    latents = torch.randn(2, TINY_AUDIO.latent_dim, 1, 12)
    with torch.no_grad():
        assert torch.allclose(trained.decoder(latents), grown.decoder(latents), atol=1e-6)
        assert torch.equal(trained.encoder.net[0].weight, grown.encoder.net[0].weight)
        # the copies of a channel differ in how they are read, so training can tell them apart
        assert not torch.equal(grown.decoder.net[2].weight[:, :4], grown.decoder.net[2].weight[:, 4:8])
        grown.decoder.frame[1].body[3].weight.add_(0.1)  # the frame-rate units are layers that learn
        assert not torch.allclose(trained.decoder(latents), grown.decoder(latents), atol=1e-6)
    with pytest.raises(ValueError, match="cannot grow"):
        load_grown(AudioVQVAE(TINY_AUDIO), grown.state_dict())


def test_a_new_decoder_learns_to_read_frozen_codes(tmp_path):
    """With the encoder and quantizer frozen, a Vocos decoder trains on a trained model's codes:
    the encoder's weights and the codebooks stay bit for bit, the decoder learns, and a resumed
    run (its optimizer holding the decoder alone) goes on."""
    from vqcodec.train.loop import save_checkpoint

    paths = [_tone(tmp_path / f"t{i}.wav", 24000, 0.5 + i) for i in range(2)]
    options = {"batch": 2, "seconds": 0.1, "log_every": 1}
    _train(paths, tmp_path / "trained", max_steps=3, **options)
    checkpoint = tmp_path / "trained.safetensors"
    save_checkpoint(tmp_path / "trained", checkpoint)
    start = {k[6:]: v for k, v in load_tensors(checkpoint)[0].items() if k.startswith("vqvae.")}

    istft = dataclasses.replace(TINY_AUDIO, decoder="istft", decoder_width=8, decoder_blocks=1)
    frozen = AudioSettings(frozen=("encoder", "quantizer"), max_steps=6, **options)
    cache = tmp_path / "vocos"
    for _ in range(2):  # the second run resumes from the first's state
        train_vqvae(medium("audio"), {"all": paths}, cache, frozen, istft, checkpoint)
        frozen = dataclasses.replace(frozen, max_steps=8)
    tensors, meta = load_tensors(cache / "vqvae_state.safetensors")
    assert meta["step"] == 8
    kept = [k for k in start if k.startswith(("encoder.", "quantizer.codebook"))]
    assert kept and all(torch.equal(tensors[f"model.{k}"].to(start[k].dtype), start[k]) for k in kept)
    torch.manual_seed(0)
    fresh = AudioVQVAE(istft).decoder.state_dict()
    assert any(not torch.equal(tensors[f"model.decoder.{k}"], v) for k, v in fresh.items())
