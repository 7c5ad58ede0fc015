"""The prior is exact: integer kernels match an int64 reference, and probabilities do not
depend on the thread count (encode in one process with 1 thread, decode in one with 2)."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqcodec.errors import UsageError
from vqcodec.prior import (
    ACT_MAX,
    ACT_PEAK,
    EXACT_LIMIT,
    IntegerPrior,
    PriorConfig,
    PriorNet,
    exact_conv,
    pass_map,
    prior_from_integer,
    rescale,
)
from vqcodec.registry import load_image_model, load_model

from .conftest import TINY_NET, TINY_PRIOR


def reference_conv(x: torch.Tensor, w: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """Integer convolution in int64 by explicit shifted sums (no floating point at all)."""
    kh, kw = w.shape[-2:]
    ph, pw = dilation * (kh // 2), dilation * (kw // 2)
    xp = F.pad(x.to(torch.int64), (pw, pw, ph, ph))
    h, wd = x.shape[-2:]
    out = torch.zeros(x.shape[0], w.shape[0], h, wd, dtype=torch.int64)
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[:, :, dy * dilation : dy * dilation + h, dx * dilation : dx * dilation + wd]
            out += torch.einsum("bchw,oc->bohw", patch, w[:, :, dy, dx].to(torch.int64))
    return out


@pytest.mark.parametrize(
    "channels,kh,kw,dilation",
    [(97, 3, 3, 1), (64, 3, 3, 1), (64, 1, 1, 1), (129, 1, 5, 1), (96, 1, 5, 1), (64, 3, 3, 2), (96, 1, 5, 4)],
)
def test_exact_conv_matches_int64_reference_at_extremes(channels, kh, kw, dilation):
    gen = torch.Generator().manual_seed(channels + kh + kw + dilation)
    # Worst case: every input and weight at the largest magnitude, all with the same sign.
    x = torch.full((1, channels, 9, 11), ACT_MAX, dtype=torch.float32)
    w = torch.full((5, channels, kh, kw), ACT_MAX, dtype=torch.float32)
    w[1] = -ACT_MAX
    w[2:] = torch.randint(-ACT_MAX, ACT_MAX + 1, (3, channels, kh, kw), generator=gen).float()
    x[:, :, ::2] = torch.randint(0, ACT_MAX + 1, (1, channels, 5, 11), generator=gen).float()
    got = exact_conv(x, w, dilation=dilation)
    want = reference_conv(x, w, dilation)
    assert want.abs().max() < EXACT_LIMIT
    assert torch.equal(got.to(torch.int64), want)
    # and at the positions of a pass only (the prior's last layer), in row-major order
    at = torch.rand(9, 11, generator=gen) < 0.3
    assert torch.equal(exact_conv(x, w, at, dilation).to(torch.int64), want[:, :, at])


def test_rescale_is_floor_rounding_in_int64():
    acc = torch.tensor([[[-(2**23)], [2**23 - 1], [12345]]], dtype=torch.float32)  # [1, 3, 1]
    mult = torch.tensor([3 << 20, 1 << 24, 5])
    bias = torch.tensor([0, -(1 << 24), 1 << 23])
    out = rescale(acc, mult, bias)
    want = [
        ((-(2**23)) * (3 << 20) + (1 << 23)) >> 24,
        ((2**23 - 1) * (1 << 24) - (1 << 24) + (1 << 23)) >> 24,
        (12345 * 5 + (1 << 23) + (1 << 23)) >> 24,
    ]
    assert out.flatten().tolist() == want


def test_prior_refuses_weights_that_could_overflow():
    net = PriorNet(TINY_PRIOR)
    tensors = net.to_integer()
    tensors["conv.0.weight"] = torch.full((16, 1200, 3, 3), ACT_MAX, dtype=torch.int8)
    with pytest.raises(ValueError, match="not exact"):
        IntegerPrior(TINY_PRIOR, tensors)


def fake_quantized_tiny_prior(cfg: PriorConfig = TINY_PRIOR) -> tuple[PriorNet, torch.Tensor]:
    """A tiny float prior, calibrated and fake-quantized, and the random grids it was calibrated on."""
    torch.manual_seed(0)
    net = PriorNet(cfg)
    grids = torch.stack([torch.randint(0, k, (3, 10, 12)) for k in TINY_NET.codebook_sizes], 1)
    net.calibrate(grids)
    net.quantized = True
    return net, grids


@pytest.mark.parametrize(
    "cfg",
    [
        TINY_PRIOR,
        dataclasses.replace(TINY_PRIOR, layers=1),  # one layer: the first is also the last
        dataclasses.replace(TINY_PRIOR, dilations=(2, 3)),
        dataclasses.replace(TINY_PRIOR, kernel=(1, 3), schedule="1d", dilations=(1, 4)),
    ],
    ids=["plain", "one-layer", "dilated", "dilated-1d"],
)
def test_integer_prior_is_the_trained_fake_quantized_network(cfg):
    net, grids = fake_quantized_tiny_prior(cfg)
    prior = IntegerPrior(cfg, net.to_integer())
    for stage in range(cfg.num_stages):
        for pass_ in range(4):
            with torch.no_grad():
                fake = net(grids, stage, pass_) * 16
            exact = prior.logits(grids, stage, pass_).double()
            # Rounding of the integer multipliers may move a logit by one step, rarely.
            diff = (fake.double() - exact).abs()
            assert diff.max() <= 1.0 + 1e-6
            assert (diff > 1e-3).double().mean() < 0.05
        # the encoder's batched passes and the decoder's one by one, to the last bit
        for pass_, probs in enumerate(prior.stage_pmfs(grids[:1], stage)):
            assert np.array_equal(probs, prior.pmf(grids[:1], stage, pass_))


def test_float_prior_rebuilt_from_the_integer_one_computes_the_same_logits():
    """Training resumes from a shipped model's integer prior when the training state is lost."""
    net, grids = fake_quantized_tiny_prior()
    shipped = net.to_integer()
    rebuilt = prior_from_integer(TINY_PRIOR, shipped)
    rebuilt.quantized = True
    again = rebuilt.to_integer()
    for name, tensor in shipped.items():
        if name.endswith("weight") or name.startswith("embed"):
            assert torch.equal(again[name], tensor), name
        else:  # multipliers and biases: float32 rounding of a 2**24 fixed point at most
            assert (again[name] - tensor).abs().max() <= 1e-5 * tensor.abs().max() + 16, name
    for stage in range(TINY_PRIOR.num_stages):
        with torch.no_grad():
            assert torch.allclose(rebuilt(grids, stage, 1), net(grids, stage, 1), atol=2 / 16)


