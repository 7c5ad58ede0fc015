"""The image medium of the trainer (`train.trainer`): photos cut into random crops, squared
error and MS-SSIM, whole held-out photos measured at several stage counts."""

from __future__ import annotations

import math
import random
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
from vqcodec.train.loop import CacheFiles
from vqcodec.train.prior import cached_grids
from vqcodec.train.recipe import ImageSettings
from vqcodec.train.trainer import Groups, Medium, Run

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


def held_out_photos(held_out: list[Path], count: int = EVAL_PHOTOS, factor: int = 8) -> list[torch.Tensor]:
    """`count` whole photos spread over the held-out list, as [1, 3, H, W] in [0, 1], cropped
    to multiples of the model's `factor` (at most factor - 1 pixels lost per side)."""
    picks = held_out[:: max(1, len(held_out) // count)][:count]
    photos = []
    for p in picks:
        with Image.open(p) as im:
            pixels = np.asarray(im.convert("RGB"))
        h, w = pixels.shape[0] // factor * factor, pixels.shape[1] // factor * factor
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
        add("unquantized", model.decode(latents), photo)
        indices = model.quantizer.encode(latents, model.num_stages)
        for s in range(model.num_stages):
            used[s].update(indices[:, s].unique().tolist())
        for n in counts:
            add(f"q{n}", model.reconstruct(indices[:, :n]), photo)
    record = {k: round(v / len(photos), 4) for k, v in sums.items()}
    bits = np.cumsum([math.log2(k) for k in model.cfg.codebook_sizes]) / model.cfg.factor**2
    record["bpp_before_prior"] = {f"q{n}": round(float(bits[n - 1]), 4) for n in counts}
    record["code_usage"] = [round(len(u) / k, 3) for u, k in zip(used, model.cfg.codebook_sizes, strict=True)]
    model.train()
    return record


@torch.no_grad()
def index_set(model: ImageVQVAE, paths: list[Path], count: int, crop: int = 256, seed: int = 0) -> torch.Tensor:
    """Index grids [count, L, crop/f, crop/f] of random training crops, as int16: the codes the
    encoder's search makes (`SEARCH_BEAM`), which the prior will be given to code."""
    sampler = CropSampler(paths, crop, seed=seed)
    out = []
    for start in range(0, count, 16):
        images = sampler.sample(min(16, count - start))
        latents = model.encoder(images - 0.5)
        out.append(model.quantizer.encode(latents, model.num_stages, SEARCH_BEAM).to(torch.int16))
    return torch.cat(out)


class ImageTraining(Medium):
    kind = "image"

    def training_files(self, data: Path, cache: Path, settings: ImageSettings) -> Groups:
        paths = list_images(data)
        if not paths:
            raise UsageError(f"no training images under {data}")
        return {"photos": paths}

    def start(self, model, train: Groups, held_out: Groups, cache: Path, settings: ImageSettings, rt) -> Run:
        return _ImageRun(model, train["photos"], held_out["photos"], settings, rt)

    def prior_grids(self, vqvae, groups: Groups, cache: Path, settings: ImageSettings):
        paths = groups["photos"]
        held_out = paths[::20]
        train = [p for p in paths if p not in set(held_out)]
        val = held_out or train
        count = settings.prior_grids
        return cached_grids(
            CacheFiles(cache).prior_grids,
            vqvae,
            {"train": train, "held_out": val, "count": count},
            lambda: (index_set(vqvae, train, count, seed=1), index_set(vqvae, val, 32, seed=2)),
        )

    def prior_config(self, vqvae_cfg: ImageNetConfig, options: dict) -> PriorConfig:
        return PriorConfig(codebook_sizes=vqvae_cfg.codebook_sizes, **options)

    def report(self, groups: Groups, data: Path, settings: ImageSettings) -> dict:
        return {"training_data": str(data), "training_images": len(groups["photos"])}


class _ImageRun(Run):
    """Random crops, squared error plus MS-SSIM; PSNR of held-out crops in the log, whole held-out
    photos in the evaluation log."""

    def __init__(self, model: ImageVQVAE, train: list[Path], held_out: list[Path], settings: ImageSettings, rt):
        from pytorch_msssim import ms_ssim

        self.model, self.settings, self.ms_ssim = model, settings, ms_ssim
        self.sampler = CropSampler(train, settings.crop)
        self.val_images = CropSampler(held_out, settings.crop).sample(8, 0).to(rt.device)
        self.photos = held_out_photos(held_out, factor=model.cfg.factor)

    def losses(self, recon: torch.Tensor, images: torch.Tensor, stages: torch.Tensor):
        msssim = self.ms_ssim(recon.clamp(0, 1), images, data_range=1.0, win_size=MSSSIM_WINDOW)
        loss = F.mse_loss(recon, images) + self.settings.msssim_weight * (1 - msssim)
        full = stages == self.model.num_stages

        def values() -> dict:
            return {"psnr_full_rate": psnr(recon[full], images[full]) if full.any() else None, "ms_ssim": msssim.item()}

        return loss, values

    def validate(self) -> dict:
        stages = torch.full((8,), self.model.num_stages, device=self.val_images.device)
        return {"val_psnr": psnr(self.model(self.val_images, stages)[0], self.val_images)}

    def evaluate(self) -> dict:
        return evaluate_photos(self.model, self.photos)
