"""The learned prior over index grids, computed with exact integer arithmetic.

For stage s and pass p of the decoding schedule, the prior sees
  * the indices of every coarser stage t < s (all positions),
  * the indices of stage s already decoded in passes < p,
and predicts a distribution over the K_s codes of stage s at every position of pass p.

Decoding schedule: each stage is coded in four passes, so a grid of any size takes 4 network
calls per stage. Images ("2x2") go over the 2x2 parity classes of the grid, (even, even) ->
(odd, odd) -> (even, odd) -> (odd, even): 3/4 of the indices see decoded neighbours on every
side. Audio grids have one row ("1d"): frames t = 0, 2, 1, 3 (mod 4), so half of the frames
see both of their neighbours already decoded.

Exactness: the decoder must reproduce the encoder's probabilities bit for bit on any machine.
Floating-point convolutions do not (summation order changes with threads, SIMD width, GPU
kernels) and ``softmax`` differs by an ULP between libraries. So the shipped prior is an
integer network (``IntegerPrior``):
  * inputs, weights and activations are integers in [-127, 127]; each convolution is an
    im2col matrix product in float32 whose every product and partial sum is an integer below
    2**24 in magnitude (checked when the prior is built), so any summation order is exact;
  * between layers, accumulators are rescaled by an integer multiplier and a right shift
    (floor), computed exactly in float64 (bounds checked), then clamped to [0, 127] (a
    quantized ReLU);
  * logits are integers in units of 1/LOGIT_STEPS nat; probabilities are read from a lookup
    table of exp() values stored with the model and normalised by an integer sum.
``PriorNet`` is the float network it is trained as, with fake quantization (straight-through
rounding) of the same integers, so the exported integer network is the one that was trained.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vqcodec.errors import UsageError

NUM_PASSES = 4
# "2x2": pass of a position from its (row % 2, col % 2); "1d": pass of a frame from t % 4
PASS_OF_PARITY = ((0, 2), (3, 1))
PASS_OF_PHASE = (0, 2, 1, 3)
ACT_MAX = 127
ACT_PEAK = 2.0  # float value of a resumed layer's integer peak (see prior_from_integer)
EMBED_SCALE = 32  # embeddings are stored as integers = round(value * 32)
LOGIT_STEPS = 16  # integer logits are in 1/16 nat
LOGIT_RANGE = 16 * 12  # logits more than 12 nats under the maximum share the smallest weight
LUT_BITS = 16
SHIFT = 24  # fixed-point bits of the integer rescaling multipliers
EXACT_LIMIT = 2**24  # float32 represents every integer below this exactly
MULT_BITS = 28  # rescaling multipliers stay below 2**28, so products stay below 2**52
# Grids of up to this many positions have their passes batched when encoding (`stage_pmfs`).
# Measured per stage on this 2-core CPU: 766 positions (a 10-second audio segment) 13 % and
# 768 (an 8x96 image grid) 33 % faster batched, 6,144 (a Kodak photo's 64x96) 9 % slower.
BATCHED_PASSES_MAX = 4096


@dataclass(frozen=True)
class PriorConfig:
    codebook_sizes: tuple[int, ...]
    embed_dim: int = 8
    hidden: int = 64
    layers: int = 4  # convolutions before the 1x1 per-stage output head
    kernel: tuple[int, int] = (3, 3)  # (rows, columns) of each convolution; (1, k) for audio
    schedule: str = "2x2"  # the decoding schedule: "2x2" (images) or "1d" (audio)
    # Dilation of each convolution (empty: 1 for all). Wider context at the same cost: (1, 2, 4, 8)
    # with 5-wide audio kernels sees +-60 frames (0.8 s) instead of +-8.
    dilations: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.dilations and (len(self.dilations) != self.layers or min(self.dilations) < 1):
            raise UsageError(f"prior dilations {self.dilations}: one positive number per layer ({self.layers})")

    def dilation(self, layer: int) -> int:
        return self.dilations[layer] if self.dilations else 1

    @property
    def num_stages(self) -> int:
        return len(self.codebook_sizes)

    @property
    def in_channels(self) -> int:
        return self.num_stages * self.embed_dim + 1

    def check_exact(self) -> None:
        """Refuse a network whose integer sums could reach 2**24 even before training: with every
        weight at +-127 (IntegerPrior checks the actual weights when a model is loaded)."""
        taps = self.kernel[0] * self.kernel[1]
        for layer, channels in (("first layer", self.in_channels), ("hidden layers", self.hidden)):
            if channels * taps * ACT_MAX * ACT_MAX >= EXACT_LIMIT:
                most = (EXACT_LIMIT - 1) // (taps * ACT_MAX * ACT_MAX)
                raise UsageError(
                    f"prior {layer}: {channels} input channels x {taps} taps could exceed 2**24 in the integer "
                    f"network's sums (not exact); at most {most} channels with this kernel"
                )


def pass_map(h: int, w: int, device=None, schedule: str = "2x2") -> torch.Tensor:
    """[h, w] int64 tensor with the pass (0..3) in which each position is coded."""
    if schedule == "1d":
        phase = torch.tensor(PASS_OF_PHASE, device=device)[torch.arange(w, device=device) % 4]
        return phase[None, :].expand(h, w)
    if schedule != "2x2":
        raise ValueError(f"unknown decoding schedule {schedule!r}")
    table = torch.tensor(PASS_OF_PARITY, device=device)
    rows = torch.arange(h, device=device) % 2
    cols = torch.arange(w, device=device) % 2
    return table[rows[:, None], cols[None, :]]


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity in the backward pass (straight-through)."""
    return x + (torch.round(x) - x).detach()