def test_rebuilt_float_prior_has_activations_of_the_size_training_starts_with():
    """Tiny activations would let Adam's first steps on the biases switch every ReLU off."""
    net, grids = fake_quantized_tiny_prior()
    rebuilt = prior_from_integer(TINY_PRIOR, net.to_integer())
    rebuilt.calibrate(grids)  # the same grids: the integer peak of each layer is 127
    assert torch.allclose(rebuilt.act_scale * ACT_MAX, torch.full((TINY_PRIOR.layers,), ACT_PEAK), rtol=0.1)


def test_pmf_rows_are_normalised_and_cover_every_symbol():
    prior = load_image_model("tiny").prior
    grid = torch.stack([torch.randint(0, k, (1, 7, 5)) for k in TINY_NET.codebook_sizes], 1)
    for stage, k in enumerate(TINY_NET.codebook_sizes):
        for pass_ in range(4):
            probs = prior.pmf(grid, stage, pass_)
            assert probs.shape == (int((pass_map(7, 5) == pass_).sum()), k)
            assert np.allclose(probs.sum(1), 1.0) and (probs > 0).all()
            assert probs.flags.c_contiguous  # constriction reads the buffer in C order


@pytest.mark.parametrize("model", ["tiny", "tinyaudio", Path(__file__).parents[1] / "models" / "aud2.safetensors"])
def test_the_encoders_batched_passes_give_the_same_probabilities(model):
    """`stage_pmfs` (a stage's four passes as one batch, for the encoder) equals `pmf` pass
    by pass (as the decoder computes them) to the last bit."""
    prior = load_model(model).prior
    h, w = (7, 5) if prior.cfg.schedule == "2x2" else (1, 23)
    grid = torch.stack([torch.randint(0, k, (1, h, w)) for k in prior.cfg.codebook_sizes], 1)
    for stage in range(prior.cfg.num_stages):
        batched = prior.stage_pmfs(grid, stage)
        for pass_ in range(4):
            assert np.array_equal(batched[pass_], prior.pmf(grid, stage, pass_))
            assert batched[pass_].flags.c_contiguous


WORKER = r"""
import json, sys, torch
from pathlib import Path
torch.set_num_threads(int(sys.argv[1]))
from vqcodec.codec import image as image_codec
from vqcodec.registry import load_image_model, load_model
mode, path = sys.argv[2], Path(sys.argv[3])
if mode == "encode":
    import numpy as np
    rng = np.random.default_rng(1)
    y, x = np.mgrid[0:100, 0:140]
    img = np.clip(np.stack([x, y, x + y], -1) + rng.integers(0, 60, (100, 140, 3)), 0, 255).astype(np.uint8)
    model = load_image_model("tiny")
    out = {}
    for q in (1, 2, 3):
        Path(f"{path}.{q}").write_bytes(image_codec.compress(img, quality=q, model="tiny", device="cpu"))
        out[q] = image_codec.encode_indices(model, img, q)[0].flatten().tolist()
    print(json.dumps(out))
else:
    out = {}
    for q in (1, 2, 3):
        header, model, indices = image_codec.decode_indices(Path(f"{path}.{q}").read_bytes(), device="cpu")
        out[q] = indices.flatten().tolist()
    print(json.dumps(out))
"""


