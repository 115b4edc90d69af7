from __future__ import annotations

import math

import pytest
import torch

from core.api import require_positions
from core.errors import DataError
from core.neighbours import NeighbourLists
from plugins.pooling.none import NoPooling, NoPoolingConfig
from plugins.pooling.radius import RadiusConfig, RadiusPooling
from tests.conftest import make_spec

# five VDs on a line, 0/400/900/2000/5000 m: VD 4 has no neighbour within 1200 m
POSITIONS = torch.tensor([[0.0, 0.0], [400.0, 0.0], [900.0, 0.0], [2000.0, 0.0], [5000.0, 0.0]])


def dense_reference(hidden, node_mask, positions, radius, aggregation, floor=50.0):
    """The O(N²) definition, one VD at a time."""
    b, n, e = hidden.shape
    out = torch.zeros_like(hidden)
    for bi in range(b):
        for i in range(n):
            js = [j for j in range(n) if j != i and node_mask[bi, j] and torch.dist(positions[i], positions[j]) <= radius]
            if not js:
                continue
            states = hidden[bi, js]
            if aggregation == "max":
                out[bi, i] = states.max(0).values
            else:
                w = torch.tensor([1.0 / max(float(torch.dist(positions[i], positions[j])), floor) if aggregation == "inverse_distance" else 1.0 for j in js])
                out[bi, i] = (w[:, None] * states).sum(0) / w.sum()
    return out


@pytest.mark.parametrize("aggregation", ["mean", "inverse_distance", "max"])
def test_radius_pooling_matches_dense_definition(aggregation):
    torch.manual_seed(0)
    pooling = RadiusPooling(RadiusConfig(radius_m=1200.0, aggregation=aggregation), make_spec(positions=POSITIONS), dim=4)
    hidden = torch.randn(3, 5, 4)
    node_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [0, 1, 1, 0, 1]], dtype=torch.bool)
    out = pooling(hidden, node_mask)
    torch.testing.assert_close(out, dense_reference(hidden, node_mask, POSITIONS, 1200.0, aggregation))
    assert torch.all(out[:, 4] == 0)  # isolated VD: zeros, not NaN


def test_absent_vd_changes_nothing_and_gets_no_gradient():
    pooling = RadiusPooling(RadiusConfig(radius_m=1200.0), make_spec(positions=POSITIONS), dim=4)
    node_mask = torch.tensor([[1, 0, 1, 1, 1]], dtype=torch.bool)
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    out = pooling(hidden, node_mask)
    changed = hidden.detach().clone()
    changed[0, 1] = 1e6  # garbage in the absent VD's slot
    torch.testing.assert_close(pooling(changed, node_mask)[:, [0, 2, 3, 4]], out[:, [0, 2, 3, 4]].detach())
    out.sum().backward()
    assert torch.all(hidden.grad[0, 1] == 0) and torch.all(hidden.grad[0, 0] != 0)


def test_no_neighbour_anywhere_gives_zeros_and_finite_gradients():
    far = torch.tensor([[0.0, 0.0], [1e5, 0.0]])
    for aggregation in ("mean", "max"):
        pooling = RadiusPooling(RadiusConfig(radius_m=10.0, aggregation=aggregation), make_spec(n=2, positions=far), dim=3)
        hidden = torch.randn(2, 2, 3, requires_grad=True)
        out = pooling(hidden, torch.ones(2, 2, dtype=torch.bool))
        out.sum().backward()
        assert torch.all(out == 0) and torch.isfinite(hidden.grad).all()


def test_neighbour_lists_respect_radius_and_k():
    lists = NeighbourLists.build(POSITIONS, radius_m=1200.0, k=16)
    assert lists.index.shape == (5, 3)  # trimmed to the largest neighbourhood (VD 2 has three)
    assert lists.valid.sum(1).tolist() == [2, 2, 3, 1, 0]
    assert sorted(lists.index[2][lists.valid[2]].tolist()) == [0, 1, 3]
    nearest = NeighbourLists.build(POSITIONS, k=1)
    assert nearest.index[:, 0].tolist() == [1, 0, 1, 2, 3] and nearest.distance[4, 0] == 3000.0
    assert lists.fraction_isolated() == pytest.approx(0.2)


def test_neighbour_lists_scale_without_dense_matrix():
    positions = torch.rand(20_000, 2) * 50_000
    lists = NeighbourLists.build(positions, radius_m=2_000.0, k=16, chunk=1024)
    assert lists.index.shape[0] == 20_000 and lists.index.shape[1] <= 16
    i = 123
    d = (positions - positions[i]).norm(dim=1)
    d[i] = math.inf
    expected = d.topk(16, largest=False).values
    expected = expected[expected <= 2_000.0]
    torch.testing.assert_close(lists.distance[i][lists.valid[i]], expected.float())


@pytest.mark.parametrize(
    ("positions", "message"),
    [
        (None, "Social pooling is enabled but 'positions_xy' is missing"),
        (torch.zeros(4, 2), r"'positions_xy' has shape \(4, 2\), expected \[5, 2\]"),
        (torch.zeros(5, 3), r"'positions_xy' has shape \(5, 3\), expected \[5, 2\]"),
        (POSITIONS.clone().index_fill_(0, torch.tensor([3]), math.nan), "is NaN or infinite for 1 VD\\(s\\), e.g. vd3"),
    ],
)
def test_strict_mode(positions, message):
    with pytest.raises(DataError, match=message):
        RadiusPooling(RadiusConfig(), make_spec(positions=positions), dim=4)
    with pytest.raises(DataError, match=message):
        require_positions(positions, make_spec().vd_ids)


def test_none_pooling_needs_no_positions():
    pooling = NoPooling(NoPoolingConfig(), make_spec(positions=None), dim=4)
    assert torch.all(pooling(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)) == 0)
