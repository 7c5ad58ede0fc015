"""The training loop shared by the image and audio VQ-VAEs: wall-clock budget, warm-up,
gradient clipping, JSONL log, and the full state saved every few minutes and on SIGTERM/Ctrl-C.

Runs on the CPU, on one CUDA GPU, or as one rank of a `torchrun` job (PyTorch's distributed
data parallel: gloo between CPU processes, NCCL between GPUs); then each rank draws its own
batches, gradients are averaged by DDP, and rank 0 alone writes the log and the state.
"""

from __future__ import annotations

import functools
import json
import math
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from vqcodec.errors import UsageError
from vqcodec.quantizer import ResidualVQ
from vqcodec.weights import config_from_dict, load_tensors, load_training_state, save_training_state


class CacheFiles:
    """The files of a training run's cache folder, named in one place."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.vqvae_state = self.root / "vqvae_state.safetensors"  # weights, Adam moments, step, seconds
        self.vqvae_log = self.root / "vqvae_log.jsonl"  # a line every log_every steps
        self.vqvae_eval = self.root / "vqvae_eval.jsonl"  # the held-out evaluation at every save
        self.discriminator_state = self.root / "discriminator_state.safetensors"  # adversarial training
        self.prior_grids = self.root / "prior_grids.safetensors"  # the VQ-VAE's index grids the prior learns
        self.prior_state = self.root / "prior_state.safetensors"
        self.prior_log = self.root / "prior_log.jsonl"


class StopFlag:
    """Set by SIGTERM/SIGINT so that the loop saves its state before exiting."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.stop = True


@functools.cache
def native_bf16(device_type: str) -> bool:
    """Whether such a device computes bfloat16 natively: CUDA GPUs, and CPUs with AVX-512 BF16
    or AMX (elsewhere torch emulates it, slower than float32). Asked once, not every step."""
    return device_type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    rank: int = 0
    world: int = 1
    mixed_precision: bool = True

    @property
    def main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model as the training step should call it (DDP across ranks)."""
        if self.world == 1:
            return model
        ids = [self.device.index] if self.device.type == "cuda" else None
        # Buffers (codebooks, EMA statistics) are kept identical by the quantizer itself.
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, broadcast_buffers=False)

    def autocast(self):
        """bfloat16 mixed precision where the device computes it natively (the quantizer and the
        losses stay in float32). On this project's CPU (AVX-512 BF16) an image training step
        takes half the time it takes in float32."""
        enabled = self.mixed_precision and native_bf16(self.device.type)
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def finish(self) -> None:
        if self.world > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def setup_runtime(device: str = "auto", mixed_precision: bool = True) -> Runtime:
    """One process on the CPU or a GPU, or one rank of a `torchrun` job (WORLD_SIZE > 1);
    `mixed_precision`: bfloat16 where the device computes it natively (`Runtime.autocast`)."""
    cuda = device != "cpu" and torch.cuda.is_available()
    if device == "cuda" and not cuda:
        raise UsageError("device cuda: no CUDA GPU is available")
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Runtime(torch.device("cuda" if cuda else "cpu"), mixed_precision=mixed_precision)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    local = int(os.environ.get("LOCAL_RANK", "0"))
    where = torch.device("cuda", local) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(where)
    return Runtime(where, dist.get_rank(), dist.get_world_size(), mixed_precision)


class _StepBatches(torch.utils.data.Dataset):
    """Item n is the batch drawn with seed n, so that any worker process can make any step's batch."""

    def __init__(self, sampler, batch: int):
        self.sampler, self.batch = sampler, batch

    def __len__(self) -> int:
        return 1 << 62

    def __getitem__(self, seed: int) -> torch.Tensor:
        return self.sampler.sample(self.batch, seed)


