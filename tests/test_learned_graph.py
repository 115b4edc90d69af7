"""Pooling ``learned_graph``: sparse learned top-k edges, held to the dense N×N definition on small networks."""

from __future__ import annotations

import math

import pytest
import torch

from core.errors import DataError
from plugins.pooling.learned_graph import LearnedGraphConfig, LearnedGraphPooling, top_k_scores
from tests.conftest import make_spec
from tests.helpers import POSITIONS  # five VDs on a line, 0/400/900/2000/5000 m


def build(n: int = 5, positions=None, dim: int = 4, **config) -> LearnedGraphPooling:
    torch.manual_seed(0)
    return LearnedGraphPooling(
        LearnedGraphConfig(**{"embedding_dim": 3, **config}), make_spec(n=n, positions=positions), dim
    )


def dense_reference(pooling: LearnedGraphPooling, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
    """The definition with the full N×N score matrix: each VD keeps its k best-scoring others (besides its distance
    neighbours with ``with_distance``), softmax over the kept present ones, zeros if none."""
    n = hidden.shape[1]
    scores = pooling.source @ pooling.target.T / pooling.config.temperature
    scores = scores.masked_fill(torch.eye(n, dtype=torch.bool), -math.inf)
    near = torch.zeros(n, n, dtype=torch.bool)
    if pooling.config.with_distance:
        near = (torch.cdist(POSITIONS, POSITIONS) <= pooling.config.radius_m) & ~torch.eye(n, dtype=torch.bool)
    best = scores.masked_fill(near, -math.inf).topk(pooling.k, dim=1)
    kept = torch.zeros(n, n, dtype=torch.bool).scatter(1, best.indices, best.values.isfinite()) | near
    mask = kept[None] & node_mask[:, None, :]  # [B, N, N]
    weights = scores.masked_fill(~mask, -math.inf).softmax(-1).nan_to_num(0.0)
    return torch.einsum("bij,bje->bie", weights, pooling.value(hidden))


MASK = torch.tensor([[1, 1, 1, 1, 1], [1, 0, 1, 1, 1], [0, 1, 1, 0, 0]], dtype=torch.bool)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_matches_the_dense_definition(temperature):
    pooling = build(k=2, temperature=temperature).eval()
    hidden = torch.randn(3, 5, 4)
    out = pooling(hidden, MASK)
    assert out.shape == (3, 5, 4)
    torch.testing.assert_close(out, dense_reference(pooling, hidden, MASK))
    assert not torch.equal(out[0], out[1])  # VD 1's absence matters to those that keep it


def test_with_distance_unites_the_learned_and_the_distance_lists():
    pooling = build(positions=POSITIONS, k=1, with_distance=True, radius_m=1200.0).eval()
    index, listed = pooling.candidates()
    lists = pooling.distance
    assert index.shape == (5, 1 + lists.index.shape[1])
    torch.testing.assert_close(index[:, 1:], lists.index)
    torch.testing.assert_close(listed[:, 1:], lists.valid)
    # the learned one is never a distance neighbour nor the VD itself: VD 2 (distance neighbours 0, 1, 3) learns 4
    assert index[2, 0] == 4 and listed[:, 0].all()
    for i in range(5):
        assert index[i, 0] != i and index[i, 0] not in lists.index[i][lists.valid[i]]
    hidden = torch.randn(3, 5, 4)
    torch.testing.assert_close(pooling(hidden, MASK), dense_reference(pooling, hidden, MASK))
    with pytest.raises(DataError, match="'positions_xy' is missing"):
        build(positions=None, with_distance=True)


def test_positions_are_optional_without_distance_neighbours():
    pooling = build(positions=None, k=2)
    assert not pooling.uses_positions and pooling.summary() == {}
    assert pooling(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)).shape == (2, 5, 4)


def test_absent_vds_get_zero_weight_and_zero_gradient():
    pooling = build(k=3).eval()
    node_mask = torch.tensor([[1, 0, 1, 1, 1]], dtype=torch.bool)
    hidden = torch.randn(1, 5, 4, requires_grad=True)
    out = pooling(hidden, node_mask)
    index, weights = pooling.edges()
    assert torch.all(weights[index == 1] == 0) and torch.allclose(weights.sum(1), torch.ones(5))
    junk = hidden.detach().clone()
    junk[0, 1] = 1e6
    present = [0, 2, 3, 4]
    torch.testing.assert_close(pooling(junk, node_mask)[:, present], out[:, present].detach())
    out[:, present].square().sum().backward()
    assert torch.all(hidden.grad[0, 1] == 0) and torch.all(pooling.target.grad[1] == 0)
    assert hidden.grad[0, present].abs().sum() > 0


def test_gradient_reaches_both_embeddings_and_the_value_projection():
    pooling = build(k=2)
    pooling(torch.randn(2, 5, 4), torch.ones(2, 5, dtype=torch.bool)).square().sum().backward()
    index, _ = pooling.candidates()
    kept = torch.zeros(5, dtype=torch.bool).index_fill(0, index.flatten(), True)
    assert torch.all(pooling.source.grad.abs().sum(1) > 0)  # every VD's own edges
    assert torch.all(pooling.target.grad[kept].abs().sum(1) > 0) and torch.all(pooling.target.grad[~kept] == 0)
    assert pooling.value.weight.grad.abs().sum() > 0


