"""What several test modules share: the reference encoders and poolings, random encoder inputs, and the
neighbour-signal network (a follower repeats its source ``LAG`` steps later) with a short training on it."""

from __future__ import annotations

import functools

import tomli_w
import torch

from core.api import Batch, EncoderInput
from core.model import Forecaster
from core.recipe import ModelConfig
from core.training.metrics import masked_mae
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder
from plugins.encoders.xlstm_per_vd import PerVDXLSTMEncoder
from plugins.encoders.xlstm_shared import SharedXLSTMConfig, SharedXLSTMEncoder, XLSTMConfig
from plugins.pooling.attention import AttentionConfig, AttentionPooling
from plugins.pooling.learnable_radius import LearnableRadiusConfig, LearnableRadiusPooling
from plugins.pooling.learned_graph import LearnedGraphConfig, LearnedGraphPooling
from plugins.pooling.none import NoPooling
from plugins.pooling.radius import RadiusConfig, RadiusPooling
from tests.conftest import make_spec

ENCODERS = {
    "lstm": lambda spec: LSTMEncoder(LSTMConfig(embedding_dim=16), spec),
    "xlstm_shared": lambda spec: SharedXLSTMEncoder(
        SharedXLSTMConfig(embedding_dim=16, num_blocks=2, slstm_at=(1,), num_heads=2), spec
    ),
    "xlstm_per_vd": lambda spec: PerVDXLSTMEncoder(
        XLSTMConfig(embedding_dim=16, num_blocks=2, slstm_at=(1,), num_heads=2), spec
    ),
}


def random_input(b=2, n=5, t=6, f=2, seed=0) -> EncoderInput:
    g = torch.Generator().manual_seed(seed)
    observed = torch.rand(b, n, t, f, generator=g) > 0.1
    values = torch.randn(b, n, t, f, generator=g) * observed
    return EncoderInput(values=values, observed=observed, covariates=torch.randn(b, t, 2, generator=g), step_mask=None)


# five VDs on a line, 0/400/900/2000/5000 m: VD 4 has no neighbour within 1200 m
POSITIONS = torch.tensor([[0.0, 0.0], [400.0, 0.0], [900.0, 0.0], [2000.0, 0.0], [5000.0, 0.0]])


# the strategies over distance neighbour lists (positions required)
STRATEGIES = {
    "radius": lambda spec, dim: RadiusPooling(RadiusConfig(radius_m=1200.0), spec, dim),
    "attention": lambda spec, dim: AttentionPooling(AttentionConfig(radius_m=1200.0, heads=2, dropout=0.0), spec, dim),
    "learnable_radius": lambda spec, dim: LearnableRadiusPooling(
        LearnableRadiusConfig(radius_m=1200.0, initial_radius_m=600.0), spec, dim
    ),
}
# every strategy, those whose neighbours are learned from the whole network (no radius, no positions) too
ALL_STRATEGIES = STRATEGIES | {
    "learned_graph": lambda spec, dim: LearnedGraphPooling(LearnedGraphConfig(k=2), spec, dim)
}


# the neighbour-signal network (tests/test_pooling_learns.py explains it)
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
    return fit_and_score(Forecaster(encoder, pooling, ModelConfig(hidden_dim=32, dropout=0.0)), series, spec)


def fit_and_score(model: Forecaster, series: torch.Tensor, spec, steps: int = 250) -> float:
    """Train on the first 1200 steps (``steps`` Adam steps of 64 windows), return the followers' test MAE."""
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    train_end = 1200 - HISTORY - LAG
    for _ in range(steps):
        b = batch(series, torch.randint(0, train_end, (64,)), spec)
        loss = masked_mae(model(b), b.target, b.target_mask)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        test = batch(series, torch.arange(1200, STEPS - HISTORY - LAG), spec)
        return masked_mae(model(test), test.target, test.target_mask).item()


def short_run(name: str, out, source, **tables: dict) -> str:
    """The TOML of a short training run: ``name``, its run directories in ``out``, the data file ``source``, an
    lstm (E 8) with radius pooling, one epoch of at most 2 batches of 16, no figures; each of ``tables`` (e.g.
    ``pooling={"name": "none"}``) is merged over the table of that name."""
    recipe = {
        "run": {"name": name, "output_dir": str(out)},
        "data": {"source": str(source)},
        "encoder": {"name": "lstm", "embedding_dim": 8},
        "pooling": {"name": "radius"},
        "trainer": {"epochs": 1, "batch_size": 16, "max_batches_per_epoch": 2, "figure_vds": 0},
    }
    for table, values in tables.items():
        recipe[table] = recipe.get(table, {}) | values
    return tomli_w.dumps(recipe)
