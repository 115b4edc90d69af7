"""Pooling must carry what only the neighbours know.

A network of pairs, 10 km apart: in each pair a follower 500 m downstream repeats its source's series
``LAG`` steps later, so the follower's next ``LAG`` values are the source's last ``LAG`` values, while its
own history (the source's older past, white noise) says nothing about them. Only followers are scored.
"""

from __future__ import annotations

import functools

import pytest
import torch

from core.api import Batch
from core.metrics import masked_mae
from core.model import Forecaster
from core.recipe import HeadConfig
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder
from plugins.pooling.none import NoPooling
from tests.conftest import make_spec
from tests.test_pooling import ALL_STRATEGIES

PAIRS, LAG, HISTORY, STEPS = 8, 3, 6, 1600


def network(seed: int = 0):
    sources = torch.randn(STEPS, PAIRS, generator=torch.Generator().manual_seed(seed))
    followers = torch.roll(sources, LAG, 0)
    series = torch.stack([sources, followers], 2).reshape(STEPS, 2 * PAIRS)  # source, follower, source, ...
    x = torch.arange(PAIRS, dtype=torch.float32).repeat_interleave(2) * 10_000 + torch.tensor([0.0, 500.0]).repeat(
        PAIRS
    )
    positions = torch.stack([x, torch.zeros_like(x)], 1)
    return series, make_spec(n=2 * PAIRS, positions=positions, history=HISTORY, horizon=LAG)


def batch(series: torch.Tensor, starts: torch.Tensor, spec) -> Batch:
    past = starts[:, None] + torch.arange(HISTORY)
    future = starts[:, None] + HISTORY + torch.arange(LAG)
    b, n = len(starts), series.shape[1]
    target_mask = torch.zeros(b, LAG, n, dtype=torch.bool)
    target_mask[:, :, 1::2] = True  # followers only
    return Batch(
        values=series[past][..., None],
        observed=torch.ones(b, HISTORY, n, 1, dtype=torch.bool),
        covariates=torch.zeros(b, HISTORY, 2),
        target=series[future],
        target_mask=target_mask,
        node_mask=torch.ones(b, n, dtype=torch.bool),
        start=starts,
        positions_xy=spec.positions_xy,
    )


@functools.cache  # deterministic; test_spin_lite reuses the "none" score
def train_and_score(pooling_name: str) -> float:
    series, spec = network()
    torch.manual_seed(0)
    encoder = LSTMEncoder(LSTMConfig(embedding_dim=16, num_layers=1), spec)
    pooling = (
        NoPooling(NoPooling.Config(), spec, 16) if pooling_name == "none" else ALL_STRATEGIES[pooling_name](spec, 16)
    )
    return fit_and_score(Forecaster(encoder, pooling, HeadConfig(hidden_dim=32, dropout=0.0), LAG), series, spec)


def fit_and_score(model: Forecaster, series: torch.Tensor, spec) -> float:
    """Train on the first 1200 steps (250 Adam steps of 64 windows), return the followers' test MAE."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train_end = 1200 - HISTORY - LAG
    for _ in range(250):
        b = batch(series, torch.randint(0, train_end, (64,)), spec)
        loss = masked_mae(model(b), b.target, b.target_mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        test = batch(series, torch.arange(1200, STEPS - HISTORY - LAG), spec)
        return masked_mae(model(test), test.target, test.target_mask).item()


@pytest.fixture(scope="module")
def error_without_pooling() -> float:
    return train_and_score("none")


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_pooling_learns_a_signal_only_neighbours_carry(strategy, error_without_pooling):
    error = train_and_score(strategy)
    assert error_without_pooling > 0.7  # own history is useless: about E|N(0, 1)| = 0.8
    assert error < 0.7 * error_without_pooling, (
        f"{strategy}: MAE {error:.3f} vs {error_without_pooling:.3f} without pooling"
    )