def test_no_present_neighbour_gives_zeros_and_finite_gradients():
    pooling = build(k=2)
    hidden = torch.randn(2, 5, 4, requires_grad=True)
    node_mask = torch.tensor([[1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], dtype=torch.bool)  # VD 0 alone, then nobody
    out = pooling(hidden, node_mask)
    out.square().sum().backward()
    assert torch.all(out[0, 0] == 0) and torch.all(out[1] == 0) and torch.isfinite(hidden.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in pooling.parameters())
    alone = build(n=1, k=2)  # a one-VD network has nobody to learn
    assert torch.all(alone(torch.randn(2, 1, 4), torch.ones(2, 1, dtype=torch.bool)) == 0)


def test_chunked_top_k_equals_the_unchunked_one():
    torch.manual_seed(0)
    source, target = torch.randn(300, 8), torch.randn(300, 8)
    excluded = torch.randint(300, (300, 5))
    for excl in (None, excluded):
        whole = top_k_scores(source, target, 7, excl)
        chunked = top_k_scores(source, target, 7, excl, chunk_elements=300 * 16)  # 16 rows at a time
        one_row = top_k_scores(source, target, 7, excl, chunk_elements=1)
        for index, valid in (chunked, one_row):
            assert torch.equal(index, whole[0]) and torch.equal(valid, whole[1])
    dense = (source @ target.T).fill_diagonal_(-math.inf).scatter(1, excluded, -math.inf)
    assert torch.equal(whole[0], dense.topk(7, dim=1).indices)
    assert not (whole[0] == torch.arange(300)[:, None]).any()
    assert not (whole[0][..., None] == excluded[:, None]).any()


def test_lists_are_chosen_again_only_when_the_embeddings_change():
    pooling = build(k=1, embedding_dim=5)
    with torch.no_grad():
        pooling.target.copy_(torch.eye(5) * 10)
        pooling.source.copy_(torch.eye(5)[[1, 0, 1, 2, 3]])  # VD i's best is [1, 0, 1, 2, 3][i]
    state = {name: value.clone() for name, value in pooling.state_dict().items()}
    first = pooling.candidates()[0]
    assert first is pooling.candidates()[0] and first[:, 0].tolist() == [1, 0, 1, 2, 3]
    optimizer = torch.optim.Adam([pooling.source], lr=20.0, fused=True)  # a fused step leaves no version trace
    pooling.source.grad = -torch.eye(5)[[4, 4, 4, 4, 0]]  # a step towards VD 4 (VD 4: towards VD 0)
    optimizer.step()
    assert pooling.candidates()[0][:, 0].tolist() == [4, 4, 4, 4, 0]
    pooling.load_state_dict(state)
    assert pooling.candidates()[0][:, 0].tolist() == [1, 0, 1, 2, 3]


def test_training_also_tries_random_vds_never_itself_nor_twice():
    pooling = build(n=40, k=3, explore=12)
    index, listed = pooling.with_random_candidates(*pooling.candidates())
    assert index.shape == (40, 15)
    assert not (index == torch.arange(40)[:, None]).any()
    for row, keep in zip(index, listed):  # the real entries of a list are distinct
        assert len(set(row[keep].tolist())) == int(keep.sum())
    assert (~listed).any()  # 12 draws out of 39 repeat one sometimes
    hidden, node_mask = torch.randn(2, 40, 4), torch.ones(2, 40, dtype=torch.bool)
    torch.manual_seed(1)
    trained = pooling(hidden, node_mask)
    torch.manual_seed(2)
    assert not torch.allclose(pooling(hidden, node_mask), trained)  # other random VDs
    pooling.eval()
    torch.testing.assert_close(pooling(hidden, node_mask), dense_reference(pooling, hidden, node_mask))


def test_edges_and_summary_report_the_learned_edges_by_weight():
    pooling = build(positions=POSITIONS, k=2, embedding_dim=5, radius_m=1200.0)
    with torch.no_grad():
        pooling.target.copy_(torch.eye(5) * 10)
        pooling.source.copy_(torch.eye(5)[[1, 0, 1, 2, 3]])  # each VD's nearest scores 10, the others 0
    index, weights = pooling.edges()  # before an evaluation pass: every VD present
    assert index[:, 0].tolist() == [1, 0, 1, 2, 3]
    torch.testing.assert_close(weights[:, 0], torch.full((5,), 1 / (1 + math.exp(-10))))
    # learned edges 400, 400, 500, 1100, 3000 m, each VD's weight ≈ 1 on it: median 500 m, 4 of 5 within 1200 m
    summary = pooling.summary()
    assert summary["pooling/learned_reach_m"] == pytest.approx(500.0)
    assert summary["pooling/learned_within_radius"] == pytest.approx(0.8, abs=1e-3)

    pooling.eval()
    node_mask = torch.ones(2, 5, dtype=torch.bool)
    node_mask[1, 1] = False  # VD 0 loses its learned edge in the second window
    for window in node_mask:
        pooling(torch.randn(1, 5, 4), window[None])
    index, weights = pooling.edges()
    assert torch.equal(index, pooling.candidates()[0])
    assert weights[0, 0] == pytest.approx(0.5 / (1 + math.exp(-10)))  # the mean over both windows
    pooling.train().eval()  # a new pass starts a new mean
    pooling(torch.randn(1, 5, 4), node_mask[:1])
    assert pooling.edges()[1][0, 0] == pytest.approx(1 / (1 + math.exp(-10)))
