"""Training of the prior on index grids (images or audio): float, then quantization-aware, then
exported as the integer network that files are coded with."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from vqcodec.prior import NUM_PASSES, IntegerPrior, PriorConfig, PriorNet, pass_map, prior_from_integer
from vqcodec.quantizer import SEARCH_BEAM, SEARCHED_STAGES
from vqcodec.registry import save_model, tensors_hash, training_only
from vqcodec.train.loop import CacheFiles, StopFlag, plot_curves
from vqcodec.weights import (
    config_from_dict,
    load_tensors,
    load_training_state,
    read_meta,
    save_tensors,
    save_training_state,
)


def _resolved(value: object) -> str:
    return str(Path(value).resolve()) if isinstance(value, Path) else str(value)


def cached_grids(
    path: Path, vqvae: torch.nn.Module, inputs: dict, build: Callable[[], tuple[torch.Tensor, torch.Tensor]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The (training, held-out) index grids that `build` makes, kept in `path` (safetensors) and
    reused while the VQ-VAE's codes (`codes_hash`) and the `inputs` (data files and settings,
    anything JSON can write) are the same: building them can take longer (20-45 minutes for the
    audio model on 2 CPU cores) than a short prior run."""
    key = {
        "codes": codes_hash(vqvae),
        "search": [SEARCH_BEAM, SEARCHED_STAGES],  # the index sets are the encoders' searched codes
        # paths resolved: the same files, however the data folder was spelled
        "inputs": hashlib.sha256(json.dumps(inputs, default=_resolved, sort_keys=True).encode()).hexdigest(),
    }
    if path.exists():
        tensors, meta = load_tensors(path)
        if meta == key and tensors.keys() == {"grids", "val"}:
            print(f"index grids from {path}")
            return tensors["grids"], tensors["val"]
    grids, val = build()
    save_tensors(path, {"grids": grids, "val": val}, key)
    return grids, val


def codes_hash(vqvae: torch.nn.Module) -> str:
    """What the indices depend on: the encoder's weights and the codebooks; not the decoder, which
    trains on while they are frozen (`train.frozen`), nor the quantizer's training statistics."""
    state = vqvae.state_dict()
    codes = {k: v for k, v in state.items() if k.startswith(("encoder.", "quantizer.")) and not training_only(k)}
    return tensors_hash(codes).hex()


def prior_bits(prior: PriorNet, grids: torch.Tensor) -> list[float]:
    """Mean bits per index of each stage under the float/fake-quantized network."""
    bits = []
    device = prior.act_scale.device
    grids = grids.to(device)
    with torch.no_grad():
        for stage in range(prior.cfg.num_stages):
            total = 0.0
            for pass_ in range(NUM_PASSES):
                at = pass_map(*grids.shape[-2:], device, prior.cfg.schedule) == pass_
                logits = prior(grids.long(), stage, pass_)
                nll = F.cross_entropy(logits, grids[:, stage].long(), reduction="none")
                total += nll[:, at].sum().item()
            bits.append(total / math.log(2) / (grids.shape[0] * grids.shape[-1] * grids.shape[-2]))
    return bits


def integer_prior_bits(tensors: dict[str, torch.Tensor], cfg: PriorConfig, grids: torch.Tensor) -> list[float]:
    """Mean bits per index of each stage under the exported integer prior (what files cost)."""
    prior = IntegerPrior(cfg, tensors)
    passes = pass_map(*grids.shape[-2:], schedule=prior.cfg.schedule)
    bits = []
    for stage in range(cfg.num_stages):
        total = 0.0
        for grid in grids.long():
            for pass_, probs in enumerate(prior.stage_pmfs(grid[None], stage)):
                symbols = grid[stage][passes == pass_].numpy()
                total -= np.log2(probs[np.arange(len(symbols)), symbols]).sum()
        bits.append(total / (grids.shape[0] * grids.shape[-1] * grids.shape[-2]))
    return bits


def shipped_prior(weights: Path | None, cfg: PriorConfig) -> dict[str, torch.Tensor] | None:
    """The integer prior stored in a model file, if it has this configuration (else None)."""
    if weights is None:
        return None
    tensors, meta = load_tensors(weights)
    if "prior" not in meta or config_from_dict(PriorConfig, meta["prior"]) != cfg:
        return None
    return {k[6:]: v for k, v in tensors.items() if k.startswith("prior.")}


def start_from_shipped(cfg: PriorConfig, init: dict[str, torch.Tensor], val: torch.Tensor) -> PriorNet:
    """The shipped integer prior `init` as a float network to train on, unless it codes the
    held-out grids `val` in more than log2(K) bits per index: once the VQ-VAE has trained on,
    its codes can mean other things, and a confidently wrong prior trains worse than a new one."""
    prior = prior_from_integer(cfg, init)
    bits = sum(prior_bits(prior, val)) / cfg.num_stages
    uniform = sum(math.log2(k) for k in cfg.codebook_sizes) / cfg.num_stages
    if bits >= uniform:
        print(f"the shipped prior does not fit these indices ({bits:.2f} bits per index, log2 K {uniform:.2f})")
        return PriorNet(cfg)
    print(f"prior warm-started from the shipped integer prior ({bits:.2f} bits per index)")
    return prior


