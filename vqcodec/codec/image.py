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

import dataclasses
import functools
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image

from vqcodec import catalog, container
from vqcodec.container import CHUNK_PIXELS, DEFAULT_MAX_PIXELS, Header
from vqcodec.entropy import decode_chunk, encode_chunk, indices_crc, stage_bits
from vqcodec.errors import CorruptFileError, UsageError
from vqcodec.media.image import ImageLike, RGBImage, load_image, to_pil
from vqcodec.quantizer import SEARCH_BEAM, SEARCHED_STAGES
from vqcodec.registry import DEFAULT_IMAGE_MODEL, CodecModel, load_image_model, model_for_file

TILE = CHUNK_PIXELS
HALO_LATENTS = 8  # latent positions of context around a tile; more than the networks' receptive field


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


def encode_indices(model: CodecModel, pixels: np.ndarray, quality: int) -> list[torch.Tensor]:
    """Pixels [H, W, 3] uint8 -> one [quality, h, w] index grid per chunk (row-major)."""
    return search_codes(model, encode_latents(model, pixels), quality)


@torch.inference_mode()
def search_codes(model: CodecModel, latents: list[torch.Tensor], quality: int) -> list[torch.Tensor]:
    """The code search of each chunk's latents: one [quality, h, w] index grid per chunk."""
    return [model.vqvae.quantizer.encode(chunk, quality, SEARCH_BEAM)[0].cpu() for chunk in latents]


