"""Range coding of index grids with constriction, driven by the prior's fixed schedule, and
the chunk records of the file (`container.Chunk`) that both media code their grids into.

For each stage and each of its four passes, the prior gives the probabilities of all indices
of that pass at once and the range coder codes them in one call: 4 prior evaluations per
stage, whatever the grid size. Encoder and decoder walk the same schedule, so the decoder
feeds the prior exactly the indices the encoder's prior saw. Each stage is its own coder
stream: the prior codes stage s from stages 0..s alone, so the first q streams decode alone.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from itertools import groupby

import constriction
import numpy as np
import torch

from vqcodec.container import Chunk, new_chunk
from vqcodec.errors import CorruptFileError
from vqcodec.prior import NUM_PASSES, IntegerPrior

# perfect=False: the fast (and still exact, deterministic) quantization of the probabilities;
# encoder and decoder must use the same setting.
_FAMILY = constriction.stream.model.Categorical(perfect=False)


def _schedule(prior: IntegerPrior, stages: int, h: int, w: int) -> Iterator[tuple[int, int, torch.Tensor]]:
    """(stage, pass, positions [h, w] bool) in coding order, skipping empty passes: the walk that
    encoder, decoder and every estimate share."""
    passes = prior.pass_map(h, w).cpu()
    for stage in range(stages):
        for pass_ in range(NUM_PASSES):
            at = passes == pass_
            if at.any():
                yield stage, pass_, at


def _empty_grid(prior: IntegerPrior, h: int, w: int) -> torch.Tensor:
    """The prior's input: [1, L, h, w] indices, zero where not yet known."""
    return torch.zeros(1, prior.cfg.num_stages, h, w, dtype=torch.int64)


def _known_grid_pmfs(indices: torch.Tensor, prior: IntegerPrior) -> Iterator[tuple[int, torch.Tensor, np.ndarray]]:
    """(stage, positions, probabilities) along the schedule for a [q, h, w] grid whose indices
    are all known (the encoder's case), each stage's passes computed as one batch."""
    q, h, w = indices.shape
    grid = _empty_grid(prior, h, w)
    grid[0, :q] = indices
    for stage, steps in groupby(_schedule(prior, q, h, w), key=lambda step: step[0]):
        pmfs = prior.stage_pmfs(grid, stage)
        for _, pass_, at in steps:
            yield stage, at, pmfs[pass_]


def stage_bits(indices: torch.Tensor, prior: IntegerPrior) -> np.ndarray:
    """Information of each stage of a [q, h, w] grid under the prior, in bits ([q]): what the
    range coder spends on it, up to its rounding. The prior sees stages 0..s alone when it
    codes stage s, so the first n entries are also what the first n stages cost alone."""
    bits = np.zeros(indices.shape[0])
    for stage, at, probs in _known_grid_pmfs(indices, prior):
        bits[stage] = _information(probs, indices[stage][at].numpy()).sum()
    return bits


def _information(probs: np.ndarray, symbols: np.ndarray) -> np.ndarray:
    """-log2 of each symbol's probability ([N, K] probabilities, [N] symbols)."""
    return -np.log2(probs[np.arange(len(symbols)), symbols])


def encode_stages(indices: torch.Tensor, prior: IntegerPrior) -> list[bytes]:
    """Code the first q stages of an index grid ([q, h, w]): one payload per stage."""
    encoders = [constriction.stream.queue.RangeEncoder() for _ in range(indices.shape[0])]
    for stage, at, probs in _known_grid_pmfs(indices, prior):
        encoders[stage].encode(indices[stage][at].numpy().astype(np.int32), _FAMILY, probs)
    return [encoder.get_compressed().astype("<u4").tobytes() for encoder in encoders]


def sample_grid(
    prior: IntegerPrior, stages: int, h: int, w: int, temperature: float, rng: np.random.Generator
) -> torch.Tensor:
    """Draw a [stages, h, w] index grid from the prior, in the decoding schedule (ancestral
    sampling): what a decoder would produce from a stream of random bits."""
    grid = _empty_grid(prior, h, w)
    for stage, at, probs in _decoding(prior, grid, stages):
        probs = probs ** (1.0 / temperature)
        cdf = np.cumsum(probs / probs.sum(1, keepdims=True), 1)
        draws = (cdf < rng.random((len(cdf), 1))).sum(1).clip(0, cdf.shape[1] - 1)
        grid[0, stage][at] = torch.from_numpy(draws.astype(np.int64))
    return grid[0, :stages]


