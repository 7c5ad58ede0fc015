"""Training recipes: a TOML file with the architecture and the schedule of a model.

    [train]   the fields of ImageSettings / AudioSettings below (every one optional)
    [net]     fields of ImageNetConfig / AudioNetConfig
    [prior]   fields of PriorConfig (embed_dim, hidden, layers, kernel, dilations)

The settings classes are the one place of the training defaults (the shipped models'
settings): options given on the command line win over the file, the file over them.
`configs/img1.toml` and `configs/aud1.toml` are the shipped recipes.
"""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

from vqcodec.errors import UsageError
from vqcodec.nets.audio import AudioNetConfig
from vqcodec.nets.image import ImageNetConfig
from vqcodec.prior import PriorConfig
from vqcodec.weights import config_from_dict


@dataclass(frozen=True)
class Settings:
    """How a model trains, for both media."""

    data: str | None = None  # the training data folder, when the command line gives none
    vqvae_minutes: float = 60.0  # wall-clock minutes of the VQ-VAE (0: skip it)
    prior_minutes: float = 20.0  # then of the prior (0: no prior, nothing exported)
    lr: float = 4e-4  # the VQ-VAE's Adam learning rate
    anneal: bool = False  # the rate falls from lr to a tenth over this run (cosine): a final phase
    batch: int = 8  # crops or segments per step
    commit_weight: float = 0.25  # the quantizer's commitment loss
    full_rate_prob: float = 0.5  # the share of samples trained with every stage (else quantizer dropout)
    prior_grids: int = 3000  # index grids the prior trains on
    max_steps: int | None = None  # stop the VQ-VAE at this step count
    log_every: int = 50  # steps between log records
    save_minutes: float = 5.0  # minutes between saved states
    mixed_precision: bool = True  # bfloat16 where the GPU or CPU computes it natively
    device: str = "auto"
    workers: int | None = None  # data loading processes: none on a CPU, up to 8 beside a GPU
    resume: bool = True  # from the cached state, else the output's weights (False: start over)
    start_from: str | None = None  # a new run starts with this model file's layers of the same shapes
    # where the cache has no state, the VQ-VAE comes from this model file (a training checkpoint)
    # rather than from the output's, whose prior stays the prior's warm start
    vqvae_from: str | None = None
    # parts of the VQ-VAE that keep the weights they start with ("encoder", "quantizer"): a new
    # decoder learns to read an existing model's codes, so its prior and files stay valid
    frozen: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImageSettings(Settings):
    crop: int = 128  # side of the training crops
    msssim_weight: float = 0.05  # weight of 1 - MS-SSIM beside the squared error


@dataclass(frozen=True)
class AudioSettings(Settings):
    prior_minutes: float = 15.0
    prior_grids: int = 2000
    seconds: float = 1.0  # length of the training segments
    music: bool = True  # add Debian's music and many-voice speech to the data folder's speech
    speech_share: float = 0.5  # the share of speech segments
    offered_stages: tuple[int, ...] = ()  # stage counts trained most, e.g. the CLI's rates (2, 4, 8, 16)
    band_limit_share: float = 0.0  # the share of segments band-limited to 8 or 16 kHz
    adversarial: float = 0.0  # weight of the discriminators' losses (0: none)
    discriminator_lr: float = 2e-4  # their Adam learning rate


SETTINGS = {"image": ImageSettings, "audio": AudioSettings}
NET_CONFIGS = {"image": ImageNetConfig, "audio": AudioNetConfig}
# A recipe sets the prior's network; its codebooks come from the VQ-VAE, its schedule from the medium.
PRIOR_KEYS = {f.name for f in fields(PriorConfig)} - {"codebook_sizes", "schedule"}


def load_recipe(path: Path | None, kind: str) -> dict:
    """{'train': Settings, 'net': network config, 'prior': PriorConfig overrides} from a file."""
    raw: dict = {}
    if path is not None:
        try:
            raw = tomllib.loads(Path(path).read_text())
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read the recipe {path}: {e}") from None
    settings_class, net_class = SETTINGS[kind], NET_CONFIGS[kind]
    unknown = set(raw) - {"train", "net", "prior"}
    unknown |= {f"train.{k}" for k in set(raw.get("train", {})) - {f.name for f in fields(settings_class)}}
    unknown |= {f"net.{k}" for k in set(raw.get("net", {})) - {f.name for f in fields(net_class)}}
    unknown |= {f"prior.{k}" for k in set(raw.get("prior", {})) - PRIOR_KEYS}
    if unknown:
        raise UsageError(f"unknown settings in {path}: {', '.join(sorted(unknown))}")
    train = with_options(settings_class(), raw.get("train", {}))
    net = config_from_dict(net_class, {**asdict(net_class()), **raw.get("net", {})})
    prior = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.get("prior", {}).items()}
    return {"train": train, "net": net, "prior": prior}


def with_options(settings: Settings, options: dict) -> Settings:
    """`settings` with those of `options` that are given (not None); lists become tuples."""
    given = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items() if v is not None}
    return replace(settings, **given)
