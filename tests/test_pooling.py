from __future__ import annotations

import math

import attrs
import pytest
import torch

from core.api import require_positions
from core.errors import DataError
from core.model.neighbours import EdgeSum, NeighbourLists, sparse_mean
from plugins.pooling.none import NoPooling
from plugins.pooling.radius import RadiusConfig, RadiusPooling
from tests.conftest import make_spec
from tests.helpers import ALL_STRATEGIES, POSITIONS, STRATEGIES


def dense_reference(hidden, node_mask, positions, radius, aggregation, floor=50.0):
    """The O(N²) definition, one VD at a time."""
    b, n, e = hidden.shape
    out = torch.zeros_like(hidden)
    for bi in range(b):
        for i in range(n):
            js = [
                j for j in range(n) if j != i and node_mask[bi, j] and torch.dist(positions[i], positions[j]) <= radius
            ]
            if not js:
                continue
            states = hidden[bi, js]
            if aggregation == "max":
                out[bi, i] = states.max(0).values
            else:
                w = torch.tensor(
                    [
                        1.0 / max(float(torch.dist(positions[i], positions[j])), floor)
                        if aggregation == "inverse_distance"
                        else 1.0
                        for j in js
                    ]
                )
                out[bi, i] = (w[:, None] * states).sum(0) / w.sum()
    return out


@pytest.mark.parametrize("aggregation", ["mean", "inverse_distance", "max"])
def test_radius_pooling_matches_dense_definition(aggregation):
    torch.manual_seed(0)
    pooling = RadiusPooling(
        RadiusConfig(radius_m=1200.0, aggregation=aggregation), make_spec(positions=POSITIONS), dim=4
    )
    hidden = torch.randn(3, 5, 4)
    node_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [0, 1, 1, 0, 1]], dtype=torch.bool)
    out = pooling(hidden, node_mask)
    torch.testing.assert_close(out, dense_reference(hidden, node_mask, POSITIONS, 1200.0, aggregation))
    assert torch.all(out[:, 4] == 0)  # isolated VD: zeros, not NaN


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_absent_vd_changes_nothing_and_gets_no_gradient(strategy):
    torch.manual_seed(0)
    pooling = ALL_STRATEGIES[strategy](make_spec(positions=POSITIONS), 4).eval()
    node_mask = torch.tensor([[1, 0, 1, 1, 1]], dtype=torch.bool)
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    out = pooling(hidden, node_mask)
    changed = hidden.detach().clone()
    changed[0, 1] = 1e6  # garbage in the absent VD's slot
    present = [0, 2, 3, 4]
    torch.testing.assert_close(pooling(changed, node_mask)[:, present], out[:, present].detach())
    out[:, present].sum().backward()
    assert torch.all(hidden.grad[0, 1] == 0) and torch.all(hidden.grad[0, 0] != 0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_no_neighbour_gives_zeros_and_finite_gradients(strategy):
    far = torch.tensor([[0.0, 0.0], [1e5, 0.0], [1e5 + 100.0, 0.0]])  # VD 0 alone; 1 and 2 neighbours
    pooling = STRATEGIES[strategy](make_spec(n=3, positions=far), 4)
    hidden = torch.randn(2, 3, 4, requires_grad=True)
    node_mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)  # sample 1: VD 1's only neighbour is absent
    out = pooling(hidden, node_mask)
    out.square().sum().backward()
    assert torch.all(out[:, 0] == 0) and torch.all(out[1, 1] == 0) and out[0, 1].abs().sum() > 0
    assert torch.isfinite(hidden.grad).all() and all(
        torch.isfinite(p.grad).all() for p in pooling.parameters() if p.grad is not None
    )


