"""The audio codec: round trips keep rate, channels and length to the sample, and the decoder
recovers exactly the encoder's indices, for odd rates, lengths and channel counts."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from vqcodec import container
from vqcodec.codec import allocator
from vqcodec.codec import audio as audio_codec
from vqcodec.errors import BadInputError, CorruptFileError, MissingModelError, UsageError
from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.vqvae import AudioVQVAE
from vqcodec.registry import load_audio_model

from .conftest import TINY_AUDIO_NET, TINY_VOCOS_NET

RATE = 24000


def _signal(seconds: float, rate: int = RATE, channels: int = 1, seed: int = 0) -> np.ndarray:
    n = int(round(seconds * rate))
    t = np.arange(n) / rate
    rng = np.random.default_rng(seed)
    tones = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.02 * rng.standard_normal(n) for c in range(channels)]
    return np.stack(tones).astype(np.float32)


def _roundtrip(samples: np.ndarray, rate: int, bitrate: float = 4.8):
    header, _, encoded = audio_codec.encode_audio((samples, rate), bitrate, model="tinyaudio")
    data = audio_codec.compress_audio((samples, rate), bitrate, model="tinyaudio")
    decoded_indices = list(audio_codec.decode_audio_indices(data))
    assert len(decoded_indices) == len(encoded) == header.segments
    for ours, theirs in zip(encoded, decoded_indices, strict=True):
        assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))
    out, out_rate = audio_codec.decompress_audio(data)
    return data, out, out_rate


@pytest.mark.parametrize(
    ("rate", "channels", "seconds"),
    [(24000, 1, 3.0), (8000, 1, 0.7), (44100, 2, 1.6), (96000, 1, 0.3), (22050, 6, 0.2), (48000, 2, 0.004)],
)
def test_roundtrip_keeps_rate_channels_and_length(rate, channels, seconds):
    samples = _signal(seconds, rate, channels)
    _, out, out_rate = _roundtrip(samples, rate)
    assert out_rate == rate and out.shape == samples.shape and out.dtype == np.float32
    assert np.isfinite(out).all()


@pytest.mark.parametrize("length", [0, 1, 39, 40, 41, 749 * 40, 750 * 40, 750 * 40 + 1])
def test_odd_lengths_at_the_model_rate(length):
    samples = _signal(length / RATE)[:, :length]
    data, out, _ = _roundtrip(samples, RATE)
    assert out.shape == (1, length)
    header, _ = container.unpack_audio(data)
    assert header.frames == -(-length // 40) and header.segments == -(-header.frames // 750)


def test_silence_and_clipping():
    silent = np.zeros((2, 5000), np.float32)
    _, out, _ = _roundtrip(silent, 16000)
    assert out.shape == (2, 5000)
    loud = np.clip(_signal(0.5) * 10, -1, 1)
    assert _roundtrip(loud, RATE)[1].shape == loud.shape


def test_bitrate_picks_stages_and_stereo_is_mid_side():
    model = audio_codec.load_audio_model("tinyaudio")
    assert audio_codec.kbps_per_stage(model) == pytest.approx(2.4)
    assert audio_codec.stages_for_bitrate(model, 2.4, 1) == ((1,), False)
    with pytest.raises(UsageError, match="the most this model codes for 1 channel is 9.6 kbps"):
        audio_codec.stages_for_bitrate(model, 100, 1)
    assert audio_codec.stages_for_bitrate(model, 19.2, 2) == ((4, 4), True)  # the side takes what the mid cannot
    assert audio_codec.stages_for_bitrate(model, 9.6, 2) == ((3, 1), True)
    assert audio_codec.stages_for_bitrate(model, 2.4, 2) == ((1, 0), True)
    assert audio_codec.stages_for_bitrate(model, 9.6, 3) == ((1, 1, 1), False)
    sizes = [len(audio_codec.compress_audio((_signal(1.0), RATE), b, model="tinyaudio")) for b in (2.4, 4.8, 9.6)]
    assert sizes[0] < sizes[1] < sizes[2]


def test_mid_side_restores_left_and_right_exactly():
    stereo = np.random.default_rng(1).standard_normal((1000, 2)).astype(np.float32)
    assert np.allclose(audio_codec._to_channels(audio_codec._to_streams(stereo, True), True), stereo, atol=1e-6)


def test_stream_with_no_stage_decodes_to_silence():
    same = np.repeat(_signal(0.5), 2, 0)  # identical channels: the side is zero
    _, out, _ = _roundtrip(same, RATE, bitrate=2.4)  # (1, 0) stages
    assert np.allclose(out[0], out[1])


def test_files_and_bytes_are_read(tmp_path):
    import soundfile

    path = tmp_path / "clip.flac"
    soundfile.write(path, _signal(0.5, 32000, 2).T, 32000)
    from_path = audio_codec.compress_audio(path, model="tinyaudio")
    assert from_path == audio_codec.compress_audio(path.read_bytes(), model="tinyaudio")
    header, _ = container.unpack_audio(from_path)
    assert (header.sample_rate, header.channels, header.length) == (32000, 2, 16000)


def test_nan_and_junk_are_refused(tmp_path):
    bad = _signal(0.1)
    bad[0, 7] = np.inf
    with pytest.raises(BadInputError, match="NaN or infinite"):
        audio_codec.compress_audio((bad, RATE), model="tinyaudio")
    with pytest.raises(BadInputError, match="not a readable audio file"):
        audio_codec.compress_audio(b"RIFF nonsense", model="tinyaudio")


def test_a_damaged_chunk_is_named():
    data = bytearray(audio_codec.compress_audio((_signal(3.0), RATE), model="tinyaudio"))
    header, chunks = container.unpack_audio(bytes(data))
    first = chunks[0]  # segment 1; its record ends where segment 2's payloads start
    start = container._header_length(bytes(data)) + 4 + first.size + 4 + 4 * first.stages
    data[start + chunks[1].size // 2] ^= 0x10
    with pytest.raises(CorruptFileError, match="segment 2, stream 1"):
        audio_codec.decompress_audio(bytes(data))


def test_image_model_is_refused_for_audio():
    with pytest.raises(MissingModelError, match="image model"):
        audio_codec.compress_audio((_signal(0.1), RATE), model="tiny")


def test_huge_claimed_duration_is_refused_before_decoding():
    header = container.AudioHeader(0, "tinyaudio", b"abcd", 8000, 1, 8000 * 86400 * 10, 600 * 86400 * 10, (4,))
    head = container.pack_audio(header, [container.new_chunk("", [], [])] * header.segments)
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack_audio(head)
    small = container.AudioHeader(0, "tinyaudio", b"abcd", 8000, 1, 8000 * 60, 600 * 60, (4,))
    data = container.pack_audio(small, [container.new_chunk("", [], [])] * small.segments)
    with pytest.raises(CorruptFileError, match="over the limit"):
        container.unpack_audio(data, max_seconds=30)


def test_empty_wav_file_round_trips(tmp_path):
    import soundfile

    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros((0, 2), np.float32), 44100)
    data = audio_codec.compress_audio(path, model="tinyaudio")
    out, rate = audio_codec.decompress_audio(data)
    assert out.shape == (2, 0) and rate == 44100


def test_unknown_model_or_other_weights_name_the_model():
    data = audio_codec.compress_audio((_signal(0.2), RATE), model="tinyaudio")
    header, chunks = container.unpack_audio(data)
    for changed in (
        container.AudioHeader(**{**header.__dict__, "model_hash": b"\x00\x01\x02\x03"}),
        container.AudioHeader(**{**header.__dict__, "model_name": "aud9"}),
    ):
        with pytest.raises(MissingModelError, match=changed.model_name):
            audio_codec.decompress_audio(container.pack_audio(changed, chunks))


def test_coding_layout_computes_what_the_trained_networks_compute():
    """`for_coding` swaps the 1-D convolutions for faster 2-D ones of height 1: same outputs."""
    torch.manual_seed(0)
    trained = AudioVQVAE(TINY_AUDIO_NET).eval()
    coding = copy.deepcopy(trained).for_coding()
    wave = torch.randn(2, 1, 40 * TINY_AUDIO_NET.hop)
    with torch.inference_mode():
        latents = trained.encoder(wave)
        assert torch.allclose(coding.encoder(wave), latents, atol=1e-5)
        assert torch.allclose(coding.decoder(latents), trained.decoder(latents), atol=1e-5)
        assert coding.decoder(latents).shape == wave.shape


def _seen_frames(vqvae: AudioVQVAE) -> tuple[int, int]:
    """The farthest frames (either side) that change the encoder's latent of a middle frame and
    the decoder's samples of a middle frame: measured by the gradients' support, with every
    weight random (none of the zero-initialised units that would hide a layer)."""
    vqvae = vqvae.double()
    with torch.no_grad():
        for weight in vqvae.parameters():
            weight.normal_(0, 0.3)
    hop, frames, middle = vqvae.cfg.hop, 120, 60
    latents = torch.randn(1, vqvae.cfg.latent_dim, 1, frames, dtype=torch.double, requires_grad=True)
    vqvae.decoder(latents)[..., middle * hop : (middle + 1) * hop].sum().backward()
    seen = latents.grad.abs().sum((0, 1, 2)).nonzero().flatten()
    decoder = max(middle - seen.min().item(), seen.max().item() - middle)
    wave = torch.randn(1, 1, frames * hop, dtype=torch.double, requires_grad=True)
    vqvae.encoder(wave)[..., middle].sum().backward()
    seen = wave.grad.abs()[0, 0].nonzero().flatten() // hop
    encoder = max(middle - seen.min().item(), seen.max().item() - middle)
    return encoder, decoder


@pytest.mark.parametrize(
    "net",
    [
        AudioNetConfig(base_width=4),  # aud1's layers (the widths do not change what they see)
        AudioNetConfig(base_width=4, decoder="istft", decoder_width=16),  # aud2's Vocos decoder
        AudioNetConfig(base_width=4, decoder="istft", decoder_width=16, stage_embedding=True),
        AudioNetConfig(base_width=4, grown_dilation=9, decoder_widths=(32, 24, 8, 4, 4)),
        AudioNetConfig(base_width=4, frame_units=3, activation="snake"),
    ],
)
def test_context_frames_cover_what_the_networks_see(net):
    """The codec's halo around a segment is the model's context frames: never less than the
    networks see (or segments would not decode as the whole), and not far more."""
    torch.manual_seed(0)
    vqvae = AudioVQVAE(net)
    encoder, decoder = _seen_frames(vqvae)
    assert encoder <= vqvae.encoder.context_frames <= encoder + 2
    assert decoder <= vqvae.decoder.context_frames <= decoder + 2


def test_segments_decode_as_the_whole_file_with_a_wide_decoder():
    """A 3-segment file from a model whose decoder sees 29 frames either side (Vocos) decodes,
    segment by segment, to the samples its decoder makes from all the file's indices at once,
    told how many stages coded them (and it matters: not as if coded with all)."""
    model = load_audio_model("tinyvocos")
    assert model.vqvae.context_frames == 29 > 8
    samples = _signal(3.0)
    data = audio_codec.compress_audio((samples, RATE), 4.8, model="tinyvocos")
    out, _ = audio_codec.decompress_audio(data)
    indices = torch.cat([grids[0] for grids in audio_codec.decode_audio_indices(data)], -1)
    with torch.inference_mode():
        latents = model.vqvae.quantizer.decode(indices[None])
        whole = model.vqvae.decode(latents, torch.tensor([len(indices)]))[0, 0, : samples.shape[1]]
        as_if_all = model.vqvae.decode(latents)[0, 0, : samples.shape[1]]
    assert TINY_VOCOS_NET.frame_rate * 3.0 > 2 * 750 and len(indices) < model.num_stages  # three segments
    np.testing.assert_allclose(out[0], whole.numpy(), atol=1e-5)
    assert np.abs(out[0] - as_if_all.numpy()).max() > 1e-3


def test_only_the_command_line_tunes_the_process_allocator(tmp_path, monkeypatch):
    """The library never changes process-wide settings; the command line asks for glibc's
    tuning before coding sound."""
    import soundfile
    from click.testing import CliRunner

    from cli.main import main

    calls = []

    class FakeGlibc:
        def mallopt(self, *args):
            calls.append(("mallopt", *args))

        def malloc_trim(self, pad):
            calls.append(("malloc_trim", pad))

    monkeypatch.setattr(allocator, "glibc", lambda: FakeGlibc())
    data = audio_codec.compress_audio((_signal(0.5), RATE), model="tinyaudio")
    audio_codec.decompress_audio(data)
    assert calls and all(name == "malloc_trim" for name, *_ in calls)
    soundfile.write(tmp_path / "a.wav", _signal(0.5).T, RATE)
    assert CliRunner().invoke(main, ["compress", str(tmp_path / "a.wav"), "-m", "tinyaudio"]).exit_code == 0
    assert ("mallopt", allocator.M_MMAP_THRESHOLD, 1 << 30) in calls