def batch_stream(sampler, batch: int, first_step: int, runtime: Runtime, workers: int | None = None):
    """This rank's batches for steps first_step, first_step + 1, ... (seed step * world + rank),
    made by `workers` processes ahead of the training step (0: in this process; by default
    none on the CPU, where they would compete with training, and up to 8 beside a GPU)."""
    if workers is None:
        workers = min(8, (os.cpu_count() or 1) - 1) if runtime.device.type == "cuda" else 0
    seeds = range(first_step * runtime.world + runtime.rank, 1 << 62, runtime.world)
    if workers <= 0:
        return (sampler.sample(batch, seed) for seed in seeds)
    loader = torch.utils.data.DataLoader(
        _StepBatches(sampler, batch),
        batch_size=None,
        sampler=seeds,
        num_workers=workers,
        prefetch_factor=4,
        pin_memory=runtime.device.type == "cuda",
    )
    return iter(loader)


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    next_loss: Callable[[int], tuple[torch.Tensor, Callable[[], dict]]],
    state_path: Path,
    log_path: Path,
    meta: dict,
    minutes: float,
    lr: float,
    warmup: int = 200,
    anneal: bool = False,
    log_every: int = 50,
    save_every_s: float = 300,
    max_steps: int | None = None,
    runtime: Runtime | None = None,
    validate: Callable[[], dict] | None = None,
    evaluate: Callable[[], dict] | None = None,
    on_save: Callable[[], None] | None = None,
) -> int:
    """Run optimisation steps for `minutes` (or up to `max_steps`); `next_loss(step)` gives
    (loss, a function returning the values to log). Returns the step count reached, the state
    being saved.

    Every random draw of step n comes from generators seeded with n (torch here, the data
    samplers from the step they are given), so a resumed run makes exactly the steps an
    uninterrupted run would have made. With `anneal`, the learning rate instead falls from `lr`
    to a tenth along a cosine over this run's minutes (or steps up to `max_steps`): a final
    phase, which depends on the clock, and restarts at `lr` if interrupted. `validate()` gives
    held-out metrics for each log line; a progress bar shows them on a terminal. `evaluate()`
    gives the slower held-out metrics written to the evaluation log (beside `log_path`,
    `*_eval.jsonl`) at every save, with the training minutes of all runs so far
    (`meta["train_seconds"]`: those before this run, as `resume_vqvae` found them).
    `on_save()` saves what else the step trains (a discriminator) with the state."""
    runtime = runtime or Runtime(torch.device("cpu"))
    stop = StopFlag()
    model.train()
    t_start, step_start = time.time(), step
    seconds_before = meta.get("train_seconds", 0.0)
    eval_path = CacheFiles(log_path.parent).vqvae_eval

    def save() -> None:
        trained = seconds_before + time.time() - t_start
        save_training_state(state_path, model, optimizer, {**meta, "step": step, "train_seconds": trained})
        if on_save:
            on_save()
        if evaluate:
            record = {"step": step, "time": time.time(), "train_minutes": round(trained / 60, 2), **evaluate()}
            with open(eval_path, "a") as f:
                f.write(json.dumps(record) + "\n")

    t_end = t_start + minutes * 60
    t_save = time.time() + save_every_s
    t_log, steps_since_log = time.time(), 0
    bar = tqdm(total=max_steps, initial=step, unit="step", disable=not (runtime.main and sys.stderr.isatty()))

    def go_on() -> bool:
        more = time.time() < t_end and not stop.stop and (max_steps is None or step < max_steps)
        if runtime.world > 1:  # every rank stops at the same step
            flag = torch.tensor([0 if more else 1], device=runtime.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            more = not flag.item()
        return more

    def annealed(step: int) -> float:
        if max_steps is not None:
            progress = (step - step_start) / max(max_steps - step_start, 1)
        else:
            progress = (time.time() - t_start) / max(t_end - t_start, 1e-9)
        return 0.1 + 0.45 * (1 + math.cos(math.pi * min(progress, 1.0)))

    # A fresh optimizer (a new run, or one resumed from compact weights without Adam's moments)
    # and the annealed phase warm up from this run's first step: the first Adam steps are the
    # largest, and from trained weights a full-size one undoes minutes of training (measured:
    # img2 resumed from its checkpoint fell from 27.8 to 24.9 dB in 3 steps, with the warm-up
    # 27.95). A run resumed from its full state goes on.
    warm_from = step_start if anneal or not optimizer.state else 0
    spikes = SpikeGuard(runtime)
    while go_on():
        torch.manual_seed(step * runtime.world + runtime.rank)
        loss, log_values = next_loss(step)
        for group in optimizer.param_groups:
            warm = min(1.0, (step - warm_from + 1) / warmup)
            group["lr"] = lr * warm * (annealed(step) if anneal else 1.0)
        optimizer.zero_grad(set_to_none=True)
        if not spikes.skip(loss):
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
        step += 1
        steps_since_log += 1
        bar.update()
        if step % log_every == 0 and runtime.main:
            with torch.no_grad():
                record = {"step": step, "time": time.time(), "loss": loss.item(), **log_values()}
                record["skipped_steps"] = spikes.skipped
                if validate:
                    model.eval()
                    record.update(validate())
                    model.train()
            record["steps_per_s"] = steps_since_log / (time.time() - t_log)
            t_log, steps_since_log = time.time(), 0
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix({k: round(v, 3) for k, v in record.items() if k.startswith(("loss", "val_"))})
            if bar.disable:
                print(json.dumps(record), flush=True)
        if time.time() > t_save:
            if runtime.main:
                save()
            t_save = time.time() + save_every_s
    bar.close()
    if runtime.main:
        save()
        print(f"saved {state_path} at step {step}")
    return step


class SpikeGuard:
    """Skips the update of a step whose loss is not finite, or SPIKE times the median of the
    last accepted ones: img2's run once went from a loss of 0.006 to 10 within 50 steps
    (27 to 6 dB) and took 300 steps to recover. At most MAX_IN_ROW steps in a row are skipped,
    so that a model that really moved trains on. Every rank of a distributed run skips the
    same steps."""

    SPIKE, WINDOW, MAX_IN_ROW = 10.0, 50, 5

    def __init__(self, runtime: Runtime):
        self.runtime, self.recent, self.in_row, self.skipped = runtime, [], 0, 0

    def skip(self, loss: torch.Tensor) -> bool:
        value = loss.item()
        spike = not math.isfinite(value) or (
            len(self.recent) >= self.WINDOW // 2 and value > self.SPIKE * sorted(self.recent)[len(self.recent) // 2]
        )
        spike = spike and self.in_row < self.MAX_IN_ROW
        if self.runtime.world > 1:
            flag = torch.tensor([float(spike)], device=self.runtime.device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            spike = bool(flag.item())
        if spike:
            self.in_row, self.skipped = self.in_row + 1, self.skipped + 1
            return True
        self.in_row = 0
        self.recent = (self.recent + [value])[-self.WINDOW :]
        return False


OFFERED_SHARE = 0.75  # share of the samples that quantizer dropout gives to the offered stage counts


def stages_per_sample(batch: int, levels: int, full_rate_prob: float, offered: tuple[int, ...] = ()) -> torch.Tensor:
    """Quantizer dropout: each sample is reconstructed from its first n stages, n = all stages
    with probability `full_rate_prob`, else uniform in 1..levels (so every rate is trained).

    With `offered` stage counts (the rates the command line offers), n is one of them, equally
    often, for a share OFFERED_SHARE of the samples and uniform in 1..levels for the rest: uniform draws alone
    give each offered low rate only 1/(2 * levels) of the training.
    """
    stages = torch.randint(1, levels + 1, (batch,))
    if offered:
        choice = torch.tensor(offered)[torch.randint(0, len(offered), (batch,))]
        return torch.where(torch.rand(batch) < OFFERED_SHARE, choice, stages)
    stages[torch.rand(batch) < full_rate_prob] = levels
    return stages


def resume_vqvae(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    state_path: Path,
    init_weights: Path | None,
    start_from: Path | None = None,
) -> tuple[int, float]:
    """Load the full training state if there is one, else the compact shipped weights (with a
    fresh optimizer, so training survives a lost cache), else start a new run from the layers of
    another model (`start_from`); returns the step reached and the training seconds that made it."""
    if state_path.exists():
        meta = load_training_state(state_path, model, optimizer)
        print(f"resumed from {state_path} at step {meta['step']}")
        return meta["step"], meta.get("train_seconds", 0.0)
    if init_weights is not None:
        tensors, meta = load_tensors(init_weights)
        widened = load_grown(model, {k[6:]: v.float() for k, v in tensors.items() if k.startswith("vqvae.")})
        model.quantizer.restart_statistics()
        step = meta.get("vqvae_steps", 0)
        grown = f", {widened} tensors widened" if widened else ""
        print(f"started from shipped weights {init_weights} (step {step}, fresh optimizer{grown})")
        return step, meta.get("vqvae_train_seconds", 0.0)
    if start_from is not None:
        print(f"new run: {start_layers(model, start_from)} tensors from {start_from}, new codebooks")
    return 0, 0.0


def start_layers(model: torch.nn.Module, source: Path) -> int:
    """Copy into `model`'s encoder and decoder the tensors of the model file `source` that have
    the same names and shapes (a model grown from it: `ImageNetConfig.coarse_width`), and return
    their count. The codebooks are not taken: they quantize other latents, and the quantizer's
    k-means starts them from the first batch."""
    tensors, _ = load_tensors(source)
    own = model.state_dict()
    shared = [n for n in own if n.startswith(("encoder.", "decoder.")) and f"vqvae.{n}" in tensors]
    taken = {n: tensors[f"vqvae.{n}"].float() for n in shared if tensors[f"vqvae.{n}"].shape == own[n].shape}
    model.load_state_dict(taken, strict=False)
    return len(taken)


def load_grown(model: torch.nn.Module, tensors: dict[str, torch.Tensor]) -> int:
    """Load `tensors` (a trained model's) into `model`, which may have more channels in some
    layers (`AudioNetConfig.decoder_widths`) or a wider latent (`latent_dim`), and return how
    many tensors were widened.

    Net2net: a widened layer's channel j is a copy of the trained layer's channel j mod C, and
    the layers that read those channels share each trained input weight among its copies, so
    the grown model computes exactly what the trained one did. The shares are unequal (a
    tenth apart), or the copies would receive the same gradients and stay copies for ever. A
    codebook's vectors are points of the latent space: their coordinates are copied as the
    encoder's outputs are, so every latent keeps its nearest code (each distance doubles).
    Tensors `model` lacks are ignored, and those only `model` has keep their initial values.
    """
    own = model.state_dict()
    layers = dict(model.named_modules())
    loaded, widened = {}, 0
    for name, tensor in tensors.items():
        if name not in own:
            continue
        if tensor.shape != own[name].shape:
            layer = layers[name.rpartition(".")[0]]
            if isinstance(layer, ResidualVQ):
                tensor = tensor.index_select(1, torch.arange(own[name].shape[1]) % tensor.shape[1])
            else:
                transposed = isinstance(layer, (nn.ConvTranspose1d, nn.ConvTranspose2d))
                tensor = _widened(tensor, own[name].shape, transposed, name)
            widened += 1
        loaded[name] = tensor
    model.load_state_dict(loaded, strict=False)
    return widened


def _widened(tensor: torch.Tensor, shape: torch.Size, transposed: bool, name: str) -> torch.Tensor:
    """`tensor` of a trained layer grown to `shape`: its output channels copied, its input
    channels (dimension 0 of a transposed convolution's weight, else 1) copied and shared."""
    if tensor.dim() != len(shape) or any(new < old for new, old in zip(shape, tensor.shape, strict=True)):
        raise ValueError(f"{name}: cannot grow {tuple(tensor.shape)} to {tuple(shape)}")
    if tensor.dim() > 2 and tensor.shape[2:] != shape[2:]:
        raise ValueError(f"{name}: a kernel of {tuple(tensor.shape[2:])} cannot become {tuple(shape[2:])}")
    input_dim = (0 if transposed else 1) if tensor.dim() > 1 else None
    for dim in range(min(tensor.dim(), 2)):
        old, new = tensor.shape[dim], shape[dim]
        tensor = tensor.index_select(dim, torch.arange(new) % old)
        if dim == input_dim:
            tensor = tensor * _shares(old, new).view(-1, *[1] * (tensor.dim() - dim - 1))
    return tensor


def _shares(old: int, new: int) -> torch.Tensor:
    """For channel j of `new` copying channel j mod `old`: its share of that channel's weight.
    Each channel's shares sum to 1; copy r of n gets (1 + 0.1 (r - (n - 1) / 2)) / n."""
    j = torch.arange(new)
    copy, count = j // old, (new - 1 - j % old) // old + 1
    return (1 + 0.1 * (copy - (count - 1) / 2)) / count


def load_trained_vqvae(cache: Path, kind: str, init_weights: Path | None = None):
    """(VQ-VAE in eval mode, step) from the training state in `cache`, else from shipped weights."""
    from vqcodec.registry import VQVAE_KINDS

    vqvae_class, cfg_class = VQVAE_KINDS[kind]
    state_path = CacheFiles(cache).vqvae_state
    if state_path.exists():
        tensors, meta = load_tensors(state_path)
        model = vqvae_class(config_from_dict(cfg_class, meta["config"]))
        model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        return model.eval(), meta["step"]
    if init_weights is None:
        raise FileNotFoundError(f"no VQ-VAE training state in {cache} and no weights given")
    tensors, meta = load_tensors(init_weights)
    model = vqvae_class(config_from_dict(cfg_class, meta["net"]))
    model.load_state_dict({k[6:]: v.float() for k, v in tensors.items() if k.startswith("vqvae.")}, strict=False)
    return model.eval(), meta.get("vqvae_steps", 0)


def save_checkpoint(cache: Path, out: Path) -> tuple[int, float]:
    """Compact resumable weights of the VQ-VAE training run in `cache`, to commit: the weights
    and codebooks in fp16 (no optimizer, no EMA statistics) with their step and the training
    seconds of all runs (`train -o OUT` resumes from them when the cache is gone), and beside
    them OUT.eval.jsonl, the run's evaluations merged by step with those already there, so
    that the curve spans every session. Returns (step, seconds)."""
    from vqcodec.registry import save_model
    from vqcodec.weights import read_meta

    meta = read_meta(CacheFiles(cache).vqvae_state)
    kind = "audio" if "strides" in meta["config"] else "image"
    vqvae, step = load_trained_vqvae(cache, kind)
    seconds = meta.get("train_seconds", 0.0)
    save_model(out, out.stem, vqvae, None, {"vqvae_steps": step, "vqvae_train_seconds": round(seconds)})
    log = out.with_suffix(".eval.jsonl")
    records = {}
    for path in (log, CacheFiles(cache).vqvae_eval):
        for line in path.read_text().splitlines() if path.exists() else []:
            record = json.loads(line)
            records[record["step"]] = record
    log.write_text("".join(json.dumps(records[s]) + "\n" for s in sorted(records)))
    return step, seconds


def plot_curves(cache: Path, path: Path) -> None:
    """A PNG of the training curves in `cache` (the VQ-VAE's losses, the prior's bits per index)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = {}
    for name in ("vqvae", "prior"):
        log_path = cache / f"{name}_log.jsonl"
        logs[name] = [json.loads(line) for line in open(log_path)] if log_path.exists() else []
    keys = [
        k
        for k in ("loss", "psnr_full_rate", "val_psnr", "mel", "val_mel")
        if any(r.get(k) is not None for r in logs["vqvae"])
    ]
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4.5 * (len(keys) + 1), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        points = [(r["step"], r[key]) for r in logs["vqvae"] if r.get(key) is not None]
        ax.plot(*zip(*points, strict=True), lw=0.8)
        ax.set_title(f"VQ-VAE: {key}")
        ax.set_xlabel("step")
    prior_points = [(i, r["bits"]) for i, r in enumerate(logs["prior"])]
    if prior_points:
        axes[0, -1].plot(*zip(*prior_points, strict=True), lw=0.8)
    axes[0, -1].set_title("prior: bits per index (log lines, all runs)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
