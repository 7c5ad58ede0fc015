"""Training of the image codec: first the VQ-VAE, then the prior on its frozen indices.

Both phases are resumable: the full state (weights, codebook EMAs, Adam moments, step) is kept
in a cache folder outside the repository and saved every few minutes; if that cache is gone,
training restarts from the compact shipped weights (fresh optimizer).
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from vqcodec.errors import BadInputError, UsageError
from vqcodec.media.image import list_images
from vqcodec.nets.image import ImageNetConfig
from vqcodec.nets.vqvae import ImageVQVAE
from vqcodec.prior import PriorConfig
from vqcodec.quantizer import SEARCH_BEAM
from vqcodec.train.loop import (
    CacheFiles,
    batch_stream,
    load_trained_vqvae,
    resume_vqvae,
    setup_runtime,
    stages_per_sample,
    train_loop,
)
from vqcodec.train.prior import cached_grids, export_model, shipped_prior, train_prior

# 128x128 crops are too small for five MS-SSIM scales with the usual 11-pixel window: use 7.
MSSSIM_WINDOW = 7


class CropSampler:
    """Random crops of training photos, each downscaled by a random factor in [0.5, 1].

    Downscaling hides the JPEG block artefacts of the sources, which the codec should not
    learn as content. All photos are held in memory as uint8 (about 1 GB for 1,000 photos).
    """

    def __init__(self, paths: list[Path], crop: int, seed: int = 0):
        self.crop = crop
        self.rng = random.Random(seed)
        self.images = []
        for p in paths:
            with Image.open(p) as im:
                im = im.convert("RGB")
                if min(im.size) >= crop:
                    self.images.append(im.copy())
        if not self.images:
            raise BadInputError(f"no training image is at least {crop} pixels on its short side")

    def sample(self, batch: int, step: int | None = None) -> torch.Tensor:
        """A batch of crops; with `step`, the same crops for the same step, whatever came before."""
        rng = self.rng if step is None else random.Random(step)
        out = np.empty((batch, self.crop, self.crop, 3), dtype=np.uint8)
        for i in range(batch):
            im = rng.choice(self.images)
            w, h = im.size
            scale = rng.uniform(max(0.5, self.crop / min(w, h)), 1.0)
            side = min(int(round(self.crop / scale)), w, h)
            x0, y0 = rng.randint(0, w - side), rng.randint(0, h - side)
            patch = im.crop((x0, y0, x0 + side, y0 + side)).resize((self.crop, self.crop), Image.BICUBIC)
            if rng.random() < 0.5:
                patch = patch.transpose(Image.FLIP_LEFT_RIGHT)
            out[i] = np.asarray(patch)
        return torch.from_numpy(out).permute(0, 3, 1, 2).float().div_(255.0)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = F.mse_loss(a.clamp(0, 1), b).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


EVAL_PHOTOS = 8  # whole held-out photos in each evaluation
EVAL_STAGES = (1, 2, 4, 8, 12)


def held_out_photos(held_out: list[Path], count: int = EVAL_PHOTOS) -> list[torch.Tensor]:
    """`count` whole photos spread over the held-out list, as [1, 3, H, W] in [0, 1], cropped
    to multiples of 8 (at most 7 pixels lost per side)."""
    picks = held_out[:: max(1, len(held_out) // count)][:count]
    photos = []
    for p in picks:
        with Image.open(p) as im:
            pixels = np.asarray(im.convert("RGB"))
        h, w = pixels.shape[0] // 8 * 8, pixels.shape[1] // 8 * 8
        photos.append(torch.from_numpy(pixels[:h, :w].copy()).permute(2, 0, 1)[None].float() / 255)
    return photos


@torch.no_grad()
def evaluate_photos(model: ImageVQVAE, photos: list[torch.Tensor], stage_counts=EVAL_STAGES) -> dict:
    """Mean PSNR and MS-SSIM over whole photos: unquantized (the autoencoder's ceiling) and
    from the first n stages of the greedy code, with the rate those stages cost before the
    prior (bits per pixel at log2 K per index) and the share of each codebook used."""
    from pytorch_msssim import ms_ssim

    model.eval()
    counts = [n for n in stage_counts if n <= model.num_stages]
    sums: dict[str, float] = {}
    used = [set() for _ in range(model.num_stages)]

    def add(key: str, recon: torch.Tensor, photo: torch.Tensor) -> None:
        recon = recon.clamp(0, 1)
        sums[f"psnr_{key}"] = sums.get(f"psnr_{key}", 0.0) + psnr(recon, photo)
        ssim = ms_ssim(recon, photo, data_range=1.0, win_size=MSSSIM_WINDOW).item()
        sums[f"msssim_{key}"] = sums.get(f"msssim_{key}", 0.0) + ssim

    device = next(model.parameters()).device
    for photo in photos:
        photo = photo.to(device)
        latents = model.encoder(photo - 0.5)
        add("unquantized", model.decoder(latents) + 0.5, photo)
        indices = model.quantizer.encode(latents, model.num_stages)
        for s in range(model.num_stages):
            used[s].update(indices[:, s].unique().tolist())
        for n in counts:
            add(f"q{n}", model.decoder(model.quantizer.decode(indices[:, :n])) + 0.5, photo)
    record = {k: round(v / len(photos), 4) for k, v in sums.items()}
    bits = np.cumsum([math.log2(k) for k in model.cfg.codebook_sizes]) / model.cfg.factor**2
    record["bpp_before_prior"] = {f"q{n}": round(float(bits[n - 1]), 4) for n in counts}
    record["code_usage"] = [round(len(u) / k, 3) for u, k in zip(used, model.cfg.codebook_sizes, strict=True)]
    model.train()
    return record


def train_vqvae(
    data: list[Path],
    cache: Path,
    minutes: float,
    batch: int = 16,
    crop: int = 128,
    lr: float = 4e-4,
    msssim_weight: float = 0.05,
    commit_weight: float = 0.25,
    full_rate_prob: float = 0.5,
    init_weights: Path | None = None,
    cfg: ImageNetConfig | None = None,
    log_every: int = 50,
    save_every_s: float = 300,
    max_steps: int | None = None,
    device: str = "auto",
    workers: int | None = None,
    anneal: bool = False,
    mixed_precision: bool = True,
) -> Path:
    """Train (or resume) the VQ-VAE for `minutes` wall-clock minutes (or up to `max_steps`);
    returns the state file. Under `torchrun`, each rank runs this with its own batches."""
    from pytorch_msssim import ms_ssim

    cache.mkdir(parents=True, exist_ok=True)
    state_path, log_path = CacheFiles(cache).vqvae_state, CacheFiles(cache).vqvae_log
    cfg = cfg or ImageNetConfig()
    torch.manual_seed(0)  # the same initial weights in every fresh run
    rt = setup_runtime(device, mixed_precision)
    model = ImageVQVAE(cfg).to(rt.device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    step, trained_seconds = resume_vqvae(model, optimizer, state_path, init_weights)
    net = rt.wrap(model)
    # Every 20th photo is held out: the log's val_psnr (all stages) is measured on crops of it,
    # the evaluation log (vqvae_eval.jsonl) on whole photos of it.
    held_out = data[::20] if len(data) >= 20 else data[:1]
    sampler = CropSampler([p for p in data if p not in set(held_out)] or data, crop)
    val_images = CropSampler(held_out, crop).sample(8, 0).to(rt.device)
    photos = held_out_photos(held_out)
    levels = model.num_stages

    stream = batch_stream(sampler, batch, step, rt, workers)

    def next_loss(step: int):
        images = next(stream).to(rt.device, non_blocking=True)
        stages = stages_per_sample(batch, levels, full_rate_prob).to(rt.device)
        with rt.autocast():
            recon, _, commit, usage = net(images, stages)
        recon = recon.float()
        msssim = ms_ssim(recon.clamp(0, 1), images, data_range=1.0, win_size=MSSSIM_WINDOW)
        loss = F.mse_loss(recon, images) + msssim_weight * (1 - msssim) + commit_weight * commit
        full = stages == levels

        def log_values():
            return {
                "psnr_full_rate": psnr(recon[full], images[full]) if full.any() else None,
                "ms_ssim": msssim.item(),
                "commit": commit.item(),
                "code_usage": [round(u, 3) for u in usage],
            }

        return loss, log_values

    meta = {"config": asdict(cfg), "train_seconds": trained_seconds}
    train_loop(
        model,
        optimizer,
        step,
        next_loss,
        state_path,
        log_path,
        meta,
        minutes,
        lr,
        log_every=log_every,
        save_every_s=save_every_s,
        max_steps=max_steps,
        runtime=rt,
        anneal=anneal,
        validate=lambda: {
            "val_psnr": psnr(model(val_images, torch.full((8,), levels, device=rt.device))[0], val_images)
        },
        evaluate=lambda: evaluate_photos(model, photos),
    )
    return state_path


def load_vqvae(cache: Path, init_weights: Path | None = None) -> tuple[ImageVQVAE, int]:
    """The image VQ-VAE from the training state in `cache`, else from shipped weights."""
    return load_trained_vqvae(cache, "image", init_weights)


@torch.no_grad()
def index_set(model: ImageVQVAE, paths: list[Path], count: int, crop: int = 256, seed: int = 0) -> torch.Tensor:
    """Index grids [count, L, crop/8, crop/8] of random training crops, as int16: the codes the
    encoder's search makes (`SEARCH_BEAM`), which the prior will be given to code."""
    sampler = CropSampler(paths, crop, seed=seed)
    out = []
    for start in range(0, count, 16):
        images = sampler.sample(min(16, count - start))
        latents = model.encoder(images - 0.5)
        out.append(model.quantizer.encode(latents, model.num_stages, SEARCH_BEAM).to(torch.int16))
    return torch.cat(out)


def train_image_model(
    data: Path,
    out: Path,
    cache: Path,
    vqvae_minutes: float,
    prior_minutes: float,
    name: str = "img1",
    lr: float = 4e-4,
    device: str = "auto",
    batch: int = 8,
    net: ImageNetConfig | None = None,
    prior_options: dict | None = None,
    prior_grids: int = 3000,
    max_steps: int | None = None,
    log_every: int = 50,
    workers: int | None = None,
    save_minutes: float = 5.0,
    resume: bool = True,
    anneal: bool = False,
    mixed_precision: bool = True,
) -> dict:
    """Rebuild a shipped image model: resume the VQ-VAE, train the prior, export both
    (with `prior_minutes` <= 0, only the VQ-VAE trains and nothing is exported). `net` and
    `prior_options` (PriorConfig fields) come from a recipe; defaults are the shipped model's.

    With `resume` False, `out`'s existing weights are not used as a starting point (the caller
    clears the cache). The export is `out` (fp16 VQ-VAE + integer prior, safetensors) and `out` with suffix
    .json (training report: steps, data, hardware, bits per index of float and integer prior).
    """
    paths = list_images(data)
    if not paths:
        raise UsageError(f"no training images under {data}")
    init = out if resume and out.exists() else None
    if vqvae_minutes > 0:
        train_vqvae(
            paths,
            cache,
            vqvae_minutes,
            batch,
            lr=lr,
            init_weights=init,
            cfg=net,
            max_steps=max_steps,
            device=device,
            log_every=log_every,
            workers=workers,
            save_every_s=60 * save_minutes,
            anneal=anneal,
            mixed_precision=mixed_precision,
        )
    rt = setup_runtime(device)
    rt.finish()  # the prior trains in one process: the other ranks are done
    if not rt.main:
        return {"vqvae_steps": None, "prior_steps": 0}
    vqvae, vqvae_steps = load_vqvae(cache, init)
    if prior_minutes <= 0:  # VQ-VAE only: nothing is exported
        return {"vqvae_steps": vqvae_steps, "prior_steps": 0}
    held_out = paths[::20]
    train_paths = [p for p in paths if p not in set(held_out)]
    val_paths = held_out or train_paths
    grids, val = cached_grids(
        CacheFiles(cache).prior_grids,
        vqvae,
        {"train": train_paths, "held_out": val_paths, "count": prior_grids},
        lambda: (index_set(vqvae, train_paths, prior_grids, seed=1), index_set(vqvae, val_paths, 32, seed=2)),
    )
    prior_cfg = PriorConfig(codebook_sizes=vqvae.cfg.codebook_sizes, **(prior_options or {}))
    prior, report = train_prior(
        grids, val, prior_cfg, cache, prior_minutes, device=rt.device, init=shipped_prior(init, prior_cfg)
    )
    data_meta = {"training_data": str(data), "training_images": len(paths)}
    return export_model(out, name, vqvae, prior, report, cache, vqvae_steps, data_meta)
