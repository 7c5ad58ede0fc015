"""Audio compress / decompress, streamed segment by segment so memory does not grow with duration.

compress:   blocks of the source -> soxr to the model rate -> streams (mono, mid + side, or one
            per channel) -> per segment, with the model's context frames around it: encoder -> residual VQ ->
            indices -> prior + range coder -> one chunk per stream
decompress: chunks -> range decoder + prior -> indices -> codebooks -> decoder (per segment,
            with the neighbouring segments' indices as context) -> channels -> soxr back to the
            source rate -> blocks of output, cut to the source length to the sample

`bitrate` (kbps) chooses how many residual stages are coded: each stage costs at most
frame_rate * log2(K) bits per second (0.75 kbps for the 24 kHz model) before the prior's saving,
so the file's real bitrate is lower than the one asked for.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

from vqcodec import catalog, container
from vqcodec.catalog import DEFAULT_BITRATE
from vqcodec.codec.allocator import release_freed_memory, tune_allocator  # noqa: F401 - tune_allocator for API users
from vqcodec.codec.image import pick_device
from vqcodec.container import SEGMENT_FRAMES, AudioHeader, Chunk
from vqcodec.entropy import decode_chunk, encode_chunk
from vqcodec.errors import BadInputError, CorruptFileError, UsageError
from vqcodec.quantizer import SEARCH_BEAM
from vqcodec.registry import DEFAULT_AUDIO_MODEL, CodecModel, load_audio_model, model_for_file

READ_BLOCK = 1 << 16  # source samples per channel read at a time

# An audio source: a file path, the bytes of a file, or (samples [channels, n] or [n], rate).
AudioLike = str | Path | bytes | tuple[np.ndarray, int]
Progress = Callable[[int], None]  # called with the number of segments just finished


@dataclass
class Source:
    rate: int
    channels: int
    frames_hint: int  # samples per channel the source says it has (for progress only)
    blocks: Iterator[np.ndarray]  # [n, channels] float32


def open_source(audio: AudioLike) -> Source:
    """Open any audio libsndfile reads (WAV, FLAC, OGG Vorbis/Opus, ...) or an array, as blocks."""
    if isinstance(audio, tuple):
        samples, rate = audio
        samples = np.asarray(samples, dtype=np.float32)
        samples = samples[None] if samples.ndim == 1 else samples
        if samples.ndim != 2:
            raise BadInputError("audio arrays must be [channels, samples] or [samples]")
        return _checked(Source(int(rate), samples.shape[0], samples.shape[1], iter([samples.T])), "array")
    name = "input" if isinstance(audio, bytes) else str(audio)
    try:
        f = soundfile.SoundFile(io.BytesIO(audio) if isinstance(audio, bytes) else str(audio))
    except (soundfile.LibsndfileError, RuntimeError, OSError) as e:
        raise BadInputError(f"{name}: not a readable audio file ({e})") from None

    def blocks() -> Iterator[np.ndarray]:
        with f:
            while True:
                try:
                    block = f.read(READ_BLOCK, dtype="float32", always_2d=True)
                except (soundfile.LibsndfileError, RuntimeError) as e:
                    raise BadInputError(f"{name}: audio data is damaged ({e})") from None
                if not len(block):
                    return
                yield block

    return _checked(Source(f.samplerate, f.channels, max(f.frames, 0), blocks()), name)


def _checked(source: Source, name: str) -> Source:
    if not 0 < source.rate <= container.MAX_RATE:
        raise BadInputError(f"{name}: unsupported sample rate {source.rate} Hz")
    if not 0 < source.channels <= container.MAX_CHANNELS:
        raise BadInputError(f"{name}: {source.channels} channels (at most {container.MAX_CHANNELS})")

    def finite(blocks: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
        for block in blocks:
            if not np.isfinite(block).all():
                raise BadInputError(f"{name}: contains NaN or infinite samples")
            yield block

    source.blocks = finite(source.blocks)
    return source


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def model_length(model: CodecModel, length: int, rate: int) -> tuple[int, int]:
    """(samples at the model rate, index frames) for `length` source samples at `rate`; defined
    in integers from the source length, not by the resampler's output, so that the decoder
    computes the same."""
    n = _ceil_div(length * model.vqvae.cfg.sample_rate, rate)
    return n, _ceil_div(n, model.vqvae.cfg.hop)


def kbps_per_stage(model: CodecModel) -> float:
    return catalog.kbps_per_stage(model.meta["net"])


def stages_for_bitrate(model: CodecModel, bitrate: float, channels: int) -> tuple[tuple[int, ...], bool]:
    """(stages per stream, mid/side?) for a total bitrate (see `catalog.stages_for_bitrate`)."""
    return catalog.stages_for_bitrate(bitrate, channels, model.num_stages, kbps_per_stage(model))


def _to_streams(samples: np.ndarray, mid_side: bool) -> np.ndarray:
    """[n, channels] -> [streams, n]."""
    if mid_side:
        left, right = samples[:, 0], samples[:, 1]
        return np.stack([(left + right) / 2, (left - right) / 2])
    return samples.T


def _to_channels(streams: np.ndarray, mid_side: bool) -> np.ndarray:
    """[streams, n] -> [n, channels]."""
    if mid_side:
        return np.stack([streams[0] + streams[1], streams[0] - streams[1]], 1)
    return streams.T


class _Resampler:
    """soxr streaming resampler, or a pass-through when the rates are equal."""

    def __init__(self, rate_in: int, rate_out: int, channels: int):
        self.stream = None if rate_in == rate_out else soxr.ResampleStream(rate_in, rate_out, channels, "float32", "HQ")

    def __call__(self, block: np.ndarray, last: bool = False) -> np.ndarray:
        if self.stream is None:
            return block
        return self.stream.resample_chunk(np.ascontiguousarray(block, dtype=np.float32), last=last)


@torch.inference_mode()
def _encode_segment(model: CodecModel, window: np.ndarray, frames: int, stages: tuple[int, ...]) -> list[torch.Tensor]:
    """Model-rate streams [S, (halo + frames + halo) * hop] -> indices [q_s, 1, frames] per
    stream, halo being the model's context frames."""
    coded = [s for s, q in enumerate(stages) if q]  # a stream with no stage needs no encoding
    grids = [torch.zeros(0, 1, frames, dtype=torch.int64) for _ in stages]
    if coded:
        wave = torch.from_numpy(np.ascontiguousarray(window[coded], dtype=np.float32))[:, None].to(model.device)
        halo = model.vqvae.context_frames
        latents = model.vqvae.encoder(wave)[..., halo : halo + frames]
        for row, s in enumerate(coded):  # each stream searched at its own number of stages
            grids[s] = model.vqvae.quantizer.encode(latents[row : row + 1], stages[s], SEARCH_BEAM)[0].cpu()
    return grids


