"""What the scalable layout of format version 2 costs, and what a truncated file is worth.

For every Kodak image at every level, and every audio test clip at 1.5 / 3 / 6 / 12 kbps: the
bytes of the version 2 file against those of version 1 for the same indices (one range coder
stream per chunk, its layout rebuilt here from docs/FORMAT.md), and, at the levels where the
encoder's code search differs from a prefix (below SEARCHED_STAGES), the size and quality of
the file truncated from the top level against a direct encode.

    python scripts/scalable_cost.py [--images N] [--clips N] > cost.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import constriction
import numpy as np

from vqcodec import container
from vqcodec.bench.audio import audio_metrics
from vqcodec.bench.image import psnr_rgb
from vqcodec.codec import audio as audio_codec
from vqcodec.codec import image as image_codec
from vqcodec.entropy import _FAMILY, _known_grid_pmfs
from vqcodec.media.audio import list_audio, load_audio
from vqcodec.media.image import list_images, load_image
from vqcodec.quantizer import SEARCHED_STAGES
from vqcodec.registry import DEFAULT_AUDIO_MODEL, DEFAULT_IMAGE_MODEL, load_audio_model, load_image_model

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def joint_payload(indices, prior) -> bytes:
    """Version 1's payload: all stages of a chunk in one range coder stream."""
    encoder = constriction.stream.queue.RangeEncoder()
    for stage, at, probs in _known_grid_pmfs(indices, prior):
        encoder.encode(indices[stage][at].numpy().astype(np.int32), _FAMILY, probs)
    return encoder.get_compressed().astype("<u4").tobytes()


def varint_size(n: int) -> int:
    return len(container._varint(n))


def v1_image_bytes(header: container.Header, payloads: list[bytes]) -> int:
    """magic+version 4, kind/flags/name length 3, name, hash 4, sizes, quality 1, lengths,
    payloads, indices CRC 4, file CRC 4."""
    sizes = varint_size(header.width) + varint_size(header.height)
    lengths = sum(varint_size(len(p)) for p in payloads)
    return 4 + 3 + len(header.model_name) + 4 + sizes + 1 + lengths + sum(map(len, payloads)) + 8


def v1_audio_bytes(header: container.AudioHeader, payloads: list[bytes]) -> int:
    """... hash 4, rate, channels 1, length, frames, a stage count per stream, lengths, header
    CRC 4, then each payload with its two CRCs."""
    sizes = varint_size(header.sample_rate) + 1 + varint_size(header.length) + varint_size(header.frames)
    lengths = sum(varint_size(len(p)) for p in payloads)
    fixed = 4 + 3 + len(header.model_name) + 4 + sizes + header.channels + lengths + 4
    return fixed + sum(len(p) + 8 for p in payloads)


def truncation_table(head: str, truncated: dict, label, quality) -> list[str]:
    """Markdown rows of the mean (direct bytes, truncated bytes, direct quality, truncated
    quality) of each level."""
    lines = [head, "|---|---|---|"]
    for key, rows in truncated.items():
        d_bytes, t_bytes, d_quality, t_quality = np.mean(rows, 0)
        direct, short = f"{d_bytes:,.0f} B, {quality(d_quality)}", f"{t_bytes:,.0f} B, {quality(t_quality)}"
        lines.append(f"| {label(key)} | {direct} | {short} |")
    return lines


