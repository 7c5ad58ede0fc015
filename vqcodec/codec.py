"""Image compress / decompress: the whole pipeline, in bounded memory.

compress:   pixels -> encoder (per tile) -> residual VQ -> indices -> prior + range coder
            (per chunk) -> container
decompress: container -> range decoder + prior (per chunk) -> indices -> codebooks ->
            decoder (per tile) -> pixels

Tiles of TILE pixels are processed with a margin of HALO pixels of surrounding image on each
side, and only their interior is kept, so tiling leaves no seams and memory does not grow with
the image. A tile is also a chunk of the file: its indices are range coded independently.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from . import container
from .container import CHUNK_LATENTS, DEFAULT_MAX_PIXELS, Header
from .entropy import decode_grid, encode_grid
from .errors import CorruptFileError, MissingModelError, UsageError
from .media import ImageLike, load_image, to_pil
from .quantizer import SEARCH_BEAM
from .registry import DEFAULT_IMAGE_MODEL, CodecModel, load_image_model

FACTOR = 8
TILE = CHUNK_LATENTS * FACTOR
HALO = 64  # pixels of context around a tile; more than the networks' receptive field
DEFAULT_QUALITY = 4


def pick_device(device: str = "auto") -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA GPU is available")
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}' (use auto, cpu or cuda)")
    return device


def _regions(size: int, tile: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """(start, stop) of each tile's interior and of its region with halo, along one axis."""
    for start in range(0, size, tile):
        stop = min(start + tile, size)
        yield start, stop, max(0, start - halo), min(size, stop + halo)


def _tiles(h: int, w: int, tile: int, halo: int):
    for top in _regions(h, tile, halo):
        for left in _regions(w, tile, halo):
            yield top, left


def indices_crc(chunks: list[torch.Tensor]) -> int:
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk.to(torch.int16).numpy().astype("<i2").tobytes(), crc)
    return crc


@torch.inference_mode()
def encode_indices(model: CodecModel, pixels: np.ndarray, quality: int) -> list[torch.Tensor]:
    """Pixels [H, W, 3] uint8 -> one [quality, h, w] index grid per chunk (row-major)."""
    h_px, w_px = pixels.shape[:2]
    hp, wp = -(-h_px // FACTOR) * FACTOR, -(-w_px // FACTOR) * FACTOR
    # Edge padding to a multiple of 8; the padded border is cropped away after decoding.
    padded = np.pad(pixels, ((0, hp - h_px), (0, wp - w_px), (0, 0)), mode="edge")
    chunks = []
    for (y0, y1, ry0, ry1), (x0, x1, rx0, rx1) in _tiles(hp, wp, TILE, HALO):
        region = torch.from_numpy(padded[ry0:ry1, rx0:rx1]).to(model.device)
        region = region.permute(2, 0, 1)[None].float() / 255.0 - 0.5
        latents = model.vqvae.encoder(region)
        latents = latents[
            :, :, (y0 - ry0) // FACTOR : (y1 - ry0) // FACTOR, (x0 - rx0) // FACTOR : (x1 - rx0) // FACTOR
        ]
        chunks.append(model.vqvae.quantizer.encode(latents, quality, SEARCH_BEAM)[0].cpu())
    return chunks


@torch.inference_mode()
def decode_pixels(model: CodecModel, indices: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Indices [q, h, w] -> pixels [height, width, 3] uint8, decoded tile by tile."""
    _, h, w = indices.shape
    out = np.empty((h * FACTOR, w * FACTOR, 3), dtype=np.uint8)
    tile, halo = TILE // FACTOR, HALO // FACTOR
    for (y0, y1, ry0, ry1), (x0, x1, rx0, rx1) in _tiles(h, w, tile, halo):
        latents = model.vqvae.quantizer.decode(indices[None, :, ry0:ry1, rx0:rx1].to(model.device))
        rgb = model.vqvae.decoder(latents)[0] + 0.5
        rgb = rgb[:, (y0 - ry0) * FACTOR : (y1 - ry0) * FACTOR, (x0 - rx0) * FACTOR : (x1 - rx0) * FACTOR]
        rgb = (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        out[y0 * FACTOR : y1 * FACTOR, x0 * FACTOR : x1 * FACTOR] = rgb
    return out[:height, :width]


def _check_quality(model: CodecModel, quality: int) -> None:
    if not 1 <= quality <= model.num_stages:
        raise UsageError(f"quality must be 1..{model.num_stages} for model {model.name}, not {quality}")


def compress(
    image: ImageLike, quality: int = DEFAULT_QUALITY, model: str = DEFAULT_IMAGE_MODEL, device: str = "auto"
) -> bytes:
    """Compress an image (path, PIL image or HxWx3 uint8 array) into the bytes of a .vqc file.

    `quality` is the number of residual quantizer stages used: 1 (smallest) .. the model's
    number of stages (best).
    """
    rgb = load_image(image)
    codec_model = load_image_model(model, pick_device(device))
    _check_quality(codec_model, quality)
    h, w = rgb.pixels.shape[:2]
    header = Header(
        kind=container.KIND_IMAGE,
        flags=(container.FLAG_GRAY if rgb.gray else 0) | (container.FLAG_ALPHA_DROPPED if rgb.alpha_dropped else 0),
        model_name=codec_model.name,
        model_hash=codec_model.hash,
        width=w,
        height=h,
        quality=quality,
    )
    chunks = encode_indices(codec_model, rgb.pixels, quality)
    payloads = [encode_grid(chunk, codec_model.prior) for chunk in chunks]
    return container.pack(header, payloads, indices_crc(chunks))


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    return container.unpack(data, max_pixels)[0]


def decode_indices(data: bytes, device: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS):
    """Parse a .vqc file and range-decode its indices: (header, model, [q, h, w] indices)."""
    header, payloads, crc = container.unpack(data, max_pixels)
    model = load_image_model(header.model_name, pick_device(device))
    if model.hash != header.model_hash:
        raise MissingModelError(
            f"file was made with a different version of model '{header.model_name}' "
            f"(weights {header.model_hash.hex()}, installed {model.hash.hex()})"
        )
    if not 1 <= header.quality <= model.num_stages:
        raise CorruptFileError(f"quality {header.quality} is outside 1..{model.num_stages}")
    chunks = [
        decode_grid(payload, model.prior, header.quality, ch, cw)
        for payload, (_, _, ch, cw) in zip(payloads, header.chunk_grid(), strict=True)
    ]
    if indices_crc(chunks) != crc:
        raise CorruptFileError("decoded indices fail their CRC: file damaged or decoded with a different prior")
    h, w = header.latent_shape
    indices = torch.zeros(header.quality, h, w, dtype=torch.int64)
    for chunk, (top, left, ch, cw) in zip(chunks, header.chunk_grid(), strict=True):
        indices[:, top : top + ch, left : left + cw] = chunk
    return header, model, indices


def decompress(data: bytes, device: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode the bytes of a .vqc file into a PIL image (RGB, or L for grayscale sources)."""
    header, model, indices = decode_indices(data, device, max_pixels)
    pixels = decode_pixels(model, indices, header.height, header.width)
    return to_pil(pixels, bool(header.flags & container.FLAG_GRAY))