def encode_audio(
    audio: AudioLike,
    bitrate: float | None = DEFAULT_BITRATE,
    model: str = DEFAULT_AUDIO_MODEL,
    device: str = "auto",
    progress: Progress | None = None,
) -> tuple[AudioHeader, list[Chunk], list[list[torch.Tensor]]]:
    """The encoder: (header, chunks, indices of every segment and stream); `bitrate` None codes
    every stage the model has in every stream."""
    source = open_source(audio)
    codec_model = load_audio_model(model, pick_device(device))
    if bitrate is None:
        stages, mid_side = (codec_model.num_stages,) * source.channels, source.channels == 2
    else:
        stages, mid_side = stages_for_bitrate(codec_model, bitrate, source.channels)
    rate, hop = codec_model.vqvae.cfg.sample_rate, codec_model.vqvae.cfg.hop
    seg_len, halo = SEGMENT_FRAMES * hop, codec_model.vqvae.context_frames * hop
    resample = _Resampler(source.rate, rate, source.channels)
    # `held` holds model-rate samples from absolute position `held_start` on; the first
    # segment's left context is silence, as for a convolution over the whole file.
    held, held_start = np.zeros((len(stages), halo), np.float32), -halo
    chunks: list[Chunk] = []
    all_indices: list[list[torch.Tensor]] = []
    length = 0

    def encode_ready(end: int, total_frames: int | None = None) -> None:
        """Encode every segment whose window lies below absolute position `end` (the last
        segment, once `total_frames` is known, may be shorter)."""
        nonlocal held, held_start
        while (len(all_indices) + 1) * seg_len + halo <= end:
            seg = len(all_indices)
            start = seg * seg_len - halo
            frames = SEGMENT_FRAMES
            if total_frames is not None:
                frames = min(frames, total_frames - seg * SEGMENT_FRAMES)
            # A short last segment's window stops at its frames: the silence padding beyond is not encoded.
            window = held[:, start - held_start : start - held_start + frames * hop + 2 * halo]
            grids = _encode_segment(codec_model, window, frames, stages)
            all_indices.append(grids)
            labels = [container.audio_chunk_label(seg * len(grids) + s, len(grids)) for s in range(len(grids))]
            chunks.extend(encode_chunk(g, codec_model.prior, label) for g, label in zip(grids, labels, strict=True))
            held, held_start = held[:, start + seg_len - held_start :], start + seg_len
            release_freed_memory()
            if progress:
                progress(1)

    for block in source.blocks:
        length += len(block)
        held = np.concatenate([held, _to_streams(resample(block), mid_side)], 1)
        encode_ready(held_start + held.shape[1])
    tail = resample(np.zeros((0, source.channels), np.float32), last=True)
    held = np.concatenate([held, _to_streams(tail, mid_side)], 1)
    n_model, frames = model_length(codec_model, length, source.rate)
    segments = _ceil_div(frames, SEGMENT_FRAMES)
    held = held[:, : max(0, n_model - held_start)]
    pad = (segments * seg_len + halo) - (held_start + held.shape[1])
    held = np.concatenate([held, np.zeros((len(stages), max(0, pad)), np.float32)], 1)
    encode_ready(segments * seg_len + halo, frames)  # the last segments, padded with silence
    header = AudioHeader(
        flags=container.FLAG_MID_SIDE if mid_side else 0,
        model_name=codec_model.name,
        model_hash=codec_model.hash,
        sample_rate=source.rate,
        channels=source.channels,
        length=length,
        frames=frames,
        stages=stages,
    )
    return header, chunks, all_indices


