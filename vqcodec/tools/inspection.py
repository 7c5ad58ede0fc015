"""`vqcodec inspect`: where the bits of a .vqc file go, from the prior's probabilities of the
indices it codes (the same numbers the range coder used), drawn over the decoded media."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from vqcodec import container
from vqcodec.codec import audio as audio_codec
from vqcodec.codec import codec_for
from vqcodec.codec import image as image_codec


@dataclass
class Inspection:
    kind: str
    bits: list[np.ndarray]  # per stream: [q, h, w] information of each index, in bits
    payload_bits: int  # what the range coder wrote (chunk payloads, without header and checks)
    file_bits: int
    stage0: np.ndarray  # first-stage index grid of the first stream
    codebook_sizes: tuple[int, ...]
    media: np.ndarray  # decoded pixels [H, W, 3] or samples [channels, n]
    rate: float = 0.0  # audio: index frames per second
    meta: dict = field(default_factory=dict)
    draw: Callable | None = None  # draws the media and where its bits go on the report's two top axes

    def summary(self) -> dict:
        stages = max(b.shape[0] for b in self.bits)
        per_stage = [float(sum(b[s].sum() for b in self.bits if s < b.shape[0])) for s in range(stages)]
        usage = []
        for s in range(stages):
            used = set()
            for idx in self.meta["indices"]:
                if s < idx.shape[0]:
                    used |= set(np.unique(idx[s]).tolist())
            usage.append(len(used) / self.codebook_sizes[s])
        return {
            "kind": self.kind,
            "file_bits": self.file_bits,
            "payload_bits": self.payload_bits,
            "information_bits": float(sum(per_stage)),
            "bits_per_stage": [round(b, 1) for b in per_stage],
            "bits_per_index_per_stage": [
                round(per_stage[s] / sum(b[s].size for b in self.bits if s < b.shape[0]), 3) for s in range(stages)
            ],
            "codebook_usage_per_stage": [round(u, 4) for u in usage],
        }


def inspect_image(data: bytes, device: str = "auto") -> Inspection:
    header, model, indices, bits = image_codec.decode_indices_and_bits(data, device)
    _, chunks = container.unpack(data)
    pixels = image_codec.decode_pixels(model, indices, header.height, header.width)
    return Inspection(
        "image",
        [bits],
        8 * sum(c.size for c in chunks),
        8 * len(data),
        indices[0].numpy(),
        model.vqvae.cfg.codebook_sizes,
        pixels,
        meta={"indices": [indices.numpy()], "factor": model.vqvae.cfg.factor},
        draw=_draw_image,
    )


def inspect_audio(data: bytes, device: str = "auto") -> Inspection:
    header, chunks, model = audio_codec.open_audio_file(data, device)
    segments, segment_bits = [], []
    samples, _ = audio_codec.decompress_audio(
        data, device, listener=lambda grids, bits: (segments.append(grids), segment_bits.append(bits))
    )

    def joined(parts: list[list], stream: int, dtype) -> np.ndarray:
        if not parts:
            return np.zeros((0, 1, 0), dtype)
        return np.concatenate([np.asarray(seg[stream]) for seg in parts], -1).astype(dtype)

    streams = [joined(segments, s, np.int64) for s in range(header.channels)]
    bits = [joined(segment_bits, s, np.float64) for s in range(header.channels)]
    return Inspection(
        "audio",
        bits,
        8 * sum(c.size for c in chunks),
        8 * len(data),
        streams[0][:1, 0] if streams[0].shape[0] else np.zeros((1, 0), int),
        model.vqvae.cfg.codebook_sizes,
        samples,
        rate=model.vqvae.cfg.frame_rate,
        meta={"indices": streams, "sample_rate": header.sample_rate},
        draw=_draw_audio,
    )


def inspect_file(data: bytes, device: str = "auto") -> Inspection:
    return codec_for(data).inspect(data, device)


def plot_report(result: Inspection, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    summary = result.summary()
    fig, axes = plt.subplots(2, 2, figsize=(12, 8))
    result.draw(result, fig, axes[0])
    stages = np.arange(1, len(summary["bits_per_stage"]) + 1)
    axes[1, 0].bar(stages, np.array(summary["bits_per_stage"]) / 8000)
    axes[1, 0].set_xlabel("stage")
    axes[1, 0].set_ylabel("kB")
    axes[1, 0].set_title(f"bits per stage (payload {summary['payload_bits'] / 8000:.2f} kB)")
    axes[1, 1].bar(stages, np.array(summary["codebook_usage_per_stage"]) * 100)
    axes[1, 1].set_xlabel("stage")
    axes[1, 1].set_ylabel("% of codes used")
    axes[1, 1].set_title("codebook usage in this file")
    for ax in axes[1]:  # stages are whole numbers
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100, format="png")
    plt.close(fig)


def _draw_image(result: Inspection, fig, axes) -> None:
    h, w = result.media.shape[:2]
    factor = result.meta["factor"]
    per_position = result.bits[0].sum(0) / factor**2  # bits per pixel of each block of factor x factor
    heat = np.kron(per_position, np.ones((factor, factor)))[:h, :w]
    axes[0].imshow(result.media)
    shown = axes[0].imshow(heat, cmap="inferno", alpha=0.6)
    fig.colorbar(shown, ax=axes[0], label="bits per pixel")
    axes[0].set_title("bits spent per region over the decoded image")
    axes[1].imshow(result.stage0, cmap="nipy_spectral", interpolation="nearest")
    axes[1].set_title("indices of stage 1 (false colour)")
    for ax in axes:
        ax.axis("off")


def _draw_audio(result: Inspection, fig, axes) -> None:
    rate, sample_rate = result.rate, result.meta["sample_rate"]
    mono = result.media.mean(0) if result.media.size else np.zeros(1)
    t = np.arange(len(mono)) / sample_rate
    axes[0].plot(t, mono, lw=0.3)
    axes[0].set_xlabel("seconds")
    axes[0].set_title("decoded waveform (mono mix)")
    per_frame = sum(b.sum((0, 1)) for b in result.bits)
    window = max(1, int(rate / 10))  # 0.1 s
    smooth = np.convolve(per_frame, np.ones(window) / window, mode="same") * rate / 1000
    axes[1].plot(np.arange(len(per_frame)) / rate, smooth)
    axes[1].set_xlabel("seconds")
    axes[1].set_ylabel("kbps")
    axes[1].set_title("bits per second over time (0.1 s windows)")
