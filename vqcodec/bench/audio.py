"""Audio benchmark: vqcodec at each bitrate against Opus (PyAV/libopus in Ogg), same metrics.

For every file of the folder, each codec encodes the whole file and its size in bytes (headers
and container included) gives the kbps. The decoded sound is aligned to the original (a search
over +-50 ms on the mono mix, for codecs with a delay) and compared at 24 kHz per channel:
log-mel distance (``vqcodec.media.mel.mel_distance``), and for speech files (named ``speech*``)
PESQ-WB and STOI at 16 kHz on the mono mix. Real-time factors are audio seconds per second of
processing, in-process with the model loaded.
"""

from __future__ import annotations

import io
import json
import math
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soxr
import torch
from tqdm import tqdm

from vqcodec import container
from vqcodec.bench.image import environment
from vqcodec.codec import audio as audio_codec
from vqcodec.errors import BadInputError
from vqcodec.media.audio import list_audio, load_audio
from vqcodec.media.mel import mel_distance

EVAL_RATE = 24000
OPUS_KBPS = (6, 8, 12, 16, 24)
OURS_KBPS = (1.5, 3, 6, 12)
MAX_SHIFT_S = 0.05


@dataclass
class AudioCodec:
    name: str
    description: str
    rates: tuple[float, ...]
    encode: Callable[[np.ndarray, int, float], bytes]  # (samples [C, n], rate, kbps) -> file
    decode: Callable[[bytes], np.ndarray]  # file -> samples [C, n'] at the source rate
    details: Callable[[bytes], dict] | None = None  # more fields of a coded file


# --- metrics ----------------------------------------------------------------------------------
def align(reference: np.ndarray, decoded: np.ndarray, rate: int) -> np.ndarray:
    """`decoded` shifted by the lag (within +-50 ms) that best matches `reference`, cut or
    padded to its length; both [C, n]."""
    max_shift = int(MAX_SHIFT_S * rate)
    ref, dec = reference.mean(0), decoded.mean(0)
    n = min(len(ref), len(dec))
    if n > 4 * max_shift and np.abs(dec).max() > 0:
        size = 1 << int(np.ceil(np.log2(len(ref) + len(dec))))
        corr = np.fft.irfft(np.fft.rfft(dec, size) * np.conj(np.fft.rfft(ref, size)), size)
        lags = np.concatenate([corr[: max_shift + 1], corr[-max_shift:]])
        lag = int(np.argmax(lags))
        lag = lag if lag <= max_shift else lag - len(lags)
    else:
        lag = 0
    shifted = decoded[:, lag:] if lag >= 0 else np.pad(decoded, ((0, 0), (-lag, 0)))
    out = np.zeros_like(reference)
    m = min(reference.shape[1], shifted.shape[1])
    out[:, :m] = shifted[:, :m]
    return out


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    return samples if rate == target else soxr.resample(samples.T, rate, target, "HQ").T


def audio_metrics(reference: np.ndarray, decoded: np.ndarray, rate: int, speech: bool) -> dict:
    """mel distance (per channel, at 24 kHz) and, for speech, PESQ-WB and STOI (mono, 16 kHz)."""
    decoded = align(reference, decoded, rate)
    ref24, dec24 = (torch.from_numpy(np.ascontiguousarray(_resample(x, rate, EVAL_RATE))) for x in (reference, decoded))
    out = {"mel": float(mel_distance(dec24, ref24, EVAL_RATE))}
    if speech:
        from pesq import pesq
        from pystoi import stoi

        ref16 = _resample(reference.mean(0, keepdims=True), rate, 16000)[0].astype(np.float64)
        dec16 = _resample(decoded.mean(0, keepdims=True), rate, 16000)[0].astype(np.float64)
        out["pesq"] = float(pesq(16000, ref16, dec16, "wb"))
        out["stoi"] = float(stoi(ref16, dec16, 16000, extended=False))
    return out


