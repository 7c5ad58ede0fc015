"""Shipped models: `models/NAME.safetensors` (weights + JSON metadata), found by name.

A model file holds the VQ-VAE weights (fp16, upcast when loaded), the integer prior and its
configuration. A .vqc file names its model and the first 4 bytes of the SHA-256 of the
model's tensors, so a file is never decoded with weights other than those that made it. When a
shipped model is rebuilt, its earlier version stays installed as
`models/retired/NAME-HASH.safetensors` (`retire_model`), so the files it made still decode.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

import torch

from vqcodec.catalog import (
    DEFAULT_AUDIO_MODEL,
    DEFAULT_IMAGE_MODEL,
    forget_metadata,
    model_meta,
    models_dir,
    resolve,
)
from vqcodec.errors import MissingModelError
from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.image import ImageNetConfig
from vqcodec.nets.vqvae import AudioVQVAE, ImageVQVAE
from vqcodec.prior import IntegerPrior, PriorConfig
from vqcodec.weights import config_from_dict, load_tensors, save_tensors

# kind -> (VQ-VAE class, its network config class)
VQVAE_KINDS = {"image": (ImageVQVAE, ImageNetConfig), "audio": (AudioVQVAE, AudioNetConfig)}
# EMA statistics are training state only; the shipped file keeps the codebooks.
_TRAINING_ONLY = ("ema_count_", "ema_sum_", "initialised")


def training_only(key: str) -> bool:
    """Whether a VQ-VAE state key is training state alone (EMA statistics), not kept in model files."""
    return key.split(".")[-1].startswith(_TRAINING_ONLY)


def tensors_hash(tensors: dict[str, torch.Tensor]) -> bytes:
    digest = hashlib.sha256()
    for key in sorted(tensors):
        t = tensors[key].contiguous()
        digest.update(f"{key}:{t.dtype}:{tuple(t.shape)};".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.digest()[:4]


@dataclass
class CodecModel:
    name: str
    kind: str  # "image" or "audio"
    hash: bytes
    vqvae: ImageVQVAE | AudioVQVAE
    prior: IntegerPrior
    meta: dict

    @property
    def num_stages(self) -> int:
        return self.vqvae.num_stages

    @property
    def device(self) -> torch.device:
        return self.prior.device


def save_model(
    path: Path,
    name: str,
    vqvae: ImageVQVAE | AudioVQVAE,
    prior_tensors: dict[str, torch.Tensor] | None,
    meta: dict,
) -> None:
    """Write a model file: fp16 VQ-VAE weights, the integer prior, configs in the metadata.

    Without a prior it is a compact training checkpoint, not a codec: `vqcodec train -o PATH`
    resumes from it when its cache is gone (a fresh optimizer, the codebooks kept)."""
    tensors = {
        f"vqvae.{k}": v.half() if v.is_floating_point() else v
        for k, v in vqvae.state_dict().items()
        if not training_only(k)
    }
    tensors.update({f"prior.{k}": v for k, v in (prior_tensors or {}).items()})
    kind = "audio" if isinstance(vqvae, AudioVQVAE) else "image"
    meta = {**meta, "name": name, "kind": kind, "net": asdict(vqvae.cfg)}
    save_tensors(path, tensors, meta)


def set_levels(path: Path, levels: list[tuple[str, int]] | None, default_level: int | None = None) -> None:
    """Make the model file `path` the first of a family: its quality levels are these (model
    name, stages), in order of rate (`catalog.quality_levels`), and `default_level` the one
    coded when none is asked for; None: its own stages again. Its tensors, and so its hash and
    the files it made, are unchanged."""
    tensors, meta = load_tensors(path)
    meta.pop("levels", None)
    meta.pop("default_level", None)
    if levels is not None:
        meta["levels"] = [[name, stages] for name, stages in levels]
    if default_level is not None:
        meta["default_level"] = default_level
    save_tensors(path, tensors, meta)
    forget_metadata()


@lru_cache(maxsize=8)
def _load(path: str, device: str) -> CodecModel:
    tensors, meta = load_tensors(Path(path))
    kind = meta["kind"]
    vqvae_class, net_class = VQVAE_KINDS[kind]
    try:
        net_cfg = config_from_dict(net_class, meta["net"])
        prior_cfg = config_from_dict(PriorConfig, meta["prior"])
        vqvae = vqvae_class(net_cfg)
    except (TypeError, ValueError, KeyError) as e:
        raise MissingModelError(f"model file {path} has a configuration this version cannot build ({e})") from None
    weights = {k[6:]: v.float() if v.is_floating_point() else v for k, v in tensors.items() if k.startswith("vqvae.")}
    missing, unexpected = vqvae.load_state_dict(weights, strict=False)
    missing = [k for k in missing if not training_only(k)]
    if missing or unexpected:
        raise MissingModelError(f"model file {path} does not match the {meta['name']} architecture")
    vqvae.eval().to(device).for_coding()
    prior = IntegerPrior(prior_cfg, {k[6:]: v for k, v in tensors.items() if k.startswith("prior.")}, device)
    return CodecModel(meta["name"], kind, tensors_hash(tensors), vqvae, prior, meta)


def load_model(name_or_path: str | os.PathLike, device: str = "cpu", kind: str | None = None) -> CodecModel:
    """Load (once per process and device) a model by name or by .safetensors path; with `kind`,
    refuse a model for the other medium."""
    model_meta(name_or_path, kind)  # a clear error for a missing, foreign or damaged file
    return _load(str(resolve(name_or_path)), str(torch.device(device)))


def load_image_model(name_or_path: str | os.PathLike = DEFAULT_IMAGE_MODEL, device: str = "cpu") -> CodecModel:
    return load_model(name_or_path, device, "image")


def load_audio_model(name_or_path: str | os.PathLike = DEFAULT_AUDIO_MODEL, device: str = "cpu") -> CodecModel:
    return load_model(name_or_path, device, "audio")


def retired_path(name: str, model_hash: bytes) -> Path:
    return models_dir() / "retired" / f"{name}-{model_hash.hex()}.safetensors"


def retire_model(name: str) -> Path:
    """Keep the installed version of shipped model `name` beside it, in models/retired, before
    it is rebuilt: the files it made name its hash, and decode with it."""
    path = resolve(name)
    target = retired_path(name, tensors_hash(load_tensors(path)[0]))
    target.parent.mkdir(exist_ok=True)
    shutil.copyfile(path, target)
    return target


def model_for_file(header, kind: str, device: str) -> CodecModel:
    """The model a file's header names, checked to be the weights it was made with: the
    installed version, or a retired one of that name and hash."""
    model = load_model(header.model_name, device, kind)
    retired = retired_path(header.model_name, header.model_hash)
    if model.hash != header.model_hash and retired.is_file():
        model = load_model(retired, device, kind)
    if model.hash != header.model_hash:
        raise MissingModelError(
            f"file was made with a different version of model '{header.model_name}' "
            f"(weights {header.model_hash.hex()}, installed {model.hash.hex()})"
        )
    return model
