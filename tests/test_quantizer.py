import itertools

import torch

from vqcodec import quantizer
from vqcodec.quantizer import ResidualVQ


def _quantizer(stages: int = 3, codes: int = 8, dim: int = 4) -> ResidualVQ:
    torch.manual_seed(0)
    rvq = ResidualVQ(dim, (codes,) * stages)
    for s in range(stages):  # each stage finer than the one before, as after training
        rvq.codebook(s).copy_(torch.randn(codes, dim) * 0.5**s)
    return rvq


def _errors(rvq: ResidualVQ, latents: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    return (rvq.decode(indices) - latents).pow(2).sum(1).flatten()


def test_greedy_code_takes_the_nearest_code_at_each_stage():
    rvq = _quantizer()
    latents = torch.randn(2, 4, 3, 5)
    indices = rvq.encode(latents, 3)
    residual = latents.permute(0, 2, 3, 1).reshape(-1, 4)
    for s in range(3):
        nearest = torch.cdist(residual, rvq.codebook(s)).argmin(1)
        assert torch.equal(indices.permute(0, 2, 3, 1).reshape(-1, 3)[:, s], nearest)
        residual = residual - rvq.codebook(s)[nearest]


def test_beam_search_never_loses_to_greedy_and_finds_the_best_code_when_wide():
    rvq = _quantizer()
    latents = torch.randn(2, 4, 3, 5)
    greedy, beam = rvq.encode(latents, 3), rvq.encode(latents, 3, beam=4)
    assert (_errors(rvq, latents, beam) <= _errors(rvq, latents, greedy) + 1e-6).all()
    assert _errors(rvq, latents, beam).sum() < _errors(rvq, latents, greedy).sum()
    # A beam as wide as all the codes is an exhaustive search.
    exhaustive = rvq.encode(latents, 3, beam=8**3)
    flat = latents.permute(0, 2, 3, 1).reshape(-1, 4)
    every_code = torch.stack(
        [sum(rvq.codebook(s)[i] for s, i in enumerate(combo)) for combo in itertools.product(range(8), repeat=3)]
    )
    best = torch.cdist(flat, every_code).pow(2).min(1).values
    assert torch.allclose(_errors(rvq, latents, exhaustive), best, atol=1e-5)


def test_stages_past_the_searched_ones_continue_greedily(monkeypatch):
    rvq = _quantizer(stages=4)
    latents = torch.randn(1, 4, 2, 6)
    monkeypatch.setattr(quantizer, "SEARCHED_STAGES", 2)
    indices = rvq.encode(latents, 4, beam=4)
    head = rvq.encode(latents, 2, beam=4)
    assert torch.equal(indices[:, :2], head)
    residual = latents - rvq.decode(head)
    tail = ResidualVQ(4, (8, 8))
    for s in range(2):
        tail.codebook(s).copy_(rvq.codebook(2 + s))
    assert torch.equal(indices[:, 2:], tail.encode(residual, 2))


def test_an_empty_grid_encodes_to_no_indices():
    rvq = _quantizer()
    for beam in (1, 4):
        assert rvq.encode(torch.zeros(1, 4, 1, 0), 3, beam=beam).shape == (1, 3, 1, 0)