def _decoding(prior: IntegerPrior, grid: torch.Tensor, stages: int) -> Iterator[tuple[int, torch.Tensor, np.ndarray]]:
    """(stage, positions, probabilities) along the schedule for a [1, L, h, w] grid that
    the caller fills in pass by pass (the decoder's case): each pass's probabilities are
    computed from the grid as it stands when it is reached."""
    h, w = grid.shape[-2:]
    for stage, steps in groupby(_schedule(prior, stages, h, w), key=lambda step: step[0]):
        coarser = prior.coarser_sums(grid, stage)  # the stages before it are all known by now
        for _, pass_, at in steps:
            yield stage, at, prior.pmf(grid, stage, pass_, coarser)


def decode_grid(
    payloads: list[bytes] | bytes, prior: IntegerPrior, stages: int, h: int, w: int, bits: np.ndarray | None = None
) -> torch.Tensor:
    """Inverse of encode_stages: the first `stages` payloads -> [stages, h, w] int64 indices (or
    one payload coding all the stages: version 1 files). With `bits` ([stages, h, w] float),
    also the information of each index under the probabilities it was decoded with (no extra
    prior evaluation: `inspect` reads where the bits go from these)."""
    joint = isinstance(payloads, bytes)
    grid = _empty_grid(prior, h, w)
    try:
        decoders = [_decoder(payloads)] * stages if joint else [_decoder(p) for p in payloads[:stages]]
        for stage, at, probs in _decoding(prior, grid, stages):
            symbols = decoders[stage].decode(_FAMILY, probs)
            grid[0, stage][at] = torch.from_numpy(symbols.astype(np.int64))
            if bits is not None:
                bits[stage][at.numpy()] = _information(probs, symbols)
    except (ValueError, RuntimeError, AssertionError) as e:
        raise CorruptFileError(f"payload does not decode: {e}") from None
    return grid[0, :stages]


def _decoder(payload: bytes) -> constriction.stream.queue.RangeDecoder:
    if len(payload) % 4:
        raise CorruptFileError("payload length is not a whole number of 32-bit words")
    return constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))


def indices_crc(grid: torch.Tensor, crc: int = 0) -> int:
    """CRC-32 of a grid's indices as int16 little-endian (continuing from `crc`)."""
    return zlib.crc32(grid.to(torch.int16).numpy().astype("<i2").tobytes(), crc)


def encode_chunk(indices: torch.Tensor, prior: IntegerPrior, label: str) -> Chunk:
    """The file record of one chunk's [q, h, w] indices: a payload and an indices CRC per stage."""
    payloads = encode_stages(indices, prior) if len(indices) else []
    return new_chunk(label, payloads, [indices_crc(stage) for stage in indices])


def decode_chunk(
    chunk: Chunk, prior: IntegerPrior, h: int, w: int, stages: int | None = None, bits: np.ndarray | None = None
) -> torch.Tensor:
    """A chunk record -> its first `stages` stages (all by default) as [q, h, w] indices, its
    payload and indices checked by their CRCs (`bits` as for decode_grid, [q, h, w]). A
    version 1 chunk decodes all its stages, which its one CRC covers."""
    chunk.check()
    q = chunk.stages if stages is None else min(stages, chunk.stages)
    if not q:
        return torch.zeros(0, h, w, dtype=torch.int64)
    if chunk.per_stage:
        grid = decode_grid(list(chunk.payloads), prior, q, h, w, bits)
        found = [indices_crc(stage) for stage in grid]
    else:
        full_bits = np.zeros((chunk.stages, h, w)) if bits is not None else None
        grid = decode_grid(chunk.payloads[0], prior, chunk.stages, h, w, full_bits)
        found = [indices_crc(grid)]
        if bits is not None:
            bits[:] = full_bits[:q]
        grid = grid[:q]
    # (a version 1 image's chunks have no CRC of their own: its file has one for all of them)
    if chunk.indices_crcs and found != list(chunk.indices_crcs[: len(found)]):
        raise CorruptFileError(
            f"{chunk.label}: decoded indices fail their CRC (file damaged or decoded with a different prior)"
        )
    return grid
