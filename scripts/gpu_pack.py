"""Make .gpu/, what a lent GPU machine needs beside the working tree to train img2 and aud2-vocos.

    python scripts/gpu_pack.py [--media image audio]     (re)build .gpu/ (both media by default)
    python scripts/gpu_pack.py --park                    before the GPU call
    python scripts/gpu_pack.py --restore                 after it

The device machine gets the working tree and the folders a call carries, 64 MiB in all, and
nothing else: not ../shared, not the package index. The shipped models alone are 35 MB of the
working tree and training needs none of them, so `--park` moves them (with results/ and the
checkpoints of the models not trained there, GPU_TRAINED) out of git's sight into .gpu-parked/
until `--restore` puts them back; the budget below counts the working tree without them.
.gpu/ then holds, in fixed shares of what is left (SHARES):
- photos/: the training photos under their own relative paths (the trainer holds out the same
  every-20th photo), downscaled by the largest of 1, 0.9, ... 0.4 that fits, as WebP quality 90
  (training downscales crops again, by 0.5 to 1, where the photo is large enough);
- audio/speech/, audio/music/: the training audio of each group (vqcodec.train.audio), less this
  machine's held-out clips, mono 24 kHz Ogg Opus at about 48 kbps; a group that does not fit
  its share whole keeps an excerpt of each clip (the same length for all, at a random offset,
  at least 4 s) from as many clips as fit;
- wheels/: the packages training needs that the machine (Python 3.12) lacks; pesq has no wheel,
  so the device's evaluations of speech have STOI and mel distance but no PESQ.
Then: `run` with carry [".gpu"] and `bash scripts/gpu_train.sh MINUTES img2 aud2-vocos`.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import soundfile
from PIL import Image

from vqcodec.media.audio import load_audio
from vqcodec.media.image import list_images
from vqcodec.train.audio import training_audio
from vqcodec.train.trainer import held_out_split

ROOT = Path(__file__).resolve().parent.parent
PACK, PARKED = ROOT / ".gpu", ROOT / ".gpu-parked"
# The models a GPU call trains (`gpu_train.sh MINUTES img2 aud2-vocos`): aud2-vocos holds aud2's
# encoder and codebooks, so aud2's own checkpoint, like img2-16's, stays parked (9 MB each).
GPU_TRAINED = ("img2", "aud2-vocos")
LIMIT = 64 * 2**20  # what one call may carry, working tree included
MARGIN = 4 * 2**20  # room for the checkpoints and logs written before the call
WHEELS = ["pytorch-msssim==1.0.0", "constriction==0.5.0", "soundfile==0.14.0", "soxr==1.1.0", "pystoi==0.4.1"]
DEVICE_PYTHON = "--python-version 3.12 --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64".split()
AUDIO_RATE = 24000
OPUS_LEVEL = 0.84  # libsndfile's compression level for Opus: about 48 kbps mono at 24 kHz
MIN_EXCERPT = 4.0  # seconds: four of the 1-second training segments
OPUS_BYTES_PER_SECOND, OGG_FILE_BYTES = 5600, 1000  # measured on the packed speech: bytes = a * seconds + b
SHARES = {"image": 0.55, "audio": 0.45}  # of the budget: photos need 18 MiB at half their size
AUDIO_GROUP_SHARES = {"speech": 0.75, "music": 0.25}  # aud2's recipe draws speech 75 % of the time


def git(*args: str) -> list[str]:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, check=True, text=True)
    return [line for line in done.stdout.split("\0") if line]


def parkable() -> list[str]:
    """The tracked files a GPU call does not need: the shipped and retired models, the results
    and the training checkpoints of the models it does not train (all but GPU_TRAINED)."""
    kept = {f"models/training/{name}.safetensors" for name in GPU_TRAINED}
    models = [f":(glob)models/{folder}*.safetensors" for folder in ("", "retired/", "training/")]
    names = git("ls-files", "-z", "--", *models, "results")
    return [name for name in names if name not in kept]


def tree_bytes() -> int:
    """What travels with a call once the parkable files are parked."""
    names = set(git("ls-files", "-z", "--cached", "--others", "--exclude-standard")) - set(parkable())
    return sum((ROOT / n).stat().st_size for n in names if (ROOT / n).is_file())


def park() -> None:
    """Untrack the parkable files and move them to .gpu-parked/ (ignored: they do not travel)."""
    names = parkable()
    if git("diff", "-z", "--name-only", "HEAD", "--", *names):
        raise SystemExit("commit or restore the changed models first: --park takes committed files only")
    for name in names:
        (PARKED / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(ROOT / name, PARKED / name)
    git("rm", "-q", "--cached", "--", *names)
    print(f"parked {len(names)} files in {PARKED.name}/: run `python scripts/gpu_pack.py --restore` after the call")


def restore() -> None:
    """Put the parked files back, tracked as before."""
    names = [str(p.relative_to(PARKED)) for p in PARKED.rglob("*") if p.is_file()]
    for name in names:
        shutil.move(PARKED / name, ROOT / name)
    if names:
        git("reset", "-q", "HEAD", "--", *names)
    shutil.rmtree(PARKED, ignore_errors=True)
    print(f"restored {len(names)} files")


def encoded_photo(path: Path, scale: float) -> bytes:
    with Image.open(path) as im:
        im = im.convert("RGB")
        if scale < 1:
            im = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        im.save(buf, "WEBP", quality=90)
        return buf.getvalue()


def pack_photos(data: Path, budget: float) -> str:
    """The photos at the largest scale whose estimate (from every 10th photo) fits `budget`."""
    paths = list_images(data)
    sample = paths[::10]
    for scale in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4):
        if sum(len(encoded_photo(p, scale)) for p in sample) * len(paths) / len(sample) < 0.95 * budget:
            break
    else:
        raise SystemExit(f"the photos do not fit in {budget / 2**20:.1f} MiB even at 0.4 of their size")
    for path in paths:
        target = PACK / "photos" / path.relative_to(data).with_suffix(".webp")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(encoded_photo(path, scale))
    return f"{len(paths)} photos at scale {scale}"


def pack_audio(data: Path, cache: Path, budget: float) -> str:
    """Each group's training clips (held-out ones left out) as Opus, cut to fit its share: an
    excerpt of at most the same length of each (never under MIN_EXCERPT seconds, so that the
    long clips keep whole training segments), from clips in a random order until it is full."""
    train, _ = held_out_split(training_audio(data, cache))
    rng, notes = random.Random(0), []
    for group, paths in train.items():
        infos = {path: info for path in paths if (info := readable_info(path)) and info.duration}
        durations = {path: info.duration for path, info in infos.items()}
        share = budget * AUDIO_GROUP_SHARES[group]
        seconds = (share - OGG_FILE_BYTES * len(durations)) / OPUS_BYTES_PER_SECOND
        longest = max(excerpt_length(list(durations.values()), seconds), MIN_EXCERPT)
        order, kept, spent = rng.sample(list(durations), len(durations)), [], 0.0
        for path in order:
            cost = OGG_FILE_BYTES + min(durations[path], longest) * OPUS_BYTES_PER_SECOND
            if spent + cost <= share:
                kept.append(path)
                spent += cost
        for i, path in enumerate(sorted(kept)):
            target = PACK / "audio" / group / f"{i:05d}.ogg"
            target.parent.mkdir(parents=True, exist_ok=True)
            piece = np.clip(excerpt(path, infos[path], longest, rng), -1, 1)
            soundfile.write(target, piece, AUDIO_RATE, format="OGG", subtype="OPUS", compression_level=OPUS_LEVEL)
        minutes = sum(min(durations[p], longest) for p in kept) / 60
        total = sum(durations.values()) / 60
        notes.append(f"{group}: {len(kept)} of {len(durations)} clips, {minutes:.0f} of {total:.0f} min")
    return ", ".join(notes)


def excerpt(path: Path, info, seconds: float, rng: random.Random) -> np.ndarray:
    """`seconds` of `path` from a random offset (all of it if shorter), mono at AUDIO_RATE: only
    that part is decoded, so an excerpt of a long piece costs little."""
    frames = int(seconds * info.samplerate)
    start = rng.randint(0, max(0, info.frames - frames))
    return load_audio(path, AUDIO_RATE, start, frames)[0].mean(0)


def readable_info(path: Path):
    """soundfile's info of `path`; None for a file that does not read (training skips those too)."""
    try:
        return soundfile.info(path)
    except Exception:  # noqa: BLE001 - a damaged training file is left out, as in training
        return None


