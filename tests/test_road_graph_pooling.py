"""Pooling along the road graph: upstream and downstream apart, K hops, link weights from road distance or stored,
absent VDs relaying nothing; radius by road distance; learned_graph starting from the road links."""

from __future__ import annotations

import math

import attrs
import numpy as np
import pytest
import torch

from core.graph import RoadGraph
from core.model import Forecaster
from core.recipe import ModelConfig
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder
from plugins.pooling.learned_graph import LearnedGraphConfig, LearnedGraphPooling
from plugins.pooling.none import NoPooling
from plugins.pooling.radius import RadiusConfig, RadiusPooling
from plugins.pooling.road_graph import RoadGraphConfig, RoadGraphPooling
from tests.conftest import make_spec
from tests.helpers import PAIRS, fit_and_score, network

# 0 -> 1 -> 2 (100 m, 200 m), 3 -> 1 (300 m), VD 4 unlinked
GRAPH = RoadGraph(5, np.array([0, 1, 3]), np.array([1, 2, 1]), cost=np.array([100.0, 200.0, 300.0]))
SPEC = attrs.evolve(make_spec(n=5), road_graph=GRAPH)


def pooling(**options) -> RoadGraphPooling:
    """The pooling with every map the identity for ``identity`` (e.g. ``up1``) and zero otherwise."""
    identity = options.pop("identity", ())
    pool = RoadGraphPooling(RoadGraphConfig(**options), SPEC, 3)
    with torch.no_grad():
        for name, linear in pool.maps.items():
            linear.weight.copy_(torch.eye(3) if name in identity else torch.zeros(3, 3))
    return pool


HIDDEN = torch.arange(15, dtype=torch.float32).reshape(1, 5, 3)
ALL = torch.ones(1, 5, dtype=torch.bool)


def kernel(cost: float) -> float:
    return math.exp(-(cost**2) / np.mean(np.square([100.0, 200.0, 300.0])))


def test_upstream_context_is_the_kernel_weighted_mean_of_the_links_into_a_vd():
    context = pooling(identity={"up1"})(HIDDEN, ALL)[0]
    w01, w31 = kernel(100.0), kernel(300.0)
    torch.testing.assert_close(context[1], (w01 * HIDDEN[0, 0] + w31 * HIDDEN[0, 3]) / (w01 + w31))
    torch.testing.assert_close(context[2], HIDDEN[0, 1])
    assert context[[0, 3, 4]].abs().max() == 0  # nothing flows into 0, 3 and 4


def test_downstream_context_reads_the_links_out_of_a_vd():
    context = pooling(identity={"down1"})(HIDDEN, ALL)[0]
    torch.testing.assert_close(context[0], HIDDEN[0, 1])
    torch.testing.assert_close(context[3], HIDDEN[0, 1])
    torch.testing.assert_close(context[1], HIDDEN[0, 2])
    assert context[[2, 4]].abs().max() == 0


def test_an_absent_vd_neither_counts_nor_relays():
    present = torch.tensor([[True, False, True, True, True]])
    one_hop = pooling(identity={"up1"})(HIDDEN, present)[0]
    assert one_hop[2].abs().max() == 0  # its only upstream VD is absent
    two_hops = pooling(hops=2, identity={"up2"})(HIDDEN, ALL)[0]
    w01, w31 = kernel(100.0), kernel(300.0)
    torch.testing.assert_close(two_hops[2], (w01 * HIDDEN[0, 0] + w31 * HIDDEN[0, 3]) / (w01 + w31))
    assert pooling(hops=2, identity={"up2"})(HIDDEN, present)[0][2].abs().max() == 0


def test_stored_uniform_weights_and_threshold():
    stored = attrs.evolve(GRAPH, weight=np.array([0.9, 0.5, 0.3]))
    spec = attrs.evolve(SPEC, road_graph=stored)
    pool = RoadGraphPooling(RoadGraphConfig(weights="stored"), spec, 3)
    index, terms = pool.lists()
    assert index[1, :2].tolist() == [0, 3] and terms[1, :2].tolist() == pytest.approx([0.9, 0.3])
    cut = RoadGraphPooling(RoadGraphConfig(weights="stored", threshold=0.4), spec, 3)
    index, terms = cut.lists()  # VD 1: upstream 0 (3 -> 1 weighs 0.3: cut), downstream 2
    assert index[1].tolist() == [0, 2] and terms[1].tolist() == pytest.approx([0.9, 0.5])
    uniform = pooling(weights="uniform", identity={"up1"})(HIDDEN, ALL)[0]
    torch.testing.assert_close(uniform[1], (HIDDEN[0, 0] + HIDDEN[0, 3]) / 2)


