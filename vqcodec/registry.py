"""Shipped models: `models/NAME.safetensors` (weights + JSON metadata), found by name.

A model file holds the VQ-VAE weights (fp16, upcast when loaded), the integer prior and its
configuration. A .vqc file names its model and the first 4 bytes of the SHA-256 of the
model's tensors, so a file is never decoded with weights other than those that made it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch

from .errors import MissingModelError
from .model import ImageVQVAE
from .nets import ImageNetConfig
from .prior import IntegerPrior, PriorConfig
from .weights import config_from_dict, load_tensors, save_tensors

DEFAULT_IMAGE_MODEL = "img1"
# EMA statistics are training state only; the shipped file keeps the codebooks.
_TRAINING_ONLY = ("ema_count_", "ema_sum_", "initialised")


def models_dir() -> Path:
    """$VQCODEC_MODELS, else the `models/` folder of the source tree."""
    env = os.environ.get("VQCODEC_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def tensors_hash(tensors: dict[str, torch.Tensor]) -> bytes:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[:4]


@dataclass
class ImageModel:
    name: str
    hash: bytes
    vqvae: ImageVQVAE
    prior: IntegerPrior
    meta: dict

    @property
    def num_stages(self) -> int:
        return self.vqvae.num_stages

    @property
    def device(self) -> torch.device:
        return self.prior.device


def save_image_model(
    path: Path, name: str, vqvae: ImageVQVAE, prior_tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    tensors = {
        f"vqvae.{k}": v.half() if v.is_floating_point() else v
        for k, v in vqvae.state_dict().items()
        if not k.split(".")[-1].startswith(_TRAINING_ONLY)
    }
    tensors.update({f"prior.{k}": v for k, v in prior_tensors.items()})
    meta = {**meta, "name": name, "kind": "image", "net": asdict(vqvae.cfg)}
    save_tensors(path, tensors, meta)


def resolve(name_or_path: str | os.PathLike) -> Path:
    path = Path(name_or_path)
    if path.suffix == ".safetensors" and path.exists():
        return path
    candidate = models_dir() / f"{name_or_path}.safetensors"
    if not candidate.exists():
        available = ", ".join(sorted(p.stem for p in models_dir().glob("*.safetensors"))) or "none"
        raise MissingModelError(f"model '{name_or_path}' is not installed (installed: {available})")
    return candidate


@lru_cache(maxsize=8)
def _load(path: str, device: str) -> ImageModel:
    tensors, meta = load_tensors(Path(path))
    net_cfg = config_from_dict(ImageNetConfig, meta["net"])
    prior_cfg = config_from_dict(PriorConfig, meta["prior"])
    vqvae = ImageVQVAE(net_cfg)
    weights = {k[6:]: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith("vqvae.")}
    missing, unexpected = vqvae.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not k.split(".")[-1].startswith(_TRAINING_ONLY)]
    if missing or unexpected:
        raise MissingModelError(f"model file {path} does not match the {meta['name']} architecture")
    vqvae.eval().to(device)
    prior = IntegerPrior(prior_cfg, {k[6:]: v for k, v in tensors.items() if k.startswith("prior.")}, device)
    return ImageModel(meta["name"], tensors_hash(tensors), vqvae, prior, meta)


def load_image_model(name_or_path: str | os.PathLike = DEFAULT_IMAGE_MODEL, device: str = "cpu") -> ImageModel:
    """Load (once per process and device) a model by name or by .safetensors path."""
    return _load(str(resolve(name_or_path)), str(torch.device(device)))