def excerpt_length(durations: list[float], total: float) -> float:
    """The longest excerpt (seconds) such that every clip cut to it sums to at most `total`."""
    low, high = 0.0, max(durations)
    if sum(durations) <= total:
        return high
    for _ in range(40):
        mid = (low + high) / 2
        low, high = (mid, high) if sum(min(d, mid) for d in durations) <= total else (low, mid)
    return low


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", nargs="+", choices=sorted(SHARES), default=sorted(SHARES), help="what to rebuild")
    parser.add_argument("--images", type=Path, default=Path("../shared/data/images/train"))
    parser.add_argument("--audio", type=Path, default=Path("../shared/data/audio/train"))
    parser.add_argument("--audio-cache", type=Path, default=Path.home() / ".cache/vqcodec/audio-src")
    parser.add_argument("--park", action="store_true", help="move the shipped models out of the call's way")
    parser.add_argument("--restore", action="store_true", help="put them back")
    args = parser.parse_args()
    if args.park or args.restore:
        return park() if args.park else restore()
    budget = LIMIT - MARGIN - tree_bytes()
    shutil.rmtree(PACK / "wheels", ignore_errors=True)
    pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q", *DEVICE_PYTHON]
    subprocess.run([*pip, "-d", str(PACK / "wheels"), *WHEELS], check=True)
    left = budget - sum(p.stat().st_size for p in (PACK / "wheels").iterdir())
    notes = []
    if "image" in args.media:
        shutil.rmtree(PACK / "photos", ignore_errors=True)
        notes.append(pack_photos(args.images, left * SHARES["image"]))
    if "audio" in args.media:
        shutil.rmtree(PACK / "audio", ignore_errors=True)
        notes.append(pack_audio(args.audio, args.audio_cache, left * SHARES["audio"]))
    size = sum(p.stat().st_size for p in PACK.rglob("*") if p.is_file())
    print(f"{PACK}: {'; '.join(notes)}; {size / 2**20:.1f} MiB (budget {budget / 2**20:.1f} MiB)")
    if size > budget:
        raise SystemExit("the pack is over its budget")


if __name__ == "__main__":
    main()