def test_an_undirected_graph_pools_every_neighbour_with_one_map():
    spec = attrs.evolve(SPEC, road_graph=attrs.evolve(GRAPH, directed=False))
    pool = RoadGraphPooling(RoadGraphConfig(weights="uniform"), spec, 3)
    assert list(pool.maps) == ["both1"]
    with torch.no_grad():
        pool.maps["both1"].weight.copy_(torch.eye(3))
    context = pool(HIDDEN, ALL)[0]
    torch.testing.assert_close(context[1], (HIDDEN[0, 0] + HIDDEN[0, 2] + HIDDEN[0, 3]) / 3)


def test_learned_link_weights_get_gradients_and_start_at_the_kernel():
    pool = pooling(learn_link_weights=True, identity={"up1"})
    torch.testing.assert_close(pool(HIDDEN, ALL), pooling(identity={"up1"})(HIDDEN, ALL))
    pool(HIDDEN, ALL)[0, 1].sum().backward()
    grad = pool.link_scale.grad
    assert grad[0] != 0 and grad[2] != 0 and grad[1] == 0  # the links into VD 1 and no other


def test_radius_by_road_distance():
    pool = RadiusPooling(RadiusConfig(radius_m=320.0, metric="road"), SPEC, 3)
    lists = pool.neighbours
    found = {
        (i, int(j)): float(d)
        for i in range(5)
        for j, d, v in zip(lists.index[i], lists.distance[i], lists.valid[i])
        if v
    }
    assert found == {
        (0, 1): 100.0, (0, 2): 300.0, (1, 0): 100.0, (1, 2): 200.0, (1, 3): 300.0,
        (2, 1): 200.0, (2, 0): 300.0, (3, 1): 300.0,
    }  # fmt: skip


def test_learned_graph_with_road_always_lists_the_road_neighbours():
    pool = LearnedGraphPooling(LearnedGraphConfig(k=1, with_road=True), SPEC, 3)
    index, listed = pool.candidates()
    road = {i: {int(j) for j, v in zip(index[i, 1:], listed[i, 1:]) if v} for i in range(5)}
    assert road == {0: {1}, 1: {0, 2, 3}, 2: {1}, 3: {1}, 4: set()}
    assert all(int(index[i, 0]) not in road[i] | {i} for i in range(5))  # the learned edge is another VD


@pytest.mark.slow
def test_road_graph_learns_a_signal_carried_along_the_links_by_its_upstream_map():
    """Each follower repeats its source ``LAG`` steps later, and the links run source -> follower: the
    follower's upstream map carries the signal; with it zeroed the error is back to pooling none, with the
    downstream map zeroed it is unchanged."""
    series, spec = network()
    links = RoadGraph(2 * PAIRS, np.arange(0, 2 * PAIRS, 2), np.arange(1, 2 * PAIRS, 2), cost=np.full(PAIRS, 500.0))
    spec = attrs.evolve(spec, road_graph=links)

    def model(pool_cls, config):
        torch.manual_seed(0)
        encoder = LSTMEncoder(LSTMConfig(embedding_dim=16, num_layers=1), spec)
        return Forecaster(encoder, pool_cls(config, spec, 16), ModelConfig(hidden_dim=32, dropout=0.0))

    alone = fit_and_score(model(NoPooling, NoPooling.Config()), series, spec)
    road = model(RoadGraphPooling, RoadGraphConfig())
    trained = fit_and_score(road, series, spec)
    assert trained < 0.7 * alone, f"road_graph MAE {trained:.3f} vs {alone:.3f} without pooling"

    def without(name: str) -> float:
        ablated = model(RoadGraphPooling, RoadGraphConfig())
        ablated.load_state_dict(road.state_dict())
        with torch.no_grad():
            ablated.pooling.maps[name].weight.zero_()
        return fit_and_score(ablated, series, spec, steps=0)

    assert without("down1") == pytest.approx(trained, rel=1e-4)
    assert without("up1") > 0.9 * alone