def _run(threads: int, mode: str, path: Path, worker: str = WORKER) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    result = subprocess.run(
        [sys.executable, "-c", worker, str(threads), mode, str(path)], env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("enc_threads,dec_threads", [(1, 2), (2, 1)])
def test_encode_and_decode_with_different_thread_counts(tmp_path, enc_threads, dec_threads):
    path = tmp_path / "img"
    encoded = json.loads(_run(enc_threads, "encode", path))
    decoded = json.loads(_run(dec_threads, "decode", path))
    assert decoded == encoded


AUDIO_WORKER = r"""
import json, sys, torch
from pathlib import Path
torch.set_num_threads(int(sys.argv[1]))
from vqcodec.codec import audio as audio_codec
mode, path = sys.argv[2], Path(sys.argv[3])
out = {}
for kbps in (2.4, 4.8, 9.6):
    if mode == "encode":
        import numpy as np
        rng = np.random.default_rng(2)
        t = np.arange(44100 * 3) / 44100
        wave = np.stack([np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 450 * t)]) * 0.3
        wave = (wave + 0.05 * rng.standard_normal(wave.shape)).astype(np.float32)
        header, chunks, indices = audio_codec.encode_audio((wave, 44100), kbps, model="tinyaudio", device="cpu")
        Path(f"{path}.{kbps}").write_bytes(audio_codec.container.pack_audio(header, chunks))
    else:
        indices = list(audio_codec.decode_audio_indices(Path(f"{path}.{kbps}").read_bytes(), device="cpu"))
    out[kbps] = [[g.flatten().tolist() for g in segment] for segment in indices]
print(json.dumps(out))
"""


@pytest.mark.parametrize("enc_threads,dec_threads", [(1, 2), (2, 1)])
def test_audio_encode_and_decode_with_different_thread_counts(tmp_path, enc_threads, dec_threads):
    path = tmp_path / "snd"
    encoded = json.loads(_run(enc_threads, "encode", path, AUDIO_WORKER))
    decoded = json.loads(_run(dec_threads, "decode", path, AUDIO_WORKER))
    assert decoded == encoded and len(encoded["4.8"]) == 3  # three segments, all identical


def test_prior_dilations_are_one_per_layer():
    with pytest.raises(UsageError, match="one positive number per layer"):
        dataclasses.replace(TINY_PRIOR, dilations=(1, 2, 4))


def test_one_dimensional_schedule():
    passes = pass_map(1, 9, schedule="1d")
    assert passes.tolist() == [[0, 2, 1, 3, 0, 2, 1, 3, 0]]
    with pytest.raises(ValueError):
        pass_map(2, 2, schedule="spiral")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_and_cpu_priors_agree_bit_for_bit():
    from vqcodec.codec import image as image_codec

    rng = np.random.default_rng(3)
    img = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    for q in (1, 3):
        on_gpu = image_codec.compress(img, quality=q, model="tiny", device="cuda")
        _, _, indices = image_codec.decode_indices(on_gpu, device="cpu")
        on_cpu = image_codec.compress(img, quality=q, model="tiny", device="cpu")
        _, _, back = image_codec.decode_indices(on_cpu, device="cuda")
        assert indices.shape == back.shape
    grid = torch.stack([torch.randint(0, k, (1, 9, 13)) for k in TINY_NET.codebook_sizes], 1)
    cpu, gpu = load_image_model("tiny", "cpu").prior, load_image_model("tiny", "cuda").prior
    for stage in range(3):
        for pass_ in range(4):
            assert np.array_equal(cpu.pmf(grid, stage, pass_), gpu.pmf(grid, stage, pass_))


def test_exact_matmuls_hold_while_any_thread_is_inside():
    """Two threads coding at once: the first one out must not turn reduced precision back on
    under the other; the last one out restores the caller's settings."""
    import threading

    from vqcodec.prior import _exact_matmuls

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("medium")
    try:
        first_in, first_out, seen = threading.Event(), threading.Event(), []

        def first():
            with _exact_matmuls():
                first_in.set()
                second_in.wait()
            first_out.set()

        def second():
            first_in.wait()
            with _exact_matmuls():
                second_in.set()
                first_out.wait()
                seen.append(torch.get_float32_matmul_precision())

        second_in = threading.Event()
        threads = [threading.Thread(target=first), threading.Thread(target=second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert seen == ["highest"] and torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision(before)
