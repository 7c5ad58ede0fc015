"""What is known of the models and rates before torch is imported.

The command line answers `--help`, `info` and every usage error from here, in well under a
second: the shipped models are found by name, a model's metadata is read from the safetensors
header alone, and a bitrate is turned into stage counts with plain arithmetic.
`registry` loads the networks themselves.
"""

from __future__ import annotations

import math
import os
from functools import lru_cache
from pathlib import Path

from vqcodec.errors import MissingModelError, UsageError

DEFAULT_IMAGE_MODEL = "img2"  # a family: img2-16 codes its lowest levels (img1 files still decode)
DEFAULT_AUDIO_MODEL = "aud2"
DEFAULT_QUALITY = 4  # image: the level of a model that names no default level of its own
DEFAULT_BITRATE = 6.0  # sound: kbps before the prior's saving
AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".opus", ".mp3", ".aiff", ".aif"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"}  # found in folders


def models_dir() -> Path:
    """$VQCODEC_MODELS, else the `models/` folder of the source tree, else (a plain install
    from a wheel) the copy of it installed inside the package, `vqcodec/zoo`."""
    env = os.environ.get("VQCODEC_MODELS")
    if env:
        return Path(env)
    source_tree = Path(__file__).resolve().parent.parent / "models"
    return source_tree if source_tree.is_dir() else Path(__file__).resolve().parent / "zoo"


def resolve(name_or_path: str | os.PathLike) -> Path:
    """The model file of a shipped model's name, or a .safetensors path."""
    path = Path(name_or_path)
    if path.suffix == ".safetensors":
        if not path.is_file():
            raise MissingModelError(f"model file {path}: no such file")
        return path
    candidate = models_dir() / f"{name_or_path}.safetensors"
    if not candidate.exists():
        available = ", ".join(sorted(p.stem for p in models_dir().glob("*.safetensors"))) or "none"
        raise MissingModelError(f"model '{name_or_path}' is not installed (installed: {available})")
    return candidate


@lru_cache(maxsize=16)
def _meta(path: str) -> dict:
    import json

    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            meta = json.loads((f.metadata() or {}).get("vqcodec", "{}"))
    except (OSError, SafetensorError, ValueError) as e:
        raise MissingModelError(f"model file {path} is not a vqcodec model ({e})") from None
    if not {"name", "kind", "net", "prior"} <= set(meta) or meta["kind"] not in ("image", "audio"):
        raise MissingModelError(f"model file {path} is not a vqcodec model (no vqcodec metadata)")
    return meta


def forget_metadata() -> None:
    """Forget the metadata read so far: a model file was rewritten (`registry.set_levels`)."""
    _meta.cache_clear()


def model_meta(name_or_path: str | os.PathLike, kind: str | None = None) -> dict:
    """A model's metadata (name, kind, net, prior, training figures) without loading it; with
    `kind`, refuse a model for the other medium."""
    meta = _meta(str(resolve(name_or_path)))
    if kind and meta["kind"] != kind:
        raise MissingModelError(f"model '{meta['name']}' is an {meta['kind']} model, not an {kind} model")
    return meta


def num_stages(meta: dict) -> int:
    return len(meta["net"]["codebook_sizes"])


def quality_levels(meta: dict) -> list[tuple[str, int]]:
    """(model name, stages) of each image quality level, -q 1 first. A family's first model
    lists them in its metadata ("levels"): its own stages and those of the models beside it (a
    coarser grid for the lowest rates), in order of rate. Any other model's levels are its
    stages 1..N."""
    if "levels" not in meta:
        return [(meta["name"], stages) for stages in range(1, num_stages(meta) + 1)]
    levels = [(str(name), int(stages)) for name, stages in meta["levels"]]
    for name in dict.fromkeys(name for name, _ in levels):  # each model's levels: consecutive stages
        stages = [s for n, s in levels if n == name]
        if stages != list(range(stages[0], stages[0] + len(stages))) or stages[0] < 1:
            raise MissingModelError(f"model '{meta['name']}' lists levels of '{name}' that are not consecutive stages")
    return levels


def default_quality(meta: dict) -> int:
    """The level an image is coded at when none is asked for: the one a family names
    ("default_level", chosen with its levels by `scripts/family_levels.py`), else
    DEFAULT_QUALITY (at most the model's number of levels)."""
    return int(meta.get("default_level", min(DEFAULT_QUALITY, len(quality_levels(meta)))))


def check_quality(meta: dict, quality: int) -> None:
    levels = len(quality_levels(meta))
    if not 1 <= quality <= levels:
        raise UsageError(f"quality must be 1..{levels} for model {meta['name']}, not {quality}")


def level_model(model: str | os.PathLike, quality: int) -> tuple[str | os.PathLike, int]:
    """(the model that codes quality level `quality` of `model`, its stages). A family's other
    models are found beside a model given by path, else by name."""
    meta = model_meta(model)
    check_quality(meta, quality)
    name, stages = quality_levels(meta)[quality - 1]
    return member_model(model, name), stages


def member_model(model: str | os.PathLike, name: str) -> str | os.PathLike:
    """The model called `name` of `model`'s family: `model` itself, the file of that name beside
    a model given by path, or the installed model of that name."""
    if name == model_meta(model)["name"]:
        return model
    path = Path(model)
    beside = path.with_name(f"{name}.safetensors")
    return beside if path.suffix == ".safetensors" and beside.is_file() else name


def kbps_per_stage(net: dict) -> float:
    """Bitrate of one residual stage of an audio model (its frame rate times log2 K)."""
    frame_rate = net["sample_rate"] / math.prod(net["strides"])
    return frame_rate * math.log2(net["codebook_sizes"][0]) / 1000


def stages_for_bitrate(bitrate: float, channels: int, levels: int, stage_kbps: float) -> tuple[tuple[int, ...], bool]:
    """(stages per stream, mid/side?) for a total bitrate in kbps before the prior's saving.

    Stereo is coded as mid and side, the side getting a quarter of the stages (it is usually
    much quieter) and whatever the mid cannot take; other channel counts share the stages
    equally, at least one each. A bitrate that needs more stages than the streams have is an
    error naming the highest one.
    """
    if not bitrate > 0:
        raise UsageError(f"bitrate must be positive, not {bitrate}")
    total = max(1, round(bitrate / stage_kbps))
    streams = max(channels, 1)
    if total > streams * levels:
        raise UsageError(
            f"-b {bitrate:g}: the most this model codes for {channels} channel{'s' * (channels != 1)} is "
            f"{streams * levels * stage_kbps:g} kbps ({levels} stages of {stage_kbps:g} kbps per channel)"
        )
    if channels == 2:
        side = total // 4
        mid = min(total - side, levels)
        return (mid, total - mid), True
    return (max(1, total // streams),) * channels, False
