"""Variable-length windows and dynamic padding: padding changes nothing, anywhere."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

from core.api import DatasetSpec
from core.data.windows import prepare, steps_since_gap
from core.metrics import masked_mae
from core.model import Forecaster
from core.recipe import HeadConfig
from plugins.collators.centralized import CentralizedCollator, CentralizedConfig
from plugins.collators.dynamic_padding import DynamicPaddingCollator, DynamicPaddingConfig
from plugins.encoders.spin_lite import SpinLiteConfig, SpinLiteEncoder
from plugins.encoders.xlstm_shared import SharedXLSTMConfig, SharedXLSTMEncoder
from plugins.pooling.none import NoPooling, NoPoolingConfig
from tests.test_encoders import ENCODERS
from tests.test_pooling import ALL_STRATEGIES

HISTORY, HORIZON, MIN_HISTORY, GAP = 12, 3, 3, 6

ENCODER_CASES = {
    **ENCODERS,
    "xlstm_shared_per_vd_parts": lambda spec: SharedXLSTMEncoder(
        SharedXLSTMConfig(embedding_dim=16, num_blocks=2, slstm_at=(1,), num_heads=2, vd_embedding=True, per_vd_output=True), spec
    ),
    "spin_lite": lambda spec: SpinLiteEncoder(SpinLiteConfig(radius_m=1500.0), spec),
}
POOLINGS = {"none": lambda spec, dim: NoPooling(NoPoolingConfig(), spec, dim), **ALL_STRATEGIES}


def test_steps_since_gap_counts_from_the_last_long_gap():
    missing = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0], bool)[:, None]  # gaps of 2, 1 and 3 steps
    assert steps_since_gap(missing, gap_steps=3)[:, 0].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 2]
    assert steps_since_gap(missing, gap_steps=2)[:, 0].tolist() == [1, 0, 1, 2, 3, 4, 5, 0, 0, 1, 2]  # causal: a gap counts once it is long


@pytest.fixture(scope="module")
def outages(small_data):
    """The synthetic network with VDs that come online late, drop out for a while, or vanish for good."""
    features = small_data.features.copy()
    t = len(features)
    features[: t // 3, 0] = np.nan  # online late
    features[t // 2 : t // 2 + 40, 1:6] = np.nan  # a 40-step outage of five VDs
    features[int(t * 0.75) :, 7] = np.nan  # dropped out
    features[300:310] = np.nan  # the whole network down: windows after it are short
    features[300:316, 20:30] = np.nan  # and ten VDs back later
    for start in range(100, t, 97):  # short outages everywhere, 8 VDs at a time, staggered
        features[start : start + 8, (start // 97) % 30 : (start // 97) % 30 + 8] = np.nan
    return attrs.evolve(small_data, features=features)


@pytest.fixture(scope="module")
def prepared(outages):
    return prepare(outages, "speed", history=HISTORY, horizon=HORIZON, min_history=MIN_HISTORY, gap_steps=GAP)


def test_variable_windows_follow_the_gaps(prepared):
    series = prepared.series
    lengths = series.lengths(prepared.splits["train"].starts)
    assert lengths.min() == 0 and lengths.max() == HISTORY
    assert set(lengths.unique().tolist()) - {0} >= set(range(MIN_HISTORY, HISTORY + 1))  # every length occurs
    windows = prepared.splits["train"].__getitems__(list(range(len(prepared.splits["train"]))))
    assert not windows.observed[~windows.step_mask()].any()  # nothing before a VD's history is observed
    assert not windows.target_mask.transpose(1, 2)[~windows.active].any()  # inactive VDs are not forecast


def model_for(encoder: str, pooling: str, spec: DatasetSpec) -> Forecaster:
    torch.manual_seed(0)
    enc = ENCODER_CASES[encoder](spec)
    return Forecaster(enc, POOLINGS[pooling](spec, enc.out_dim), HeadConfig(hidden_dim=16), HORIZON).eval()


def short_and_others(prepared):
    """A window with short histories and few active VDs, and windows with longer and wider ones."""
    dataset = prepared.splits["train"]
    lengths = prepared.series.lengths(dataset.starts)
    short = int(torch.nonzero((lengths.max(1).values < HISTORY) & ((lengths > 0).sum(1) < lengths.shape[1] - 4))[0])
    longest = int(lengths.sum(1).argmax())
    return short, [longest, short + 40, short + 400]


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("encoder", ENCODER_CASES)
def test_forecast_is_the_same_alone_batched_and_padded_to_the_maximum(prepared, encoder, pooling):
    spec = prepared.spec()
    model = model_for(encoder, pooling, spec)
    dynamic, full = DynamicPaddingCollator(DynamicPaddingConfig(), spec), CentralizedCollator(CentralizedConfig(), spec)
    dataset = prepared.splits["train"]
    short, others = short_and_others(prepared)
    alone = dynamic(dataset.__getitems__([short]))
    batched = dynamic(dataset.__getitems__([short, *others]))
    assert alone.values.shape[1] < batched.values.shape[1] and alone.values.shape[2] < batched.values.shape[2]
    with torch.no_grad():
        reference = model(alone)[0]
        mask = alone.target_mask[0]
        assert torch.allclose(model(batched)[0][mask], reference[mask], atol=1e-5)
        assert torch.allclose(model(full(dataset.__getitems__([short, *others])))[0][mask], reference[mask], atol=1e-5)


@pytest.mark.parametrize("encoder", ENCODER_CASES)
def test_padding_gets_no_gradient_and_junk_in_it_changes_nothing(prepared, encoder):
    spec = prepared.spec()
    model = model_for(encoder, "radius", spec)
    short, others = short_and_others(prepared)
    batch = DynamicPaddingCollator(DynamicPaddingConfig(), spec)(prepared.splits["train"].__getitems__([short, *others]))
    padding = ~(batch.step_mask & batch.node_mask[:, None])  # [B, T, M]
    assert padding.any()
    values = batch.values.clone().requires_grad_()
    loss = masked_mae(model(attrs.evolve(batch, values=values)), batch.target, batch.target_mask)
    loss.backward()
    assert values.grad[padding].abs().max() == 0 and values.grad[~padding].abs().max() > 0
    junk = batch.values + padding[..., None] * torch.randn_like(batch.values) * 100
    with torch.no_grad():
        assert torch.equal(model(attrs.evolve(batch, values=junk)), model(batch))


def test_dynamic_padding_shapes_masks_and_max_sequence_length(prepared):
    spec = prepared.spec()
    dataset = prepared.splits["train"]
    short, others = short_and_others(prepared)
    windows = dataset.__getitems__([short, *others])
    batch = DynamicPaddingCollator(DynamicPaddingConfig(), spec)(windows)
    active = windows.lengths > 0
    assert batch.values.shape[1:3] == (int(windows.lengths.max()), int(active.sum(1).max()))
    for b in range(batch.size):  # each sample's active VDs first, in dataset order, then padding slots
        vds = batch.vd_index[b][batch.node_mask[b]].tolist()
        assert vds == active[b].nonzero().flatten().tolist()
        assert batch.lengths[b][batch.node_mask[b]].tolist() == windows.lengths[b][active[b]].tolist()
    assert torch.equal(batch.target_mask, windows.target_mask & active[:, None])
    cut = DynamicPaddingCollator(DynamicPaddingConfig(max_sequence_length=4), spec)(windows)
    assert cut.values.shape[1] == 4
    assert torch.equal(cut.lengths[cut.node_mask], batch.lengths[batch.node_mask].clamp(max=4))
    assert torch.equal(cut.values, batch.values[:, -4:])  # the most recent steps are kept


def test_fixed_windows_make_a_full_batch(small_data):
    prepared = prepare(small_data, "speed", history=HISTORY, horizon=HORIZON)
    spec = prepared.spec()
    windows = prepared.splits["train"].__getitems__([0, 5])
    batch = DynamicPaddingCollator(DynamicPaddingConfig(), spec)(windows)
    assert batch.values.shape == windows.values.shape and batch.node_mask.all() and batch.step_mask.all()
    assert batch.vd_index is None  # every VD active: the VD axis is not reordered
    assert torch.equal(batch.values, windows.values)


def test_hidden_inputs_are_missing_inputs_and_targets_are_kept(small_data):
    plain = prepare(small_data, "speed", history=HISTORY, horizon=HORIZON)
    hidden = prepare(small_data, "speed", history=HISTORY, horizon=HORIZON, hide_inputs=0.25, seed=1)
    kept = hidden.series.observed.sum() / plain.series.observed.sum()
    assert 0.74 < float(kept) < 0.76
    assert not (hidden.series.observed & ~plain.series.observed).any()
    assert not hidden.series.values[~hidden.series.observed].any()
    assert torch.equal(hidden.series.target, plain.series.target)
    batch = CentralizedCollator(CentralizedConfig(), plain.spec())(plain.splits["train"].__getitems__([0, 1]))
    whitened = batch.hide_inputs(0.5, torch.Generator().manual_seed(0))
    assert 0.4 < whitened.observed.sum() / batch.observed.sum() < 0.6
    assert not whitened.values[~whitened.observed].any() and torch.equal(whitened.target, batch.target)
