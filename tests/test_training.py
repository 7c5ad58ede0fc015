"""Training runs, resumes from its cached state and exports a model the codec can use."""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict

import numpy as np
import pytest
import torch
from PIL import Image

import vqcodec
from vqcodec.errors import UsageError
from vqcodec.prior import PriorConfig
from vqcodec.registry import save_model
from vqcodec.train.image import index_set
from vqcodec.train.loop import load_trained_vqvae, save_checkpoint
from vqcodec.train.prior import cached_grids, prior_bits, start_from_shipped, train_prior
from vqcodec.train.recipe import ImageSettings
from vqcodec.train.trainer import medium, train_vqvae

from .conftest import TINY_NET, TINY_PRIOR


def _train(paths, cache, init=None, **settings) -> None:
    """The tiny image VQ-VAE trained on `paths` with these settings."""
    train_vqvae(medium("image"), {"photos": paths}, cache, ImageSettings(**settings), TINY_NET, init)


def test_train_resume_export(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    data = tmp_path / "photos"
    data.mkdir()
    for i in range(3):
        y, x = np.mgrid[0:260, 0:270]
        img = np.stack([x + 30 * i, y, (x * y) % 256], -1) + rng.integers(0, 20, (260, 270, 3))
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(data / f"p{i}.png")
    paths = sorted(data.glob("*.png"))
    cache = tmp_path / "cache"
    _train(paths, cache, vqvae_minutes=0.03, batch=2, log_every=1)
    first_steps = len((cache / "vqvae_log.jsonl").read_text().splitlines())
    assert first_steps >= 1
    _train(paths, cache, vqvae_minutes=0.03, batch=2, log_every=1)
    log = (cache / "vqvae_log.jsonl").read_text().splitlines()
    steps = [int(line.split('"step": ')[1].split(",")[0]) for line in log]
    assert steps == sorted(steps) and steps[-1] > first_steps  # resumed, not restarted

    # Each run's last save evaluated whole held-out photos, with the minutes of all runs so far.
    evaluations = [json.loads(line) for line in (cache / "vqvae_eval.jsonl").read_text().splitlines()]
    assert len(evaluations) == 2 and 0 < evaluations[0]["train_minutes"] < evaluations[1]["train_minutes"]
    last = evaluations[-1]
    assert last["step"] == steps[-1] and set(last["bpp_before_prior"]) == {"q1", "q2"} and len(last["code_usage"]) == 3
    assert 0 < last["psnr_q1"] <= last["psnr_q2"] + 1 and 0 < last["msssim_unquantized"] <= 1

    vqvae, n = load_trained_vqvae(cache, "image")
    assert n == steps[-1]
    cfg = PriorConfig(codebook_sizes=TINY_NET.codebook_sizes, embed_dim=4, hidden=16, layers=2)
    grids, val = index_set(vqvae, paths, 8, seed=1), index_set(vqvae, paths, 4, seed=2)
    prior, report = train_prior(grids, val, cfg, cache, minutes=0.05, batch=8)
    assert len(report["integer_bits_per_index"]) == 3
    # The integer prior costs what the fake-quantized network predicts, to a small tolerance.
    for exact, qat in zip(report["integer_bits_per_index"], report["qat_bits_per_index"], strict=True):
        assert abs(exact - qat) < 0.02 * qat + 0.01

    out = tmp_path / "models" / "mine.safetensors"
    save_model(out, "mine", vqvae, prior.to_integer(), {"prior": asdict(cfg), "vqvae_steps": n})
    coded = vqcodec.compress(paths[0], quality=3, model=str(out))
    monkeypatch.setenv("VQCODEC_MODELS", str(out.parent))
    assert vqcodec.decompress(coded).size == (270, 260)

    # A compact checkpoint carries the step, the training time and the evaluations on.
    checkpoint = tmp_path / "checkpoints" / "run.safetensors"
    assert save_checkpoint(cache, checkpoint)[0] == n
    _train(paths, tmp_path / "cache3", vqvae_minutes=0.02, batch=2, init=checkpoint)
    save_checkpoint(tmp_path / "cache3", checkpoint)
    merged = [json.loads(line) for line in checkpoint.with_suffix(".eval.jsonl").read_text().splitlines()]
    assert [r["step"] for r in merged][:2] == [e["step"] for e in evaluations] and merged[-1]["step"] > n
    assert merged[-1]["train_minutes"] > evaluations[-1]["train_minutes"]

    # With the cache gone, training resumes from the compact shipped weights alone.
    shipped = vqvae.quantizer.codebook(0).clone()
    cache2 = tmp_path / "cache2"
    _train(paths, cache2, vqvae_minutes=0.02, batch=2, log_every=1, init=out)
    resumed, n2 = load_trained_vqvae(cache2, "image")
    assert n2 > n
    change = (resumed.quantizer.codebook(0) - shipped).norm() / shipped.norm()
    assert change < 0.5


def test_anneal_warms_up_then_lowers_the_learning_rate_to_a_tenth(tmp_path):
    import torch

    from vqcodec.train.loop import train_loop

    weight = torch.nn.Parameter(torch.ones(3))
    optimizer = torch.optim.SGD([weight], lr=1.0)
    rates = []

    def next_loss(step):
        rates.append(optimizer.param_groups[0]["lr"])
        return (weight**2).sum(), dict

    state, log = tmp_path / "state.safetensors", tmp_path / "log.jsonl"
    model = torch.nn.Module()
    model.weight = weight
    reached = train_loop(model, optimizer, 10, next_loss, state, log, {}, 60, 0.01, warmup=4, max_steps=40, anneal=True)
    # next_loss runs before the step's rate is set: rates[i + 1] is the rate of step i.
    applied = rates[1:] + [optimizer.param_groups[0]["lr"]]
    assert reached == 40 and len(applied) == 30
    # The warm-up restarts at the phase's first step (step 10, not step 0) ...
    assert applied[0] == pytest.approx(0.01 / 4, rel=0.01)
    assert applied[0] < applied[1] < applied[2] < applied[3]
    # ... then the cosine falls from --lr to a tenth.
    assert 0.0095 < applied[3] <= 0.01
    assert all(a >= b for a, b in itertools.pairwise(applied[3:]))
    assert 0.001 <= applied[-1] < 0.0012


def test_a_shipped_prior_is_resumed_only_where_it_fits_the_indices():
    """After the VQ-VAE has trained on, its codes may mean other things: a shipped prior that
    codes the held-out grids in more than log2(K) bits is replaced by a new one."""
    import torch

    from vqcodec.prior import PriorNet

    torch.manual_seed(0)
    shipped = PriorNet(TINY_PRIOR)
    with torch.no_grad():
        for head in shipped.heads:
            head.bias[0] = 8.0  # confident that every index is 0
    zeros = torch.zeros(4, TINY_PRIOR.num_stages, 6, 6, dtype=torch.int16)
    shipped.calibrate(zeros.long())
    shipped.quantized = True
    init = shipped.to_integer()

    resumed = start_from_shipped(TINY_PRIOR, init, zeros)
    assert max(prior_bits(resumed, zeros)) < 0.1
    no_zeros = torch.stack([torch.randint(1, k, (4, 6, 6)) for k in TINY_PRIOR.codebook_sizes], 1).to(torch.int16)
    fresh = start_from_shipped(TINY_PRIOR, init, no_zeros)
    assert all(head.bias.abs().max() < 1 for head in fresh.heads)


def test_index_grids_are_reused_only_for_the_same_codes_data_and_settings(tmp_path):
    from vqcodec.nets.vqvae import ImageVQVAE

    from .conftest import TINY_GDN_NET

    vqvae, path, builds = ImageVQVAE(TINY_GDN_NET), tmp_path / "grids.safetensors", []

    def build() -> tuple[torch.Tensor, torch.Tensor]:
        builds.append(1)
        return torch.full((2, 1, 3, 3), len(builds), dtype=torch.int16), torch.zeros(1, 1, 3, 3)

    def grids(files=("a.png",), count=2):
        return cached_grids(path, vqvae, {"train": [tmp_path / f for f in files], "count": count}, build)[0]

    first = grids()
    assert torch.equal(grids(), first) and len(builds) == 1
    grids(count=3)
    grids(files=("a.png", "b.png"))
    assert len(builds) == 3
    with torch.no_grad():
        vqvae.decoder.net[0].weight.add_(1.0)  # a decoder trained on frozen codes: the same indices
        vqvae.quantizer.ema_count_0.add_(1.0)  # (and the quantizer's training statistics)
        assert torch.equal(grids(files=("a.png", "b.png")), torch.full((2, 1, 3, 3), 3, dtype=torch.int16))
        vqvae.encoder.net[0].weight.add_(1.0)  # the encoder trained on: its indices mean other things
    assert torch.equal(grids(files=("a.png", "b.png")), torch.full((2, 1, 3, 3), 4, dtype=torch.int16))
    assert len(builds) == 4


def test_a_prior_that_could_not_be_exported_exactly_is_refused_before_training(tmp_path):
    cfg = PriorConfig(codebook_sizes=(16,) * 16, embed_dim=64, kernel=(1, 5), schedule="1d")  # 1025 x 5 inputs
    grids = torch.zeros(2, 16, 1, 8, dtype=torch.int64)
    with pytest.raises(UsageError, match="2\\*\\*24"):
        train_prior(grids, grids, cfg, tmp_path, minutes=1.0)
    assert not (tmp_path / "prior_log.jsonl").exists()


def test_a_loss_spike_is_skipped_but_not_forever():
    from vqcodec.train.loop import Runtime, SpikeGuard

    guard = SpikeGuard(Runtime(torch.device("cpu")))
    calm = [guard.skip(torch.tensor(1.0 + 0.01 * i)) for i in range(30)]
    assert not any(calm)
    assert guard.skip(torch.tensor(50.0)) and guard.skip(torch.tensor(float("nan")))
    assert not guard.skip(torch.tensor(1.2))
    persistent = [guard.skip(torch.tensor(100.0)) for _ in range(SpikeGuard.MAX_IN_ROW + 1)]
    assert persistent == [True] * SpikeGuard.MAX_IN_ROW + [False] and guard.skipped == 2 + SpikeGuard.MAX_IN_ROW


def test_a_coarse_model_starts_with_the_layers_of_the_model_it_grows_from(models_dir):
    from vqcodec.nets.vqvae import ImageVQVAE
    from vqcodec.registry import load_model
    from vqcodec.train.loop import start_layers

    from .conftest import TINY_COARSE_NET

    source = load_model("tinygdn").vqvae
    torch.manual_seed(1)
    grown = ImageVQVAE(TINY_COARSE_NET)
    codebook = grown.quantizer.codebook(0).clone()
    assert start_layers(grown, models_dir / "tinygdn.safetensors") == sum(
        name.startswith(("encoder.net.", "decoder.net.")) for name in source.state_dict()
    )
    for name, tensor in source.state_dict().items():
        if name.startswith(("encoder.net.", "decoder.net.")):
            assert torch.equal(grown.state_dict()[name], tensor), name
    assert torch.equal(grown.quantizer.codebook(0), codebook)  # its codebooks are its own
    assert not bool(grown.quantizer.initialised)  # and k-means starts them from the first batch


def test_an_image_decoder_told_the_stages_starts_as_the_trained_one():
    from vqcodec.nets.image import ImageNetConfig
    from vqcodec.nets.vqvae import ImageVQVAE

    plain = ImageNetConfig(arch="gdn", widths=(8, 8, 8), blocks=(0, 0, 1), latent_dim=4, codebook_sizes=(16, 16, 16))
    torch.manual_seed(0)
    trained = ImageVQVAE(plain).eval()
    told = ImageVQVAE(ImageNetConfig(**{**asdict(plain), "stage_embedding": True})).eval()
    loaded = told.load_state_dict(trained.state_dict(), strict=False)
    assert not loaded.unexpected_keys and all(k.startswith("decoder.modulation.") for k in loaded.missing_keys)
    latents = torch.randn(2, 4, 3, 5)
    coarse = torch.tensor([1, 2])
    with torch.no_grad():
        assert torch.equal(trained.decode(latents), told.decode(latents, coarse))
        for table in told.decoder.modulation.parameters():
            table.normal_(0, 0.5)
        assert not torch.allclose(told.decode(latents), told.decode(latents, coarse))
        per_position = coarse[:, None, None].expand(-1, 3, 5)
        assert torch.equal(told.decode(latents, coarse), told.decode(latents, per_position))
        assert torch.equal(told.decode(latents), told.decode(latents, torch.tensor([3, 3])))


def _grown_gdn_model(trained_blocks: tuple[int, int, int], **growth):
    """(a tiny trained gdn VQ-VAE, the same grown by `growth` with its trained layers loaded), and
    how many tensors the loading widened."""
    from vqcodec.nets.image import ImageNetConfig
    from vqcodec.nets.vqvae import ImageVQVAE
    from vqcodec.train.loop import load_grown

    small = ImageNetConfig(arch="gdn", widths=(8, 8, 8), blocks=trained_blocks, latent_dim=4, codebook_sizes=(16, 16))
    torch.manual_seed(0)
    trained = ImageVQVAE(small).eval()
    grown = ImageVQVAE(ImageNetConfig(**{**asdict(small), **growth})).eval()
    return trained, grown, load_grown(grown, trained.state_dict())


def test_an_image_model_grown_with_blocks_at_a_quarter_starts_as_the_trained_one():
    trained, grown, widened = _grown_gdn_model((0, 0, 1), blocks=(1, 1, 1))
    assert widened == 0
    photo = torch.rand(1, 3, 32, 32) - 0.5
    with torch.no_grad():
        assert torch.equal(trained.decoder(trained.encoder(photo)), grown.decoder(grown.encoder(photo)))
        grown.decoder.net[3].blocks[0].body[3].weight.add_(0.1)  # and the new block is a layer that learns
        assert not torch.equal(trained.decoder(trained.encoder(photo)), grown.decoder(grown.encoder(photo)))


def test_an_image_decoder_grown_alone_keeps_the_encoder_and_starts_as_the_trained_one():
    trained, grown, widened = _grown_gdn_model((0, 1, 1), decoder_blocks=(1, 2, 1))
    assert widened == 0
    # the encoder is the trained one, layer for layer, so its codes (and a prior on them) hold
    assert grown.encoder.state_dict().keys() == trained.encoder.state_dict().keys()
    photo = torch.rand(1, 3, 32, 32) - 0.5
    with torch.no_grad():
        latents = trained.encoder(photo)
        assert torch.equal(trained.decoder(latents), grown.decoder(latents))
        grown.decoder.net[5].blocks[0].body[3].weight.add_(0.1)  # the new block at 1/2 learns
        assert not torch.equal(trained.decoder(latents), grown.decoder(latents))


def test_an_image_model_grown_to_a_wider_latent_keeps_its_codes_and_its_output():
    """Latent 4 grown to 8 (net2net): the encoder's outputs and the codebooks' coordinates copied,
    the decoder's input weights shared between the copies, so the codes and the decoded photo
    are the trained model's; the copies then differ by what each learns."""
    trained, grown, widened = _grown_gdn_model((0, 0, 1), latent_dim=8)
    # the encoder's last convolution (weight, bias), the decoder's first (weight), and each
    # stage's codebook and moving sum
    assert widened == 2 + 1 + 2 * 2
    photo = torch.rand(1, 3, 32, 32) - 0.5
    with torch.no_grad():
        latents = grown.encoder(photo)
        assert torch.equal(latents[:, 4:], latents[:, :4])
        indices = trained.quantizer.encode(trained.encoder(photo), 2)
        assert torch.equal(grown.quantizer.encode(latents, 2), indices)
        decoded = trained.decoder(trained.quantizer.decode(indices))
        assert torch.allclose(grown.decoder(grown.quantizer.decode(indices)), decoded, atol=1e-5)