def test_attention_weights_sum_to_one_over_real_neighbours_and_match_a_dense_reference():
    torch.manual_seed(0)
    pooling = STRATEGIES["attention"](make_spec(positions=POSITIONS), 4).eval()
    hidden = torch.randn(1, 5, 4)
    node_mask = torch.tensor([[1, 1, 0, 1, 1]], dtype=torch.bool)  # VD 2 absent
    out = pooling(hidden, node_mask)
    weights, lists = pooling.edge_weights, pooling.neighbours
    real = lists.valid & node_mask[0, lists.index]
    torch.testing.assert_close(weights.sum(1), real.any(1).float())  # 1 where any real neighbour, else 0
    assert torch.all(weights[~real] == 0)
    # VD 0 by hand: its only real neighbour within 1200 m is VD 1 (VD 2 is absent), so it gets VD 1's value
    value = pooling.key_value(hidden)[0, 1, 4:]
    torch.testing.assert_close(out[0, 0], pooling.output(value))


def test_learnable_radius_weights_and_gradient_reach_the_radius():
    pooling = STRATEGIES["learnable_radius"](make_spec(positions=POSITIONS), 4).eval()
    hidden = torch.randn(1, 5, 4)
    out = pooling(hidden, torch.ones(1, 5, dtype=torch.bool))
    # VD 2: candidates 1 (500 m), 0 (900 m), 3 (1100 m); w = σ((600 - d) / 200); context = Σ w h / max(Σ w, 1)
    d = torch.tensor([500.0, 900.0, 1100.0])
    w = torch.sigmoid((600.0 - d) / 200.0)
    expected = (w[:, None] * hidden[0, [1, 0, 3]]).sum(0) / w.sum().clamp_min(1.0)
    torch.testing.assert_close(out[0, 2], expected)
    out.sum().backward()
    assert pooling.log_radius.grad is not None and pooling.log_radius.grad.abs() > 0
    assert pooling.summary()["pooling/radius_m"] == pytest.approx(600.0)


def test_same_attribute_filter_keeps_only_matching_neighbours():
    spec = attrs.evolve(make_spec(positions=POSITIONS), vd_attributes={"direction": ("N", "S", "N", "N", "")})
    pooling = RadiusPooling(RadiusConfig(radius_m=1200.0, same=("direction",)), spec, 4)
    lists = pooling.neighbours
    neighbours = {i: sorted(lists.index[i][lists.valid[i]].tolist()) for i in range(5)}
    assert neighbours == {0: [2], 1: [], 2: [0, 3], 3: [2], 4: []}  # VD 1 is alone southbound; VD 4 unknown
    with pytest.raises(
        DataError, match=r"'same' names \['road'\], which the data's metadata/vd_info does not carry; it has: direction"
    ):
        RadiusPooling(RadiusConfig(same=("road",)), spec, 4)


def test_neighbour_lists_respect_radius_and_k():
    lists = NeighbourLists.build(POSITIONS, radius_m=1200.0, k=16)
    assert lists.index.shape == (5, 3)  # trimmed to the largest neighbourhood (VD 2 has three)
    assert lists.valid.sum(1).tolist() == [2, 2, 3, 1, 0]
    assert sorted(lists.index[2][lists.valid[2]].tolist()) == [0, 1, 3]
    nearest = NeighbourLists.build(POSITIONS, k=1)
    assert nearest.index[:, 0].tolist() == [1, 0, 1, 2, 3] and nearest.distance[4, 0] == 3000.0
    assert lists.fraction_isolated() == pytest.approx(0.2)


@pytest.mark.slow
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
    for build in STRATEGIES.values():
        with pytest.raises(DataError, match=message):
            build(make_spec(positions=positions), 4)
    with pytest.raises(DataError, match=message):
        require_positions(positions, make_spec().vd_ids)


def test_none_pooling_needs_no_positions():
    pooling = NoPooling(NoPooling.Config(), make_spec(positions=None), dim=4)
    assert torch.all(pooling(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)) == 0)