@torch.inference_mode()
def encode_latents(model: CodecModel, pixels: np.ndarray) -> list[torch.Tensor]:
    """Pixels [H, W, 3] uint8 -> the encoder's latents [1, D, h, w] of each chunk (row-major)."""
    h_px, w_px = pixels.shape[:2]
    f = model.vqvae.cfg.factor
    hp, wp = -(-h_px // f) * f, -(-w_px // f) * f
    # Edge padding to a multiple of the factor; the padded border is cropped away after decoding.
    padded = np.pad(pixels, ((0, hp - h_px), (0, wp - w_px), (0, 0)), mode="edge")
    chunks = []
    for (y0, y1, ry0, ry1), (x0, x1, rx0, rx1) in _tiles(hp, wp, TILE, HALO_LATENTS * f):
        region = torch.from_numpy(padded[ry0:ry1, rx0:rx1]).to(model.device)
        region = region.permute(2, 0, 1)[None].float() / 255.0 - 0.5
        latents = model.vqvae.encoder(region)
        chunks.append(latents[:, :, (y0 - ry0) // f : (y1 - ry0) // f, (x0 - rx0) // f : (x1 - rx0) // f])
    return chunks


def to_pixels(rgb: torch.Tensor) -> np.ndarray:
    """A decoder's RGB [3, H, W] in [0, 1] (not clamped) -> pixels [H, W, 3] uint8, rounded."""
    return (rgb.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@torch.inference_mode()
def decode_pixels(model: CodecModel, indices: torch.Tensor, height: int, width: int) -> np.ndarray:
    """Indices [q, h, w] -> pixels [height, width, 3] uint8, decoded tile by tile."""
    _, h, w = indices.shape
    f = model.vqvae.cfg.factor
    out = np.empty((h * f, w * f, 3), dtype=np.uint8)
    for (y0, y1, ry0, ry1), (x0, x1, rx0, rx1) in _tiles(h, w, TILE // f, HALO_LATENTS):
        rgb = model.vqvae.reconstruct(indices[None, :, ry0:ry1, rx0:rx1].to(model.device))[0]
        rgb = rgb[:, (y0 - ry0) * f : (y1 - ry0) * f, (x0 - rx0) * f : (x1 - rx0) * f]
        out[y0 * f : y1 * f, x0 * f : x1 * f] = to_pixels(rgb)
    return out[:height, :width]


def compress(
    image: ImageLike,
    quality: int | None = None,
    model: str = DEFAULT_IMAGE_MODEL,
    device: str = "auto",
    keep_metadata: bool = False,
) -> bytes:
    """Compress an image (path, PIL image or HxWx3 uint8 array) into the bytes of a .vqc file.

    `quality` is the level: 1 (smallest) .. the model's number of residual quantizer stages
    (best), each level one stage more; a family's levels name a model and its stages
    (`catalog.quality_levels`), and the file names the model that coded it. None: the
    model's default level (`catalog.default_quality`). With
    `keep_metadata`, the source's EXIF, XMP and ICC profile are stored and given back by
    `decompress` (its pixels are then coded as they are, in the profile's colours, instead of
    converted to sRGB).
    """
    rgb = load_image(image, keep_metadata)
    if quality is None:
        quality = catalog.default_quality(catalog.model_meta(model, "image"))
    member, stages = catalog.level_model(model, quality)
    codec_model = load_image_model(member, pick_device(device))
    return _pack(codec_model, rgb, stages, encode_indices(codec_model, rgb.pixels, stages))


def _header(codec_model: CodecModel, rgb: RGBImage, quality: int) -> Header:
    h, w = rgb.pixels.shape[:2]
    return Header(
        kind=container.KIND_IMAGE,
        flags=(container.FLAG_GRAY if rgb.gray else 0)
        | (container.FLAG_ALPHA_DROPPED if rgb.alpha_dropped else 0)
        | (container.FLAG_CONVERTED_TO_SRGB if rgb.converted_from else 0),
        model_name=codec_model.name,
        model_hash=codec_model.hash,
        width=w,
        height=h,
        quality=quality,
        metadata=rgb.metadata,
    )


def _pack(codec_model: CodecModel, rgb: RGBImage, quality: int, grids: list[torch.Tensor]) -> bytes:
    return container.pack(_header(codec_model, rgb, quality), _chunks(codec_model, grids))


def _chunks(codec_model: CodecModel, grids: list[torch.Tensor]) -> list[container.Chunk]:
    """The file records of the tiles' index grids (row-major)."""
    labels = map(container.image_chunk_label, range(len(grids)))
    return [encode_chunk(grid, codec_model.prior, label) for grid, label in zip(grids, labels, strict=True)]


def compress_to_target(
    image: ImageLike,
    max_bytes: int | None = None,
    min_psnr: float | None = None,
    model: str = DEFAULT_IMAGE_MODEL,
    device: str = "auto",
    keep_metadata: bool = False,
) -> tuple[bytes, int, float | None]:
    """The best file of at most `max_bytes` (the highest level that fits), or the smallest whose
    PSNR reaches `min_psnr` dB: (file, quality level, its PSNR with a PSNR target). One target,
    whole levels; a target no level meets is a UsageError naming the closest the model reaches.

    A family's model is chosen first, in the order of its levels: with a size, the highest one
    whose lowest level fits; with a PSNR, the lowest one whose highest level reaches it. Then
    its stages: their codes are searched once, their sizes come from the prior's information per
    stage (the first n stages cost what they cost alone), their PSNRs from decoding prefixes of
    them; the level found is encoded as `compress` does and checked (below `SEARCHED_STAGES`
    stages the search may choose other codes)."""
    if (max_bytes is None) == (min_psnr is None):
        raise UsageError("give one target: a size in bytes or a PSNR")
    rgb = load_image(image, keep_metadata)
    levels = catalog.quality_levels(catalog.model_meta(model, "image"))
    members = list(dict.fromkeys(name for name, _ in levels))  # in the order of their levels

    def target_with(name: str) -> tuple[bytes, int, float | None]:
        stages = [s for member, s in levels if member == name]
        codec_model = load_image_model(catalog.member_model(model, name), pick_device(device))
        data, found, psnr = _target_of(codec_model, rgb, max_bytes, min_psnr, (min(stages), max(stages)))
        return data, levels.index((name, found)) + 1, psnr

    order = members[::-1] if max_bytes is not None else members
    for name in order[:-1]:
        try:
            return target_with(name)
        except UsageError:  # this model cannot meet the target: the next one in the order
            continue
    return target_with(order[-1])  # the last one's error names the closest the family reaches


def _target_of(codec_model: CodecModel, rgb: RGBImage, max_bytes, min_psnr, stage_range: tuple[int, int]):
    """`compress_to_target` with one model and the stages of its levels: (file, stages, PSNR)."""
    latents = encode_latents(codec_model, rgb.pixels)  # the network runs once, whatever the level
    chunks = search_codes(codec_model, latents, stage_range[1])

    @functools.cache  # the searches ask for some levels more than once
    def encoded(q: int) -> bytes:
        return _pack(codec_model, rgb, q, chunks_at(q))

    def chunks_at(q: int) -> list[torch.Tensor]:
        return [c[:q] for c in chunks] if q >= SEARCHED_STAGES else search_codes(codec_model, latents, q)

    if max_bytes is not None:
        return (*_fit_size(codec_model, rgb, chunks, max_bytes, encoded, stage_range[0]), None)
    return _reach_psnr(codec_model, rgb, chunks, min_psnr, encoded, chunks_at, stage_range[0])


def _fit_size(codec_model, rgb, chunks, max_bytes: int, encoded, lowest: int) -> tuple[bytes, int]:
    # Each stage's payload: its bits in whole 32-bit words and about one word of flush, a
    # length field and its indices CRC.
    words = np.ceil(np.array([stage_bits(c, codec_model.prior) for c in chunks]) / 32) + 1
    overhead = len(container.pack(_header(codec_model, rgb, 0), [container.new_chunk("", [], [])] * len(chunks)))
    estimates = overhead + np.cumsum(4 * words.sum(0) + 6 * len(chunks))  # bytes of the first n = 1, 2, ... stages
    slack = 8 * len(chunks)  # how far off an estimate may be
    quality = max(lowest, int(np.searchsorted(estimates, max_bytes, side="right")))
    data = encoded(quality)
    while len(data) > max_bytes and quality > lowest:
        quality -= 1
        data = encoded(quality)
    while quality < len(estimates) and estimates[quality] <= max_bytes + slack:  # one more may fit
        more = encoded(quality + 1)
        if len(more) > max_bytes:
            break
        data, quality = more, quality + 1
    if len(data) > max_bytes:
        raise UsageError(f"no file of this image fits {max_bytes:,} bytes: the smallest is {len(data):,} (quality 1)")
    if len(chunks) > 1 and quality < len(estimates):  # finer: one stage more in as many tiles as fit
        header, more = container.unpack(encoded(quality + 1))

        def with_more(m: int) -> bytes:
            return container.pack_first(header, more, container.spread(quality, m, len(chunks)))

        data = container.largest_fitting(1, len(chunks) - 1, with_more, max_bytes)[1] or data
    return data, quality


def _reach_psnr(codec_model, rgb, chunks, min_psnr: float, encoded, chunks_at, lowest: int) -> tuple[bytes, int, float]:
    h, w = rgb.pixels.shape[:2]
    header = _header(codec_model, rgb, len(chunks[0]))
    factor = codec_model.vqvae.cfg.factor

    def psnr_of(parts: list[torch.Tensor]) -> float:
        decoded = decode_pixels(codec_model, _joined(parts, header, factor), h, w)
        mse = np.mean((decoded.astype(np.float64) - rgb.pixels) ** 2)
        return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))

    lo, hi = lowest, len(chunks[0])  # the smallest level reaching the target, by bisection
    best = psnr_of(chunks)
    if best < min_psnr:
        raise UsageError(f"no file of this image reaches {min_psnr:g} dB: the best is {best:.2f} dB (the top quality)")
    while lo < hi:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if psnr_of([c[:mid] for c in chunks]) >= min_psnr else (mid + 1, hi)
    reached = psnr_of(chunks_at(lo))
    while reached < min_psnr:  # below SEARCHED_STAGES the searched code differs from the prefix
        lo += 1
        reached = psnr_of(chunks_at(lo))
    return encoded(lo), lo, reached


def read_header(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Header:
    return container.unpack(data, max_pixels)[0]


def decode_indices(data: bytes, device: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS, stages: int | None = None):
    """Parse a .vqc file and range-decode its indices (the first `stages` stages of each chunk,
    all by default): (header, model, [q, h, w] indices)."""
    return decode_indices_and_bits(data, device, max_pixels, with_bits=False, stages=stages)[:3]


def decode_indices_and_bits(
    data: bytes,
    device: str = "auto",
    max_pixels: int = DEFAULT_MAX_PIXELS,
    with_bits: bool = True,
    stages: int | None = None,
):
    """`decode_indices` and the information of each index in bits ([q, h, w] float64; None
    without `with_bits`), from the probabilities the decoder used."""
    header, chunks = container.unpack(data, max_pixels)
    model = model_for_file(header, "image", pick_device(device))
    if not 1 <= header.quality <= model.num_stages or min(c.stages for c in chunks) < 1:
        raise CorruptFileError(f"stage counts outside 1..{model.num_stages}")
    q = header.quality if stages is None else max(1, min(stages, header.quality))
    # A version 1 file's one CRC covers all stages of all chunks: all are decoded to check it.
    decoded = q if header.indices_crc is None else header.quality
    factor = model.vqvae.cfg.factor
    h, w = header.latent_shape(factor)
    bits = np.zeros((decoded, h, w)) if with_bits else None
    grids = []
    for chunk, (top, left, ch, cw) in zip(chunks, header.chunk_grid(factor), strict=True):
        chunk_bits = bits[: min(decoded, chunk.stages), top : top + ch, left : left + cw] if with_bits else None
        grids.append(decode_chunk(chunk, model.prior, ch, cw, decoded, chunk_bits))
    if header.indices_crc is not None:
        crc = 0
        for grid in grids:
            crc = indices_crc(grid, crc)
        if crc != header.indices_crc:
            raise CorruptFileError("decoded indices fail their CRC: file damaged or decoded with a different prior")
    joined = _joined([g[:q] for g in grids], header, factor)
    return header, model, joined, bits if bits is None else bits[:q]


def _joined(chunks: list[torch.Tensor], header: Header, factor: int) -> torch.Tensor:
    """The chunks' [q_c, ch, cw] grids as one [q, h, w] grid of the image's latents, q the most
    stages of any chunk; the stages a chunk lacks are -1 (no code: `ResidualVQ.decode`)."""
    h, w = header.latent_shape(factor)
    indices = torch.full((max(c.shape[0] for c in chunks), h, w), -1, dtype=torch.int64)
    for chunk, (top, left, ch, cw) in zip(chunks, header.chunk_grid(factor), strict=True):
        indices[: chunk.shape[0], top : top + ch, left : left + cw] = chunk
    return indices


METADATA_INFO_KEYS = {"exif": "exif", "icc": "icc_profile", "xmp": "xmp"}  # file record -> PIL info key


def decompress(
    data: bytes, device: str = "auto", max_pixels: int = DEFAULT_MAX_PIXELS, stages: int | None = None
) -> Image.Image:
    """Decode the bytes of a .vqc file into a PIL image (RGB, or L for grayscale sources); with
    `stages`, from the first `stages` stages of each chunk only (a smaller quality, without
    decoding the rest). Metadata kept by `compress(keep_metadata=True)` is in the image's
    `info` ("exif", "icc_profile", "xmp"), as Pillow's readers put it."""
    header, model, indices = decode_indices(data, device, max_pixels, stages)
    pixels = decode_pixels(model, indices, header.height, header.width)
    image = to_pil(pixels, bool(header.flags & container.FLAG_GRAY))
    image.info.update({METADATA_INFO_KEYS[name]: value for name, value in header.metadata})
    return image


def upgrade(data: bytes, device: str = "auto") -> bytes:
    """An image file of format version 1 as version 2, with the same indices (decoded and coded
    again by the prior, one stream per stage; no network runs), so that it can be truncated."""
    header, model, indices = decode_indices(data, device)
    grids = [indices[:, t : t + ch, left : left + cw] for t, left, ch, cw in header.chunk_grid(model.vqvae.cfg.factor)]
    upgraded = dataclasses.replace(header, version=container.VERSION, indices_crc=None)
    return container.pack(upgraded, _chunks(model, grids))