def compress_audio(
    audio: AudioLike,
    bitrate: float = DEFAULT_BITRATE,
    model: str = DEFAULT_AUDIO_MODEL,
    device: str = "auto",
    progress: Progress | None = None,
) -> bytes:
    """Compress audio (a path, the bytes of an audio file, or (samples, rate)) into .vqc bytes.

    `bitrate` in kbps (e.g. 1.5, 3, 6, 12) sets the number of residual stages; the prior makes
    the file smaller than that. Any sample rate, channel count and length is kept.
    """
    header, chunks, _ = encode_audio(audio, bitrate, model, device, progress)
    return container.pack_audio(header, chunks)


def compress_audio_to_size(
    audio: AudioLike,
    max_bytes: int,
    model: str = DEFAULT_AUDIO_MODEL,
    device: str = "auto",
    progress: Progress | None = None,
) -> tuple[bytes, float]:
    """The best file of at most `max_bytes`: (file, the bitrate its stages cost before the
    prior, in kbps). The audio is coded once with every stage the model has; the stage counts
    are then chosen from the sizes of its chunks' stages, which are known: the most total
    stages T that fit in every segment, then T + 1 in as many segments as still fit, spread
    evenly over the file, so the rate steps by less than a level. A size below the smallest
    file (one stage) is a UsageError naming it."""
    codec_model = load_audio_model(model, pick_device(device))
    levels, stage_kbps = codec_model.num_stages, kbps_per_stage(codec_model)
    header, chunks, _ = encode_audio(audio, None, model, device, progress)
    streams, segments = header.channels, header.segments

    def counts(total: int) -> tuple[int, ...]:
        return catalog.stages_for_bitrate(total * stage_kbps, streams, levels, stage_kbps)[0]

    def packed(totals: list[int]) -> bytes:  # totals: the total stages of each segment
        per_chunk = [counts(totals[i // streams])[i % streams] for i in range(len(chunks))]
        return container.pack_first(header, chunks, per_chunk)

    most = levels * streams
    best, data = container.largest_fitting(1, most, lambda t: packed([t] * segments), max_bytes)
    if data is None:
        smallest = len(packed([1] * segments))
        raise UsageError(f"no file of this sound fits {max_bytes:,} bytes: the smallest is {smallest:,} (one stage)")
    totals = [best] * segments

    def one_more_in(m: int) -> list[int]:  # T + 1 stages in m segments, evenly spread
        return container.spread(best, m, segments)

    if best < most:
        m, finer = container.largest_fitting(1, segments - 1, lambda m: packed(one_more_in(m)), max_bytes)
        if finer is not None:
            data, totals = finer, one_more_in(m)
    return data, stage_kbps * sum(totals) / segments


def open_audio_file(
    data: bytes, device: str = "auto", max_seconds: float = container.DEFAULT_MAX_SECONDS
) -> tuple[AudioHeader, list[Chunk], CodecModel]:
    """Parse an audio .vqc file and find its model (checking name, hash and stage counts)."""
    header, chunks = container.unpack_audio(data, max_seconds)
    model = model_for_file(header, "audio", pick_device(device))
    if max(header.stages) > model.num_stages:
        raise CorruptFileError(f"stage count {max(header.stages)} is over the model's {model.num_stages}")
    if header.frames != model_length(model, header.length, header.sample_rate)[1]:
        raise CorruptFileError("frame count does not match the audio length")
    return header, chunks, model


def decode_audio_indices(
    data: bytes,
    device: str = "auto",
    max_seconds: float = container.DEFAULT_MAX_SECONDS,
    stages: tuple[int, ...] | None = None,
) -> Iterator[list[torch.Tensor]]:
    """Indices of each segment, one [q_s, 1, frames] grid per stream, checked by their CRCs
    (with `stages`, at most that many stages of each stream)."""
    yield from _segments(*open_audio_file(data, device, max_seconds), stages=stages)


def upgrade_audio(data: bytes, device: str = "auto") -> bytes:
    """An audio file of format version 1 as version 2, with the same indices (decoded and coded
    again by the prior, one stream per stage; no network runs), so that it can be truncated."""
    header, chunks, model = open_audio_file(data, device)
    coded = [
        encode_chunk(grid, model.prior, container.audio_chunk_label(seg * header.channels + s, header.channels))
        for seg, grids in enumerate(_segments(header, chunks, model))
        for s, grid in enumerate(grids)
    ]
    return container.pack_audio(dataclasses.replace(header, version=container.VERSION), coded)


# Told each decoded segment's grids and the information of their indices in bits (one
# [q_s, 1, frames] grid and array per stream): what `inspect` draws.
SegmentListener = Callable[[list[torch.Tensor], list[np.ndarray]], None]


def _segments(
    header: AudioHeader,
    chunks: list[Chunk],
    model: CodecModel,
    listener: SegmentListener | None = None,
    stages: tuple[int, ...] | None = None,
) -> Iterator[list[torch.Tensor]]:
    limits = stages or header.stages
    for seg in range(header.segments):
        frames = header.segment_frames(seg)
        streams = chunks[seg * header.channels : (seg + 1) * header.channels]
        counts = [min(c.stages, q) for c, q in zip(streams, limits, strict=True)]
        bits = [np.zeros((q, 1, frames)) if listener else None for q in counts]
        grids = [decode_chunk(c, model.prior, 1, frames, q, b) for c, q, b in zip(streams, counts, bits, strict=True)]
        if listener:
            listener(grids, bits)
        yield grids


@torch.inference_mode()
def _synthesize(model: CodecModel, context: list[list[torch.Tensor]], first: int, frames: int) -> np.ndarray:
    """Waveforms [S, frames * hop] of the `frames` frames that start at frame `first` of the
    concatenated `context` grids (which include the model's context frames around them where
    they exist)."""
    hop, halo = model.vqvae.cfg.hop, model.vqvae.context_frames
    out = []
    for stream in range(len(context[0])):
        grids = [seg[stream] for seg in context]
        q = max(len(g) for g in grids)  # a segment coded with fewer stages has no code (-1) for the rest
        grid = torch.cat([torch.nn.functional.pad(g, (0, 0, 0, 0, 0, q - len(g)), value=-1) for g in grids], -1)
        if not len(grid):  # a stream coded with no stage is silent
            out.append(torch.zeros(frames * hop))
            continue
        lo, hi = max(0, first - halo), min(grid.shape[-1], first + frames + halo)
        wave = model.vqvae.reconstruct(grid[None, :, :, lo:hi].to(model.device))[0, 0]
        out.append(wave[(first - lo) * hop : (first - lo + frames) * hop].cpu())
    return torch.stack(out).numpy()


def decode_audio_blocks(
    data: bytes,
    device: str = "auto",
    max_seconds: float = container.DEFAULT_MAX_SECONDS,
    progress: Progress | None = None,
    listener: SegmentListener | None = None,
    stages: tuple[int, ...] | None = None,
) -> tuple[AudioHeader, Iterator[np.ndarray]]:
    """(header, blocks [n, channels] float32 at the source rate), decoded segment by segment;
    `listener` is told each segment's indices and their bits as they are decoded. With
    `stages`, from at most that many stages of each stream (a lower bitrate, decoding no more)."""
    header, chunks, model = open_audio_file(data, device, max_seconds)
    rate, hop = model.vqvae.cfg.sample_rate, model.vqvae.cfg.hop
    n_model = model_length(model, header.length, header.sample_rate)[0]
    mid_side = bool(header.flags & container.FLAG_MID_SIDE)

    def blocks() -> Iterator[np.ndarray]:
        resample = _Resampler(rate, header.sample_rate, header.channels)
        segments = _segments(header, chunks, model, listener, stages)
        window = [next(segments)] if header.segments else []
        written = 0
        for seg in range(header.segments):
            if seg + 1 < header.segments:
                window.append(next(segments))
            first = 0 if seg == 0 else window[0][0].shape[-1]
            wave = _synthesize(model, window, first, header.segment_frames(seg))
            wave = wave[:, : max(0, n_model - seg * SEGMENT_FRAMES * hop)]
            out = resample(_to_channels(wave, mid_side), last=seg == header.segments - 1)
            out = out[: header.length - written]
            written += len(out)
            yield out
            window = window[-2:]
            release_freed_memory()
            if progress:
                progress(1)
        if written < header.length:  # the resampler may return a few samples short
            yield np.zeros((header.length - written, header.channels), np.float32)

    return header, blocks()


def decompress_audio(
    data: bytes,
    device: str = "auto",
    max_seconds: float = container.DEFAULT_MAX_SECONDS,
    listener: SegmentListener | None = None,
    stages: tuple[int, ...] | None = None,
) -> tuple[np.ndarray, int]:
    """Decode the bytes of an audio .vqc file: (samples [channels, n] float32, sample rate);
    `stages` as for decode_audio_blocks."""
    header, blocks = decode_audio_blocks(data, device, max_seconds, listener=listener, stages=stages)
    parts = list(blocks)
    samples = np.concatenate(parts) if parts else np.zeros((0, header.channels), np.float32)
    return np.ascontiguousarray(samples.T), header.sample_rate
