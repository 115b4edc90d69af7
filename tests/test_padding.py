"""Variable-length windows and dynamic padding on the synthetic network with outages. That padding changes
no forecast is checked for every plugin by the conformance kit (``tests/test_plugin_kit.py``)."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

from core.data.config import DataConfig
from core.data.dataset import TrafficData
from core.data.windows import Normaliser, build_series, prepare
from plugins.collators.centralized import CentralizedCollator
from plugins.collators.dynamic_padding import DynamicPaddingCollator, DynamicPaddingConfig

HISTORY, HORIZON, MIN_HISTORY, GAP = 12, 3, 3, 6


def history_lengths(missing: np.ndarray, gap_steps: int) -> list[int]:
    """``Series.lengths`` of one VD missing where ``missing`` says, for the windows whose 11-step history ends at
    each step (the steps before the series' start count as readings: a history is cut only by a gap in it)."""
    readings = np.where(missing, np.nan, 1.0).astype(np.float32)[:, None, None]
    data = TrafficData(readings, ("vd",), ("speed",), 300 * np.arange(len(missing), dtype=np.int64))
    cfg = DataConfig(history=11, horizon=1, min_history=1, gap_steps=gap_steps)
    normaliser = Normaliser(np.zeros(1, np.float32), np.ones(1, np.float32), ("speed",))
    series = build_series(data, normaliser, cfg, ("speed",))
    return series.lengths(torch.arange(len(missing)) - 10)[:, 0].tolist()


def test_a_history_counts_from_the_last_long_gap():
    missing = np.array([1, 1, 0, 0, 1, 0, 1, 1, 1, 0, 0], bool)  # gaps of 2, 1 and 3 steps
    assert history_lengths(missing, gap_steps=3) == [11, 11, 11, 11, 11, 11, 11, 11, 0, 1, 2]
    assert history_lengths(missing, gap_steps=2) == [11, 0, 1, 2, 3, 4, 5, 0, 0, 1, 2]  # causal: once it is long


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
    return prepare(outages, DataConfig(history=HISTORY, horizon=HORIZON, min_history=MIN_HISTORY, gap_steps=GAP))


def test_variable_windows_follow_the_gaps(prepared):
    series = prepared.series
    lengths = series.lengths(prepared.splits["train"].starts)
    assert lengths.min() == 0 and lengths.max() == HISTORY
    assert set(lengths.unique().tolist()) - {0} >= set(range(MIN_HISTORY, HISTORY + 1))  # every length occurs
    windows = prepared.splits["train"].__getitems__(list(range(len(prepared.splits["train"]))))
    assert not windows.observed[~windows.step_mask()].any()  # nothing before a VD's history is observed
    assert not windows.target_mask.transpose(1, 2)[~windows.active].any()  # inactive VDs are not forecast


def short_and_others(prepared):
    """A window with short histories and few active VDs, and windows with longer and wider ones."""
    dataset = prepared.splits["train"]
    lengths = prepared.series.lengths(dataset.starts)
    short = int(torch.nonzero((lengths.max(1).values < HISTORY) & ((lengths > 0).sum(1) < lengths.shape[1] - 4))[0])
    longest = int(lengths.sum(1).argmax())
    return short, [longest, short + 40, short + 400]


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
    prepared = prepare(small_data, DataConfig(history=HISTORY, horizon=HORIZON))
    spec = prepared.spec()
    windows = prepared.splits["train"].__getitems__([0, 5])
    batch = DynamicPaddingCollator(DynamicPaddingConfig(), spec)(windows)
    assert batch.values.shape == windows.values.shape and batch.node_mask.all() and batch.step_mask.all()
    assert batch.vd_index is None  # every VD active: the VD axis is not reordered
    assert torch.equal(batch.values, windows.values)


def test_hidden_inputs_are_missing_inputs_and_targets_are_kept(small_data):
    plain = prepare(small_data, DataConfig(history=HISTORY, horizon=HORIZON))
    hidden = prepare(small_data, DataConfig(history=HISTORY, horizon=HORIZON, hide_inputs=0.25), seed=1)
    starts = torch.arange(0, plain.series.steps - HISTORY - HORIZON + 1, HISTORY)  # every step once, near enough
    seen, shown = plain.series.cut(starts), hidden.series.cut(starts)
    kept = shown.observed.sum() / seen.observed.sum()
    assert 0.74 < float(kept) < 0.76
    assert not (shown.observed & ~seen.observed).any()
    assert not shown.values[~shown.observed].any()
    assert torch.equal(shown.target, seen.target)
    batch = CentralizedCollator(CentralizedCollator.Config(), plain.spec())(plain.splits["train"].__getitems__([0, 1]))
    whitened = batch.hide_inputs(0.5, torch.Generator().manual_seed(0))
    assert 0.4 < whitened.observed.sum() / batch.observed.sum() < 0.6
    assert not whitened.values[~whitened.observed].any() and torch.equal(whitened.target, batch.target)