def image_rows(paths: list[Path]) -> tuple[list[str], list[str]]:
    model = load_image_model(DEFAULT_IMAGE_MODEL, "cpu")
    levels = model.num_stages
    v1 = np.zeros((len(paths), levels))
    v2 = np.zeros((len(paths), levels))
    truncated = {q: [] for q in range(1, SEARCHED_STAGES)}
    for i, path in enumerate(paths):
        rgb = load_image(path)
        latents = image_codec.encode_latents(model, rgb.pixels)
        grids = image_codec.search_codes(model, latents, levels)
        top = image_codec._pack(model, rgb, levels, grids)
        for q in range(1, levels + 1):
            v2[i, q - 1] = len(container.truncate(top, q))
            header = image_codec._header(model, rgb, q)
            v1[i, q - 1] = v1_image_bytes(header, [joint_payload(g[:q], model.prior) for g in grids])
        for q in truncated:
            direct = image_codec._pack(model, rgb, q, image_codec.search_codes(model, latents, q))
            short = container.truncate(top, q)
            quality = [psnr_rgb(rgb.pixels, np.asarray(image_codec.decompress(d, "cpu"))) for d in (direct, short)]
            truncated[q].append((len(direct), len(short), *quality))
    pixels = sum(np.prod(load_image(p).pixels.shape[:2]) for p in paths)
    cost = ["| level | bpp, version 1 | bpp, version 2 | bytes more per image | more |", "|---|---|---|---|---|"]
    for q in range(levels):
        a, b = v1[:, q].sum(), v2[:, q].sum()
        cost.append(
            f"| q{q + 1} | {8 * a / pixels:.4f} | {8 * b / pixels:.4f} | {(b - a) / len(paths):.1f} | "
            f"{100 * (b / a - 1):+.2f} % |"
        )
    head = "| level | direct: bytes, PSNR | truncated from q12: bytes, PSNR |"
    return cost, truncation_table(head, truncated, lambda q: f"q{q}", lambda v: f"{v:.2f} dB")


def audio_rows(paths: list[Path]) -> tuple[list[str], list[str]]:
    model = load_audio_model(DEFAULT_AUDIO_MODEL, "cpu")
    rates = (1.5, 3.0, 6.0, 12.0)
    totals = {r: [0, 0, 0.0] for r in rates}  # v1 bytes, v2 bytes, seconds
    truncated = {r: [] for r in rates if audio_codec.stages_for_bitrate(model, r, 1)[0][0] < SEARCHED_STAGES}
    for path in paths:
        samples, rate = load_audio(path)
        top_header, top_chunks, grids = audio_codec.encode_audio((samples, rate), rates[-1], DEFAULT_AUDIO_MODEL, "cpu")
        top = container.pack_audio(top_header, top_chunks)
        for r in rates:
            stages = audio_codec.stages_for_bitrate(model, r, top_header.channels)[0]
            short = container.truncate(top, stages)
            header = container.unpack_audio(short)[0]
            payloads = [
                joint_payload(g[:q], model.prior) if q else b""
                for seg in grids
                for g, q in zip(seg, stages, strict=True)
            ]
            totals[r][0] += v1_audio_bytes(header, payloads)
            totals[r][1] += len(short)
            totals[r][2] += header.length / header.sample_rate
            if r in truncated:
                direct = audio_codec.compress_audio((samples, rate), r, DEFAULT_AUDIO_MODEL, "cpu")
                speech = path.name.startswith("speech")
                scores = [
                    audio_metrics(samples, audio_codec.decompress_audio(d, "cpu")[0], rate, speech)
                    for d in (direct, short)
                ]
                truncated[r].append((len(direct), len(short), scores[0]["mel"], scores[1]["mel"]))
    cost = ["| rate | kbps, version 1 | kbps, version 2 | more |", "|---|---|---|---|"]
    for r, (a, b, seconds) in totals.items():
        cost.append(
            f"| {r:g} kbps | {8 * a / 1000 / seconds:.3f} | {8 * b / 1000 / seconds:.3f} | {100 * (b / a - 1):+.2f} % |"
        )
    head = "| rate | direct: bytes, mel distance | truncated from 12 kbps: bytes, mel distance |"
    return cost, truncation_table(head, truncated, lambda r: f"{r:g} kbps", lambda v: f"{v:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=24, help="Kodak images (the first N)")
    parser.add_argument("--clips", type=int, default=100, help="audio test clips (the first N)")
    args = parser.parse_args()
    images = list_images(DATA / "images" / "kodak")[: args.images]
    clips = list_audio(DATA / "audio" / "test")[: args.clips]
    for title, (cost, trunc) in [
        (f"Kodak, {len(images)} images, {DEFAULT_IMAGE_MODEL}", image_rows(images)),
        (f"audio test clips, {len(clips)}, {DEFAULT_AUDIO_MODEL}", audio_rows(clips)),
    ]:
        print(f"### {title}\n\nThe scalable layout's cost (same indices):\n")
        print("\n".join(cost))
        print("\nTruncated against direct encodes (averages per file):\n")
        print("\n".join(trunc) + "\n")


if __name__ == "__main__":
    main()