def test_the_map_shows_the_mean_edge_weight_over_a_whole_evaluation_pass():
    torch.manual_seed(0)
    pooling = STRATEGIES["attention"](make_spec(positions=POSITIONS), 4).eval()
    node_mask = torch.ones(1, 5, dtype=torch.bool)
    first, second = torch.randn(1, 5, 4), torch.randn(1, 5, 4)
    pooling(first, node_mask)
    alone = pooling.edge_weights.clone()
    pooling(second, node_mask)
    pooling.train().eval()  # a new pass starts a new mean
    pooling(second, node_mask)
    torch.testing.assert_close(pooling.edges()[1], pooling.edge_weights)
    second_alone = pooling.edge_weights.clone()
    pooling(first, node_mask)
    torch.testing.assert_close(pooling.edge_weights, (alone + second_alone) / 2)
    assert not torch.allclose(alone, second_alone)


@pytest.mark.parametrize("strategy", ALL_STRATEGIES)
def test_every_strategy_gets_the_same_gradient_every_time(strategy):
    """Same seed, same run: bit-identical gradients from one backward pass to the next, for the hidden states and
    for parameters read once per edge (a learned graph's target embeddings: indexing them added the repeated rows
    in a varying order). 1,024 VDs, so that the CPU kernels split the work between threads."""
    torch.manual_seed(0)
    grid = torch.stack(torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij"), -1).reshape(-1, 2) * 300
    pooling = ALL_STRATEGIES[strategy](make_spec(n=1024, positions=grid), 16)
    hidden = torch.randn(8, 1024, 16, requires_grad=True)
    gradients = []
    for _ in range(5):
        torch.manual_seed(1)  # the same dropout and tried candidates every pass
        pooling.zero_grad()
        hidden.grad = None
        pooling(hidden, torch.ones(8, 1024, dtype=torch.bool)).square().sum().backward()
        named = dict(pooling.named_parameters()) | {"hidden": hidden}
        gradients.append({name: p.grad.clone() for name, p in named.items() if p.grad is not None})
    for name, first in gradients[0].items():
        assert all(torch.equal(first, later[name]) for later in gradients[1:]), name


@pytest.mark.parametrize("dense", [True, False], ids=["dense", "gathered"])
def test_sparse_mean_values_and_gradients_match_a_gather_over_the_lists(monkeypatch, dense):
    """Repeated edges, zero terms and absent VDs; the edge terms' gradient by a dense product or gathered in chunks
    of a few rows."""
    monkeypatch.setattr(EdgeSum, "DENSE_UP_TO", 13 if dense else 0)
    if not dense:
        monkeypatch.setattr(EdgeSum, "CHUNK_ELEMENTS", 2 * 3 * 4 * 5)  # 5 rows a chunk: three chunks for 13 VDs
    g = torch.Generator().manual_seed(0)
    index = torch.randint(13, (13, 3), generator=g)
    index[0] = torch.tensor([4, 4, 0])  # an edge twice, and the VD itself
    terms = torch.rand(13, 3, generator=g).where(torch.rand(13, 3, generator=g) > 0.2, 0.0).requires_grad_()
    values = torch.randn(2, 13, 4, generator=g, requires_grad=True)
    node_mask = torch.rand(2, 13, generator=g) > 0.3
    means, total = sparse_mean(index, terms, values, node_mask)
    present = node_mask[:, index].float()  # [B, N, K]
    weights = terms * present
    expected_total = weights.sum(-1)
    expected = (weights[..., None] * values[:, index]).sum(2) / expected_total.where(expected_total > 0, 1.0)[..., None]
    torch.testing.assert_close(means, expected)
    torch.testing.assert_close(total, expected_total.where(expected_total > 0, 1.0))
    upstream = torch.randn(2, 13, 4, generator=g)
    got = torch.autograd.grad((means * upstream).sum(), (terms, values))
    want = torch.autograd.grad((expected * upstream).sum(), (terms, values))
    for name, a, b in zip(("terms", "values"), got, want):
        torch.testing.assert_close(a, b, msg=lambda m, name=name: f"gradient of {name}: {m}")
    assert got[0].abs().sum() > 0 and got[1][~node_mask].abs().max() == 0  # absent VDs get no gradient