# --- codecs -----------------------------------------------------------------------------------
def opus_codec() -> AudioCodec:
    """libopus through PyAV in an Ogg container, input resampled to 48 kHz (Opus' own rate)."""
    import av

    def encode(samples: np.ndarray, rate: int, kbps: float) -> bytes:
        channels = min(samples.shape[0], 2)
        pcm = _resample(samples[:channels], rate, 48000).astype(np.float32)
        buf = io.BytesIO()
        with av.open(buf, "w", format="ogg") as out:
            stream = out.add_stream("libopus", rate=48000, layout="mono" if channels == 1 else "stereo")
            stream.bit_rate = int(kbps * 1000)
            frame_size = 960
            for start in range(0, pcm.shape[1], frame_size):
                block = np.ascontiguousarray(pcm[:, start : start + frame_size].T.reshape(1, -1))
                frame = av.AudioFrame.from_ndarray(block, format="flt", layout=stream.layout.name)
                frame.sample_rate = 48000
                frame.pts = start
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return buf.getvalue()

    def decode(data: bytes) -> np.ndarray:
        with av.open(io.BytesIO(data)) as f:
            frames = [frame.to_ndarray() for frame in f.decode(audio=0)]
        pcm = np.concatenate(frames, 1).astype(np.float32)  # planar float: [C, n]
        return pcm

    libavcodec = ".".join(map(str, av.library_versions.get("libavcodec", ())))
    return AudioCodec(
        "Opus",
        f"libopus via PyAV {av.__version__} (libavcodec {libavcodec}), Ogg container, 48 kHz",
        OPUS_KBPS,
        encode,
        decode,
    )


def vqcodec_audio_codec(model: str, device: str, rates: tuple[float, ...] = OURS_KBPS) -> AudioCodec:
    def encode(samples: np.ndarray, rate: int, kbps: float) -> bytes:
        return audio_codec.compress_audio((samples, rate), kbps, model=model, device=device)

    def decode(data: bytes) -> np.ndarray:
        return audio_codec.decompress_audio(data, device=device)[0]

    def details(data: bytes) -> dict:
        """The prior's saving: payload bits against log2(K) bits for every coded index."""
        header, chunks = container.unpack_audio(data)
        sizes = audio_codec.load_audio_model(model, device).vqvae.cfg.codebook_sizes
        raw = sum(sum(math.log2(k) for k in sizes[:q]) for q in header.stages) * header.frames
        payload = 8 * sum(c.size for c in chunks)
        return {"stages": list(header.stages), "raw_index_bits": raw, "payload_bits": payload}

    return AudioCodec("vqcodec", f"vqcodec audio model {model}", rates, encode, decode, details)


def _opus_rate(codec: AudioCodec, rate: int) -> int:
    return 48000 if codec.name.startswith("Opus") else rate