def quantize_weight(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-output-channel symmetric int8: (integer-valued weights, scales [O])."""
    scale = w.detach().abs().flatten(1).amax(1).clamp_min(1e-8) / ACT_MAX
    shape = (-1,) + (1,) * (w.dim() - 1)
    return torch.clamp(round_ste(w / scale.view(shape)), -ACT_MAX, ACT_MAX), scale


def logit_lut() -> torch.Tensor:
    """Table of round(2**16 * exp(-d / 16)) for d = 0..LOGIT_RANGE, at least 1 (stored in the model)."""
    d = torch.arange(LOGIT_RANGE + 1, dtype=torch.float64)
    return torch.clamp(torch.round(2.0**LUT_BITS * torch.exp(-d / LOGIT_STEPS)), min=1).to(torch.int64)


class PriorNet(nn.Module):
    """Float training network; ``quantized=True`` switches fake quantization on."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        self.embeddings = nn.ParameterList([nn.Parameter(torch.randn(k, cfg.embed_dim)) for k in cfg.codebook_sizes])
        widths = [cfg.in_channels] + [cfg.hidden] * cfg.layers
        self.convs = nn.ModuleList(
            [
                nn.Conv2d(
                    widths[i],
                    widths[i + 1],
                    cfg.kernel,
                    padding=(cfg.dilation(i) * (cfg.kernel[0] // 2), cfg.dilation(i) * (cfg.kernel[1] // 2)),
                    dilation=cfg.dilation(i),
                    bias=i > 0,
                )
                for i in range(cfg.layers)
            ]
        )
        self.stage_bias = nn.Parameter(torch.zeros(cfg.num_stages, cfg.hidden))
        self.heads = nn.ModuleList([nn.Conv2d(cfg.hidden, k, 1) for k in cfg.codebook_sizes])
        # Activation scales (value of one integer step) of each conv's output, set by calibrate().
        self.register_buffer("act_scale", torch.ones(cfg.layers))
        self.quantized = False

    def pass_map(self, h: int, w: int, device=None) -> torch.Tensor:
        return pass_map(h, w, device, self.cfg.schedule)

    def inputs(self, indices: torch.Tensor, stage: int, pass_: int) -> torch.Tensor:
        """Input planes [B, C, h, w] for predicting `stage` in `pass_` (indices [B, L, h, w])."""
        b, _, h, w = indices.shape
        decoded = (self.pass_map(h, w, indices.device) < pass_).to(torch.float32)
        planes = []
        for t, table in enumerate(self.embeddings):
            if t > stage:
                planes.append(indices.new_zeros((b, self.cfg.embed_dim, h, w), dtype=torch.float32))
                continue
            table = (
                torch.clamp(round_ste(table * EMBED_SCALE), -ACT_MAX, ACT_MAX) / EMBED_SCALE
                if self.quantized
                else table
            )
            plane = table[indices[:, t]].permute(0, 3, 1, 2)
            planes.append(plane * decoded if t == stage else plane)
        planes.append(decoded.expand(b, 1, h, w))
        return torch.cat(planes, 1)

    def forward(self, indices: torch.Tensor, stage: int, pass_: int) -> torch.Tensor:
        """Logits [B, K_stage, h, w] in nats."""
        x = self.inputs(indices, stage, pass_)
        for i, conv in enumerate(self.convs):
            if self.quantized:
                w, scale = quantize_weight(conv.weight)
                x = F.conv2d(x, w * scale.view(-1, 1, 1, 1), conv.bias, padding=conv.padding, dilation=conv.dilation)
            else:
                x = conv(x)
            if i == 0:
                x = x + self.stage_bias[stage].view(1, -1, 1, 1)
            x = F.relu(x)
            if self.quantized:
                s = self.act_scale[i]
                x = torch.clamp(round_ste(x / s), 0, ACT_MAX) * s
        head = self.heads[stage]
        if self.quantized:
            w, scale = quantize_weight(head.weight)
            logits = F.conv2d(x, w * scale.view(-1, 1, 1, 1), head.bias)
            logits = round_ste(logits * LOGIT_STEPS) / LOGIT_STEPS
            return torch.maximum(logits, logits.amax(1, keepdim=True).detach() - LOGIT_RANGE / LOGIT_STEPS)
        return head(x)

    @torch.no_grad()
    def calibrate(self, indices: torch.Tensor, quantile: float = 0.999) -> None:
        """Choose each layer's activation scale from the float activations on a batch."""
        was = self.quantized
        self.quantized = False
        peaks = torch.zeros(self.cfg.layers)
        for stage in range(self.cfg.num_stages):
            for pass_ in range(NUM_PASSES):
                x = self.inputs(indices, stage, pass_)
                for i, conv in enumerate(self.convs):
                    x = conv(x)
                    if i == 0:
                        x = x + self.stage_bias[stage].view(1, -1, 1, 1)
                    x = F.relu(x)
                    flat = x.flatten()
                    sample = flat[torch.randperm(flat.numel())[:100000]]
                    peaks[i] = max(peaks[i], torch.quantile(sample, quantile).item())
        self.act_scale.copy_(peaks.clamp_min(1e-3) / ACT_MAX)
        self.quantized = was

    @torch.no_grad()
    def to_integer(self) -> dict[str, torch.Tensor]:
        """The integer network as named tensors (what the model file stores)."""
        tensors: dict[str, torch.Tensor] = {"lut": logit_lut()}
        for t, table in enumerate(self.embeddings):
            tensors[f"embed.{t}"] = torch.clamp(torch.round(table * EMBED_SCALE), -ACT_MAX, ACT_MAX).to(torch.int8)
        in_scale = torch.tensor(1.0 / EMBED_SCALE)
        for i, conv in enumerate(self.convs):
            w, w_scale = quantize_weight(conv.weight)
            out_scale = self.act_scale[i]
            tensors[f"conv.{i}.weight"] = w.to(torch.int8)
            tensors[f"conv.{i}.mult"] = torch.round(in_scale * w_scale / out_scale * 2**SHIFT).to(torch.int64)
            bias = conv.bias if conv.bias is not None else torch.zeros(conv.out_channels)
            if i == 0:
                bias = bias[None, :] + self.stage_bias  # [L, O]: the stage is an input of layer 0
            tensors[f"conv.{i}.bias"] = torch.round(bias / out_scale * 2**SHIFT).to(torch.int64)
            in_scale = out_scale
        for s, head in enumerate(self.heads):
            w, w_scale = quantize_weight(head.weight)
            tensors[f"head.{s}.weight"] = w.to(torch.int8)
            tensors[f"head.{s}.mult"] = torch.round(in_scale * w_scale * LOGIT_STEPS * 2**SHIFT).to(torch.int64)
            tensors[f"head.{s}.bias"] = torch.round(head.bias * LOGIT_STEPS * 2**SHIFT).to(torch.int64)
        return tensors


@torch.no_grad()
def prior_from_integer(cfg: PriorConfig, tensors: dict[str, torch.Tensor]) -> PriorNet:
    """A float PriorNet that computes what the integer network `tensors` computes (up to its
    rounding), to resume training from a shipped model when the training state is gone.

    The integer network fixes only the ratios of the layers' scales (ReLU commutes with
    positive scaling). Each layer's activation scale is chosen so that its integer peak (127)
    is ACT_PEAK in float, about the largest activation of a freshly initialised first layer: with
    tiny activations, Adam's first steps on the biases would switch every ReLU off."""
    net = PriorNet(cfg)
    for t, table in enumerate(net.embeddings):
        table.copy_(tensors[f"embed.{t}"].float() / EMBED_SCALE)
    in_scale = 1.0 / EMBED_SCALE
    for i, conv in enumerate(net.convs):
        weight, mult = tensors[f"conv.{i}.weight"].float(), tensors[f"conv.{i}.mult"].double()
        out_scale = ACT_PEAK / ACT_MAX
        # weight scale per output channel = mult * out_scale / (in_scale * 2**SHIFT)
        conv.weight.copy_(weight * (mult * out_scale / (in_scale * 2.0**SHIFT)).float().view(-1, 1, 1, 1))
        bias = tensors[f"conv.{i}.bias"].double() * out_scale * 2.0**-SHIFT
        if i == 0:
            net.stage_bias.copy_(bias.float())
        else:
            conv.bias.copy_(bias.float())
        net.act_scale[i] = out_scale
        in_scale = out_scale
    for s, head in enumerate(net.heads):
        mult = tensors[f"head.{s}.mult"].double()
        w_scale = mult / (in_scale * LOGIT_STEPS * 2.0**SHIFT)
        head.weight.copy_(tensors[f"head.{s}.weight"].float() * w_scale.float().view(-1, 1, 1, 1))
        head.bias.copy_((tensors[f"head.{s}.bias"].double() / (LOGIT_STEPS * 2.0**SHIFT)).float())
    return net


def exact_conv(
    x: torch.Tensor, weight: torch.Tensor, at: torch.Tensor | None = None, dilation: int = 1
) -> torch.Tensor:
    """Convolution ('same' padding, odd kernel, taps `dilation` apart) of integer-valued float32
    tensors as im2col + matmul: [B, O, h, w], or [B, O, N] at the N positions where the [h, w]
    mask `at` is set.

    A plain matrix product only multiplies and adds, so with all partial sums below 2**24 it
    is exact in any order; cuDNN/NNPACK convolutions may use Winograd or FFT transforms, which
    are not exact, so they are avoided here.
    """
    b, c, h, w = x.shape
    kh, kw = weight.shape[-2:]
    pad_h, pad_w = dilation * (kh // 2), dilation * (kw // 2)
    if kh * kw == 1:
        cols = x.reshape(b, c, h * w) if at is None else x[:, :, at]
    elif at is None:
        # The columns as one copy of a strided view of the padded input ([B, C, h, w, kh, kw],
        # in F.unfold's order): about twice as fast as F.unfold.
        patches = F.pad(x, (pad_w, pad_w, pad_h, pad_h)).unfold(2, 2 * pad_h + 1, 1).unfold(3, 2 * pad_w + 1, 1)
        patches = patches[..., ::dilation, ::dilation]
        cols = patches.permute(0, 1, 4, 5, 2, 3).reshape(b, c * kh * kw, -1)
    else:
        # Only the positions of `at`: one gather from the flattened padded input, by the flat
        # index of each kernel tap at each position (a boolean mask on the strided view above
        # took a sixth of the prior's time).
        rows, columns = at.nonzero(as_tuple=True)
        taps = torch.arange(kh * kw, device=x.device).view(-1, 1)
        # [kh kw, N], in F.unfold's order
        flat = (rows + taps // kw * dilation) * (w + 2 * pad_w) + columns + taps % kw * dilation
        padded = F.pad(x, (pad_w, pad_w, pad_h, pad_h)).flatten(2)
        cols = padded.index_select(2, flat.flatten()).reshape(b, c * kh * kw, -1)
    out = weight.reshape(weight.shape[0], -1).to(x.dtype) @ cols
    return out if at is not None else out.reshape(b, -1, h, w)


def rescale(acc: torch.Tensor, mult: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """floor((acc * mult + bias + 2**(SHIFT-1)) / 2**SHIFT) per channel ([B, O, ...]), as
    integer-valued float64.

    float64 is exact here, and much faster than int64 on CPUs: |acc| < 2**24 and
    |mult| < 2**MULT_BITS (both checked when the prior is built) keep every product and sum an
    integer below 2**53, and dividing by a power of two and flooring are exact.
    """
    shape = (1, -1) + (1,) * (acc.dim() - 2)
    # The division by 2**SHIFT moves into the constants: scaling by a power of two is exact, so
    # the fused multiply-add gives the same value, with one pass fewer over the accumulators.
    offset = ((bias.double() + 2.0 ** (SHIFT - 1)) * 2.0**-SHIFT).view(shape)
    return torch.addcmul(offset, acc.double(), (mult.double() * 2.0**-SHIFT).view(shape)).floor_()


class IntegerPrior:
    """The shipped prior: integer tensors only, same results on every device and thread count."""

    def __init__(self, cfg: PriorConfig, tensors: dict[str, torch.Tensor], device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        self.t = {k: v.to(self.device) for k, v in tensors.items()}
        self._check_bounds()
        # Integer-valued float32 copies of weights and embeddings for the matrix products (the
        # embeddings as one table, stage t's codes from row embed_offsets[t] on), float64 copies of
        # the rescaling constants and of the exp() table (its sums are exact too).
        self.f = {k: v.to(torch.float32) for k, v in self.t.items() if k.endswith("weight")}
        tables = [self.t[f"embed.{t}"] for t in range(cfg.num_stages)]
        self.f["embed"] = torch.cat(tables).to(torch.float32)
        sizes = torch.tensor([0] + [len(table) for table in tables[:-1]], device=self.device)
        self.embed_offsets = torch.cumsum(sizes, 0).view(1, -1, 1, 1)
        self.d = {k: v.double() for k, v in self.t.items() if k.endswith(("mult", "bias", "lut"))}

    def pass_map(self, h: int, w: int) -> torch.Tensor:
        return pass_map(h, w, self.device, self.cfg.schedule)

    def _check_bounds(self) -> None:
        """Refuse a prior whose accumulators could exceed float32's exact-integer range, or whose
        rescaling could exceed float64's."""
        for name, w in self.t.items():
            if name.endswith("weight"):
                worst = w.to(torch.int64).abs().flatten(1).sum(1).max().item() * ACT_MAX
                if worst >= EXACT_LIMIT:
                    raise ValueError(f"prior layer {name} could reach {worst}, above 2**24: not exact")
            if name.endswith("mult") and w.abs().max().item() >= 2**MULT_BITS:
                raise ValueError(f"prior multiplier {name} is above 2**{MULT_BITS}: not exact")
            if name.endswith("bias") and w.abs().max().item() >= 2**52:
                raise ValueError(f"prior bias {name} is above 2**52: not exact")

    def _inputs(self, indices: torch.Tensor, stage: int, decoded: torch.Tensor) -> torch.Tensor:
        """The first layer's inputs that change from pass to pass: the plane of stage `stage`
        where decoded, and the decoded mask ([h, w], or [B, h, w]: one per grid). The coarser
        stages' planes are the same in all four passes: see `coarser_sums`."""
        b, _, h, w = indices.shape
        plane = self.f["embed"][indices[:, stage] + self.embed_offsets[0, stage]]  # [B, h, w, E]
        plane = (plane * decoded.view(-1, h, w, 1)).permute(0, 3, 1, 2)
        return torch.cat([plane, (decoded * EMBED_SCALE).view(-1, 1, h, w).expand(b, 1, h, w)], 1)

    def coarser_sums(self, indices: torch.Tensor, stage: int) -> torch.Tensor | None:
        """The first layer's sums over the planes of the stages before `stage` ([B, hidden, h,
        w]; None at stage 0), the same in all four passes of `stage`: computed once a stage and
        given to `pmf`, not once a pass (they are most of the first layer's work at the finer
        stages). Integer sums below 2**24, so adding the pass's part to them is exact."""
        if stage == 0:
            return None
        b, _, h, w = indices.shape
        indices = indices.to(self.device)
        planes = self.f["embed"][indices[:, :stage] + self.embed_offsets[:, :stage]]  # [B, s, h, w, E]
        planes = planes.permute(0, 1, 4, 2, 3).reshape(b, -1, h, w)
        with _exact_matmuls():
            return exact_conv(planes, self._first_weights(stage)[0], dilation=self.cfg.dilation(0))

    def _first_weights(self, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first layer's weights split as its inputs are: those of the coarser stages'
        planes, and those of stage `stage`'s plane and the mask."""
        key = f"conv.0.weight.{stage}"
        if key not in self.f:
            w, e = self.f["conv.0.weight"], self.cfg.embed_dim
            self.f[key] = w[:, : stage * e].contiguous()
            self.f[key + ".pass"] = torch.cat([w[:, stage * e : (stage + 1) * e], w[:, -1:]], 1).contiguous()
        return self.f[key], self.f[key + ".pass"]

    def logits(
        self,
        indices: torch.Tensor,
        stage: int,
        pass_: int,
        at: torch.Tensor | None = None,
        coarser: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Integer logits [B, K_stage, h, w] (integer-valued float64, in 1/LOGIT_STEPS nat), or
        [B, K_stage, N] at the N positions where the [h, w] mask `at` is set. `coarser`: this
        stage's `coarser_sums` of `indices`, where the caller keeps them between passes."""
        indices = indices.to(self.device)
        if coarser is None:
            coarser = self.coarser_sums(indices, stage)
        with _exact_matmuls():
            decoded = (self.pass_map(*indices.shape[-2:]) < pass_).to(torch.float32)
            return self._head(self._hidden(indices, stage, decoded, coarser), stage, at, coarser)

    def _layer(
        self, x: torch.Tensor, i: int, stage: int, at: torch.Tensor | None = None, coarser: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Layer i's quantized ReLU output; the first layer adds the coarser stages' sums."""
        if i == 0:
            acc = exact_conv(x, self._first_weights(stage)[1], at, self.cfg.dilation(0))
            if coarser is not None:
                acc += coarser if at is None else coarser[:, :, at]
        else:
            acc = exact_conv(x, self.f[f"conv.{i}.weight"], at, self.cfg.dilation(i))
        bias = self.d[f"conv.{i}.bias"]
        bias = bias[stage] if i == 0 else bias
        return rescale(acc, self.d[f"conv.{i}.mult"], bias).clamp_(0, ACT_MAX).to(torch.float32)

    def _hidden(self, indices: torch.Tensor, stage: int, decoded: torch.Tensor, coarser: torch.Tensor | None):
        """The activations before the last convolution, at every position."""
        x = self._inputs(indices, stage, decoded)
        for i in range(self.cfg.layers - 1):
            x = self._layer(x, i, stage, coarser=coarser)
        return x

    def _head(self, x: torch.Tensor, stage: int, at: torch.Tensor | None, coarser: torch.Tensor | None) -> torch.Tensor:
        """The last convolution and the 1x1 output head, only where the pass needs them (a
        quarter of the positions) when `at` is given."""
        h, w = x.shape[-2:]
        x = self._layer(x, self.cfg.layers - 1, stage, at, coarser if self.cfg.layers == 1 else None)
        x = x.flatten(2) if at is None else x
        # Positions by codes ([B, N, K]), seen as [B, K, N]: `pmf` wants rows of codes, and
        # elementwise results keep this layout.
        acc = (x.transpose(1, 2) @ self.f[f"head.{stage}.weight"].flatten(1).t()).transpose(1, 2)
        out = rescale(acc, self.d[f"head.{stage}.mult"], self.d[f"head.{stage}.bias"])
        return out.reshape(*out.shape[:2], h, w) if at is None else out

    def pmf(self, indices: torch.Tensor, stage: int, pass_: int, coarser: torch.Tensor | None = None) -> np.ndarray:
        """Probabilities [N, K] (float64, rows sum to 1) for the positions of `pass_`.

        `indices` is [1, L, h, w]; positions are in row-major order of the pass's positions.
        `coarser`: as for `logits`.
        """
        at = self.pass_map(*indices.shape[-2:]) == pass_
        return self._probs(self.logits(indices, stage, pass_, at, coarser)[0])

    def stage_pmfs(self, indices: torch.Tensor, stage: int) -> list[np.ndarray]:
        """`pmf` of every pass of `stage`, for a grid whose indices are all known (the
        encoder's case). Small grids (an audio segment's) go through the network as one batch
        of four passes: the same integers as four `pmf` calls (every sum is exact in any
        order), in fewer, larger matrix products. Larger ones (a photo's) are faster pass by
        pass, their matrices already large; batched, they also outgrow the CPU's caches."""
        h, w = indices.shape[-2:]
        indices = indices.to(self.device)
        coarser = self.coarser_sums(indices, stage)
        if h * w > BATCHED_PASSES_MAX:
            return [self.pmf(indices, stage, pass_, coarser) for pass_ in range(NUM_PASSES)]
        passes = self.pass_map(h, w)
        decoded = torch.stack([passes < p for p in range(NUM_PASSES)]).to(torch.float32)
        with _exact_matmuls():
            x = self._hidden(indices.expand(NUM_PASSES, -1, -1, -1), stage, decoded, coarser)
            return [self._probs(self._head(x[p : p + 1], stage, passes == p, coarser)[0]) for p in range(NUM_PASSES)]

    def _probs(self, logits: torch.Tensor) -> np.ndarray:
        """Integer logits [K, N] -> probabilities [N, K]."""
        logits = logits.t()
        drop = (logits.amax(1, keepdim=True) - logits).clamp_(max=LOGIT_RANGE).long()
        weights = torch.take(self.d["lut"], drop)
        # Integer weights and an integer sum, then one correctly rounded division: identical
        # float64 probabilities everywhere.
        probs = weights.div_(weights.sum(1, keepdim=True)).cpu().numpy()
        # C order matters: constriction reads the buffer row by row, whatever the strides say.
        return np.ascontiguousarray(probs)


class _ExactMatmuls:
    """Reduced-precision matrix products (TF32, bf16) would break exactness: off while any
    thread is inside. The settings are process-wide, so threads that code at once share one
    switch: the first one in turns them off, the last one out restores them."""

    def __init__(self):
        self.lock, self.inside, self.saved = threading.Lock(), 0, (True, "highest")

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if not self.inside:
                self.saved = (torch.backends.cuda.matmul.allow_tf32, torch.get_float32_matmul_precision())
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.set_float32_matmul_precision("highest")
            self.inside += 1
        try:
            yield
        finally:
            with self.lock:
                self.inside -= 1
                if not self.inside:
                    torch.backends.cuda.matmul.allow_tf32 = self.saved[0]
                    torch.set_float32_matmul_precision(self.saved[1])


_exact_matmuls = _ExactMatmuls()