def train_prior(
    grids: torch.Tensor,
    val: torch.Tensor,
    cfg: PriorConfig,
    cache: Path,
    minutes: float,
    qat_fraction: float = 0.3,
    batch: int = 32,
    lr: float = 2e-3,
    log_every: int = 50,
    device: torch.device | str = "cpu",
    init: dict[str, torch.Tensor] | None = None,
) -> tuple[PriorNet, dict]:
    """Train the prior on index grids [N, L, h, w] of the frozen VQ-VAE: float first,
    fake-quantized for the last `qat_fraction` of the time.

    Warm-starts from the cached training state (its step count goes on), else from `init` (a
    shipped integer prior of the same configuration) where that fits the grids. Returns the
    trained network and a report with bits per index of the float network (before
    quantization-aware training) and of the exported integer network, on the held-out `val`.
    """
    cfg.check_exact()  # before any training, not at export
    cache.mkdir(parents=True, exist_ok=True)
    log_path = CacheFiles(cache).prior_log
    prior, first_step = PriorNet(cfg), 0
    state_path = CacheFiles(cache).prior_state
    if state_path.exists():  # warm start from the last run (the VQ-VAE may have moved on since)
        first_step = load_training_state(state_path, prior, None).get("steps", 0)
        print(f"prior warm-started from {state_path} (step {first_step})")
    elif init is not None:
        prior = start_from_shipped(cfg, init, val)
    prior.to(device)
    optimizer = torch.optim.Adam(prior.parameters(), lr=lr)
    stop = StopFlag()
    t_start = time.time()
    t_end, t_qat = t_start + minutes * 60, t_start + minutes * 60 * (1 - qat_fraction)
    report: dict = {}
    step = first_step
    gen = torch.Generator().manual_seed(first_step)
    while time.time() < t_end and not stop.stop:
        if not prior.quantized and time.time() > t_qat:
            report["float_bits_per_index"] = prior_bits(prior, val)
            prior.calibrate(grids[:16].long().to(device))
            prior.quantized = True
            for g in optimizer.param_groups:
                g["lr"] = lr / 10
        if not prior.quantized:  # linear decay to a tenth over the float phase
            progress = (time.time() - t_start) / max(t_qat - t_start, 1e-9)
            for g in optimizer.param_groups:
                g["lr"] = lr * (1 - 0.9 * min(progress, 1.0))
        pick = torch.randint(0, grids.shape[0], (batch,), generator=gen)
        sub = grids[pick].long().to(device)
        loss = 0.0
        for part in sub.chunk(4):
            stage = int(torch.randint(0, cfg.num_stages, (1,), generator=gen))
            pass_ = int(torch.randint(0, NUM_PASSES, (1,), generator=gen))
            at = pass_map(*part.shape[-2:], device, cfg.schedule) == pass_
            logits = prior(part, stage, pass_)
            nll = F.cross_entropy(logits, part[:, stage], reduction="none")[:, at]
            loss = loss + nll.mean() / 4
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(prior.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % log_every == 0:
            rec = {"step": step, "bits": loss.item() / math.log(2), "quantized": prior.quantized}
            with open(log_path, "a") as f:
                f.write(json.dumps(rec) + "\n")
            print(json.dumps(rec), flush=True)
    if not prior.quantized:  # too short a run for a QAT phase: quantize after training
        report["float_bits_per_index"] = prior_bits(prior, val)
        prior.calibrate(grids[:16].long().to(device))
        prior.quantized = True
    prior.cpu()
    save_training_state(state_path, prior, optimizer, {"steps": step, "config": asdict(cfg)})
    report["integer_bits_per_index"] = integer_prior_bits(prior.to_integer(), cfg, val)
    report["qat_bits_per_index"] = prior_bits(prior, val)
    report["steps"] = step
    return prior, report


def export_model(
    out: Path, name: str, vqvae, prior: PriorNet, report: dict, cache: Path, vqvae_steps: int, data_meta: dict
) -> dict:
    """Write the model file, its .json training report (with the VQ-VAE curve) and its curves
    PNG; returns the report."""
    log_path = CacheFiles(cache).vqvae_log
    log = [json.loads(line) for line in open(log_path)] if log_path.exists() else []
    state = CacheFiles(cache).vqvae_state
    seconds = read_meta(state).get("train_seconds") if state.exists() else None
    meta = {"prior": asdict(prior.cfg), "vqvae_steps": vqvae_steps, "prior_steps": report["steps"], **data_meta}
    if seconds is not None:  # the VQ-VAE's training time, all runs so far
        meta["vqvae_train_seconds"] = round(seconds)
    save_model(out, name, vqvae, prior.to_integer(), meta)
    card = {
        **meta,
        "net": asdict(vqvae.cfg),
        "hardware": f"{torch.get_num_threads()} CPU threads, torch {torch.__version__}",
        "prior_report": report,
        "vqvae_curve": log[:: max(1, len(log) // 200)],
    }
    out.with_suffix(".json").write_text(json.dumps(card, indent=1))
    plot_curves(cache, out.with_suffix(".curves.png"))
    return card