def run_audio_codec(codec: AudioCodec, clips: dict[str, tuple[np.ndarray, int]], progress: bool) -> dict:
    """Every bitrate on every clip; per bitrate the means over speech and over music clips.
    A bar on a terminal (`progress`), else a line on stderr per bitrate."""
    per_clip: dict[str, list[dict]] = {name: [] for name in clips}
    bar = tqdm(total=len(clips) * len(codec.rates), desc=codec.name[:12], disable=not progress, leave=False)
    for kbps in codec.rates:
        started = time.perf_counter()
        for name, (samples, rate) in clips.items():
            seconds = samples.shape[1] / rate
            start = time.perf_counter()
            data = codec.encode(samples, rate, kbps)
            t_enc = time.perf_counter() - start
            start = time.perf_counter()
            decoded = codec.decode(data)
            t_dec = time.perf_counter() - start
            decoded = _resample(decoded, _opus_rate(codec, rate), rate)
            if decoded.shape[0] != samples.shape[0]:  # Opus codes at most two channels
                decoded = np.resize(decoded, (samples.shape[0], decoded.shape[1]))
            row = {"target_kbps": kbps, "bytes": len(data), "kbps": len(data) * 8 / 1000 / seconds}
            row.update(audio_metrics(samples, decoded, rate, name.startswith("speech")))
            row.update({"encode_rtf": seconds / t_enc, "decode_rtf": seconds / t_dec})
            row.update(codec.details(data) if codec.details else {})
            per_clip[name].append(row)
            bar.update()
        if not progress:
            mel = np.mean([rows[-1]["mel"] for rows in per_clip.values()])
            print(
                f"{codec.name} {kbps:g} kbps: {len(clips)} clips, mel distance {mel:.3f} "
                f"({time.perf_counter() - started:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
    bar.close()
    results = {}
    for group, members in (("speech", [n for n in per_clip if n.startswith("speech")]), ("music", None)):
        members = members if members is not None else [n for n in per_clip if not n.startswith("speech")]
        if not members:
            continue
        keys = ["kbps", "mel", "encode_rtf", "decode_rtf"] + (["pesq", "stoi"] if group == "speech" else [])
        results[group] = {
            k: [float(np.mean([per_clip[n][i][k] for n in members])) for i in range(len(codec.rates))] for k in keys
        }
        results[group]["target_kbps"] = list(codec.rates)
        results[group]["clips"] = len(members)
        if codec.details:  # over all clips of the group, weighted by their length
            results[group]["prior_saving"] = [
                1
                - sum(per_clip[n][i]["payload_bits"] for n in members)
                / sum(per_clip[n][i]["raw_index_bits"] for n in members)
                for i in range(len(codec.rates))
            ]
    return {"name": codec.name, "description": codec.description, "results": results, "per_clip": per_clip}


def plot_audio(all_results: list[dict], out_dir: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    for metric, label in (("mel", "log-mel distance (lower is better)"), ("pesq", "PESQ-WB"), ("stoi", "STOI")):
        groups = ["speech", "music"] if metric == "mel" else ["speech"]
        fig, axes = plt.subplots(1, len(groups), figsize=(6 * len(groups), 4.2), squeeze=False)
        for ax, group in zip(axes[0], groups, strict=True):
            for res in all_results:
                r = res["results"].get(group)
                if r:
                    ax.plot(r["kbps"], r[metric], "o-", label=res["name"])
            ax.set_xlabel("kbps (whole files)")
            ax.set_ylabel(label)
            ax.set_title(f"{group} clips")
            ax.grid(alpha=0.3)
            ax.legend()
        fig.tight_layout()
        path = out_dir / f"audio_{metric}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def bench_audio(
    folder: Path, out_dir: Path, model: str, device: str, rates: list[float] | None, progress: bool
) -> dict:
    """Run vqcodec and Opus on every file in `folder`; write JSON per codec, summary and plots."""
    paths = list_audio(folder)
    if not paths:
        raise BadInputError(f"no audio files under {folder}")
    clips = {p.stem: load_audio(p) for p in paths}
    out_dir.mkdir(parents=True, exist_ok=True)
    codecs = [vqcodec_audio_codec(model, device, tuple(rates) if rates else OURS_KBPS), opus_codec()]
    all_results = []
    for c in codecs:
        result = run_audio_codec(c, clips, progress)
        result["environment"] = environment()
        slug = "vqcodec" if c.name == "vqcodec" else "opus"
        (out_dir / f"{slug}.json").write_text(json.dumps(result, indent=1))
        all_results.append(result)
    summary = {
        "folder": str(folder),
        "clips": len(clips),
        "codecs": {r["name"]: r["results"] for r in all_results},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "environment": environment(),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_audio(all_results, out_dir)
    return summary


def _run_measured(args: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of a command, by GNU time."""
    import subprocess

    start = time.perf_counter()
    result = subprocess.run(["/usr/bin/time", "-v", *args], capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode:
        raise RuntimeError(f"{args} failed: {result.stderr[-2000:]}")
    rss_kb = next(int(line.split()[-1]) for line in result.stderr.splitlines() if "Maximum resident set size" in line)
    return wall, rss_kb / 1024


def bench_long(source: Path, minutes: list[float], bitrate: float, model: str, work: Path) -> list[dict]:
    """Time and peak memory of the command line on long 44.1 kHz stereo FLAC files made by
    looping `source` (one fresh process per command, so the peak is that file's)."""
    import shutil

    import soundfile

    samples, _ = load_audio(source, 44100)
    stereo = np.stack([samples[0], samples[-1]], 1) if samples.shape[0] > 1 else np.repeat(samples.T, 2, 1)
    # This environment's own script, as a pip install puts it on a user's PATH; a version
    # manager's shim found first on PATH (pyenv's) would add its own start-up, 0.2 to 1 s here.
    script = Path(sys.executable).with_name("vqcodec")
    exe = str(script) if script.exists() else shutil.which("vqcodec") or "vqcodec"
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for m in minutes:
        flac, vqc, wav = work / f"long{m:g}.flac", work / f"long{m:g}.vqc", work / f"long{m:g}.wav"
        for p in (vqc, wav):
            p.unlink(missing_ok=True)
        total = int(m * 60 * 44100)
        with soundfile.SoundFile(flac, "w", 44100, 2, "PCM_16") as f:
            for start in range(0, total, len(stereo)):
                f.write(stereo[: min(len(stereo), total - start)])
        enc_s, enc_mb = _run_measured([exe, "compress", str(flac), "-o", str(vqc), "-b", str(bitrate), "-m", model])
        dec_s, dec_mb = _run_measured([exe, "decompress", str(vqc), "-o", str(wav)])
        seconds = total / 44100
        rows.append(
            {
                "minutes": m,
                "bitrate": bitrate,
                "vqc_bytes": vqc.stat().st_size,
                "kbps": vqc.stat().st_size * 8 / 1000 / seconds,
                "encode_s": enc_s,
                "decode_s": dec_s,
                "encode_realtime_x": seconds / enc_s,
                "decode_realtime_x": seconds / dec_s,
                "encode_peak_rss_mb": enc_mb,
                "decode_peak_rss_mb": dec_mb,
                "decoded_samples_match": soundfile.info(str(wav)).frames == total,
            }
        )
        for p in (flac, vqc, wav):
            p.unlink()
    return rows
