"""The training loop shared by the image and audio VQ-VAEs: wall-clock budget, warm-up,
gradient clipping, JSONL log, and the full state saved every few minutes and on SIGTERM/Ctrl-C.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .weights import save_training_state


class StopFlag:
    """Set by SIGTERM/SIGINT so that the loop saves its state before exiting."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGTERM, self._set)
        signal.signal(signal.SIGINT, self._set)

    def _set(self, *_):
        self.stop = True


def train_loop(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    step: int,
    next_loss: Callable[[], tuple[torch.Tensor, Callable[[], dict]]],
    state_path: Path,
    log_path: Path,
    meta: dict,
    minutes: float,
    lr: float,
    warmup: int = 200,
    log_every: int = 50,
    save_every_s: float = 300,
) -> int:
    """Run optimisation steps for `minutes`; `next_loss()` gives (loss, a function returning the
    values to log). Returns the step count reached, the state being saved."""
    stop = StopFlag()
    model.train()
    t_end = time.time() + minutes * 60
    t_save = time.time() + save_every_s
    t_log, steps_since_log = time.time(), 0
    while time.time() < t_end and not stop.stop:
        loss, log_values = next_loss()
        for group in optimizer.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / warmup)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        steps_since_log += 1
        if step % log_every == 0:
            with torch.no_grad():
                record = {"step": step, "time": time.time(), "loss": loss.item(), **log_values()}
            record["steps_per_s"] = steps_since_log / (time.time() - t_log)
            t_log, steps_since_log = time.time(), 0
            with open(log_path, "a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
        if time.time() > t_save:
            save_training_state(state_path, model, optimizer, {**meta, "step": step})
            t_save = time.time() + save_every_s
    save_training_state(state_path, model, optimizer, {**meta, "step": step})
    print(f"saved {state_path} at step {step}")
    return step


def stages_per_sample(batch: int, levels: int, full_rate_prob: float) -> torch.Tensor:
    """Quantizer dropout: each sample is reconstructed from its first n stages, n = all stages
    with probability `full_rate_prob`, else uniform in 1..levels (so every rate is trained)."""
    stages = torch.randint(1, levels + 1, (batch,))
    stages[torch.rand(batch) < full_rate_prob] = levels
    return stages
