"""Training recipes: a TOML file with the architecture and the schedule of a model.

    [train]   data, vqvae_minutes, prior_minutes, lr, batch, prior_grids, log_every, save_minutes,
              workers (data loading processes; default none on a CPU, up to 8 beside a GPU),
              audio: music (Debian's music), speech_share (the share of speech segments),
              offered_stages (stage counts trained most, e.g. the CLI's rates [2, 4, 8, 16]),
              band_limit_share (the share of segments band-limited to 8 or 16 kHz),
              adversarial (weight of the discriminators' losses; 0, the default: none),
              discriminator_lr (their Adam learning rate, 2e-4 by default),
              mixed_precision (bfloat16 where the GPU or CPU computes it natively; default true)
    [net]     fields of ImageNetConfig / AudioNetConfig
    [prior]   fields of PriorConfig (embed_dim, hidden, layers, kernel)

Options given on the command line win over the file, the file over the built-in defaults (the
shipped models' settings). `configs/img1.toml` and `configs/aud1.toml` are the shipped recipes.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, fields
from pathlib import Path

from vqcodec.errors import UsageError
from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.image import ImageNetConfig
from vqcodec.weights import config_from_dict

TRAIN_DEFAULTS = {
    "image": {"vqvae_minutes": 60.0, "prior_minutes": 20.0, "lr": 4e-4, "batch": 8, "prior_grids": 3000},
    "audio": {
        "vqvae_minutes": 60.0,
        "prior_minutes": 15.0,
        "lr": 4e-4,
        "batch": 8,
        "prior_grids": 2000,
        "music": True,
        "speech_share": 0.5,
        "offered_stages": [],
        "band_limit_share": 0.0,
        "adversarial": 0.0,
        "discriminator_lr": 2e-4,
    },
}
for _defaults in TRAIN_DEFAULTS.values():
    _defaults.update(log_every=50, save_minutes=5.0, mixed_precision=True)
NET_CONFIGS = {"image": ImageNetConfig, "audio": AudioNetConfig}
PRIOR_KEYS = {"embed_dim", "hidden", "layers", "kernel"}


def load_recipe(path: Path | None, kind: str) -> dict:
    """{'train': settings, 'net': network config, 'prior': PriorConfig overrides} from a file."""
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the recipe {path}: {e}") from None
    unknown = set(raw) - {"train", "net", "prior"}
    train = {**TRAIN_DEFAULTS[kind], **raw.get("train", {})}
    unknown |= {f"train.{k}" for k in set(train) - set(TRAIN_DEFAULTS[kind]) - {"data", "workers"}}
    net_class = NET_CONFIGS[kind]
    unknown |= {f"net.{k}" for k in set(raw.get("net", {})) - {f.name for f in fields(net_class)}}
    unknown |= {f"prior.{k}" for k in set(raw.get("prior", {})) - PRIOR_KEYS}
    if unknown:
        raise UsageError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    net = config_from_dict(net_class, {**asdict(net_class()), **raw.get("net", {})})
    prior = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.get("prior", {}).items()}
    return {"train": train, "net": net, "prior": prior}
