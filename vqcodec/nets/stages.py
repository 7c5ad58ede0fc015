"""What a decoder is told of the codes it reads: how many stages coded each frame or position."""

from __future__ import annotations

import torch
from torch import nn


class StageModulation(nn.Module):
    """Scale and shift of features by embeddings of the stage count where each was coded, as
    Vocos conditions its layer norms on EnCodec's bandwidth: one decoder then reads coarse codes
    differently from fine ones. The embeddings start at zero, so a trained decoder grown with
    them computes what it did until they learn."""

    def __init__(self, stage_count: int, width: int):
        super().__init__()
        self.gain = nn.Embedding(stage_count + 1, width)
        self.shift = nn.Embedding(stage_count + 1, width)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.shift.weight)

    def forward(self, x: torch.Tensor, stages: torch.Tensor) -> torch.Tensor:
        """x [..., C] (channels last), stages [...] (the same leading shape)."""
        return x * (1 + self.gain(stages)) + self.shift(stages)
