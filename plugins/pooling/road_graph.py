"""Pooling ``road_graph``: pool along the data's road links, upstream and downstream apart (DCRNN's diffusion).

Each VD i has an upstream list (the VDs with a link into i) and a downstream list (the VDs i links to). A link's
weight is DCRNN's Gaussian kernel of its road distance, w = exp(-(cost / sigma)^2), with sigma the root mean square
of the network's link costs (the mean link weighs about 1/e; DCRNN took the std of its all-pairs distance list:
give it as ``sigma_m`` to match) and links with w below ``threshold`` cut, or the weight stored with the link
(``weights = "stored"``, e.g. DCRNN's ``adj_mx``), or 1 (``"uniform"``); ``learn_link_weights`` scales each link
by a learned factor. For every hop k = 1..``hops`` and direction, the weighted mean of the present neighbours'
states (of the previous hop's means, for k > 1) goes through its own linear map, and the context is their sum:

    context_i = Σ_k U_k (P_up^k h)_i + D_k (P_down^k h)_i

On an undirected graph both lists hold every neighbour and one map per hop is used. Two sparse [N, N] products
per hop and direction (``sparse_mean``), no N × N tensor; absent VDs relay nothing.
"""

from __future__ import annotations

from typing import Literal

import attrs
import numpy as np
import torch
from attrs.validators import ge, gt, le
from torch import nn

from social_xlstm import EdgeRecordingPooling, RecipeError, hookimpl, link_lists, sparse_mean


@attrs.frozen
class RoadGraphConfig:
    weights: Literal["auto", "distance", "stored", "uniform"] = "auto"  # auto: distance if links have costs,
    # else the stored weights, else uniform
    sigma_m: float = attrs.field(default=0.0, validator=ge(0.0))  # kernel width; 0 = root mean square of the costs
    threshold: float = attrs.field(default=0.0, validator=[ge(0.0), le(1.0)])  # cut links weighing less (DCRNN: 0.1)
    hops: int = attrs.field(default=1, validator=gt(0))
    directed: bool = True  # separate maps for upstream and downstream neighbours
    learn_link_weights: bool = False  # a learned factor per link (exp of a parameter, starting at 1)


class RoadGraphPooling(EdgeRecordingPooling):
    name = "road_graph"
    Config = RoadGraphConfig
    uses_positions = False
    uses_road_graph = True

    def __init__(self, config: RoadGraphConfig, spec, dim: int):
        super().__init__(config, spec, dim)
        graph = spec.road_graph
        keep, weight = link_weights(graph, config)
        source, target = graph.source[keep], graph.target[keep]
        directed = config.directed and graph.directed
        if directed:  # upstream of i: the links into i; downstream: the links out of i
            lists = {"up": (target, source, np.arange(len(source))), "down": (source, target, np.arange(len(source)))}
        else:
            both = np.arange(2 * len(source)) % max(1, len(source))
            lists = {"both": (np.r_[source, target], np.r_[target, source], both)}
        self.directions = tuple(lists)
        for direction, (rows, columns, links) in lists.items():
            index, position, valid = link_lists(rows, columns, graph.num_vds)
            self.register_buffer(f"{direction}_index", index, persistent=False)
            link = torch.as_tensor(links)[position] if len(links) else position
            self.register_buffer(f"{direction}_link", link, persistent=False)
            self.register_buffer(f"{direction}_valid", valid, persistent=False)
        self.register_buffer("link_weight", torch.as_tensor(weight, dtype=torch.float32), persistent=False)
        self.link_scale = nn.Parameter(torch.zeros(len(weight))) if config.learn_link_weights else None
        self.maps = nn.ModuleDict(
            {f"{d}{k}": nn.Linear(dim, dim, bias=False) for k in range(1, config.hops + 1) for d in self.directions}
        )

    def terms(self, direction: str) -> torch.Tensor:
        """``[N, K]`` each listed link's weight (0 on padding), times its learned factor."""
        link, valid = getattr(self, f"{direction}_link"), getattr(self, f"{direction}_valid")
        weight = self.link_weight
        if self.link_scale is not None:
            weight = weight * torch.exp(self.link_scale.clamp(-10.0, 10.0))
        if not len(weight):
            return valid.float()
        rows = nn.functional.embedding(link, weight[:, None]).squeeze(-1)  # not weight[link]: see EncoderInput.per_vd
        return rows * valid

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:
        context = torch.zeros_like(hidden)
        recorded = []
        for direction in self.directions:
            index, terms = getattr(self, f"{direction}_index"), self.terms(direction)
            states = hidden
            for hop in range(1, self.config.hops + 1):
                states, total = sparse_mean(index, terms, states, node_mask)
                context = context + self.maps[f"{direction}{hop}"](states)
                if hop == 1 and not self.training:
                    recorded.append(terms * node_mask[:, index] / total[..., None])
        if recorded:
            self.record(torch.cat(recorded, 2))
        return context

    def lists(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every VD's links, all directions side by side: ``index [N, K]`` and the links' terms ``[N, K]``."""
        index = torch.cat([getattr(self, f"{d}_index") for d in self.directions], 1)
        with torch.no_grad():
            return index, torch.cat([self.terms(d) for d in self.directions], 1)

    def edges(self) -> tuple[torch.Tensor, torch.Tensor]:
        index, terms = self.lists()
        if self.edge_weights is not None:
            return index, self.edge_weights
        return index, terms / terms.sum(1, keepdim=True).clamp_min(torch.finfo(terms.dtype).tiny)

    def summary(self) -> dict[str, float]:
        index, terms = self.lists()
        scalars = {"pooling/isolated_fraction": float((terms.sum(1) == 0).float().mean())}
        if self.link_scale is not None and len(self.link_scale):
            scalars["pooling/link_factor_mean"] = float(torch.exp(self.link_scale.detach()).mean())
        return scalars


def link_weights(graph, config: RoadGraphConfig) -> tuple[np.ndarray, np.ndarray]:
    """The links kept (bool [E]) and their weights: the Gaussian kernel of the road distance, the stored
    weight or 1, as ``config.weights`` says; links weighing less than ``config.threshold`` are cut."""
    kind = config.weights
    if kind == "auto":
        kind = "distance" if graph.cost is not None else "stored" if graph.weight is not None else "uniform"
    if kind == "distance":
        if graph.cost is None:
            raise RecipeError('weights = "distance" needs road distances, and the road graph\'s links carry none')
        sigma = config.sigma_m or float(np.sqrt(np.mean(np.square(graph.cost)))) or 1.0
        weight = np.exp(-np.square(graph.cost / sigma))
    elif kind == "stored":
        if graph.weight is None:
            raise RecipeError('weights = "stored" needs stored link weights, and the road graph\'s links carry none')
        weight = graph.weight.astype(np.float64)
    else:
        weight = np.ones(graph.num_links)
    keep = weight >= config.threshold if kind != "uniform" else np.ones(graph.num_links, bool)
    return keep, weight[keep]


@hookimpl
def register_plugins(register):
    register(RoadGraphPooling)
