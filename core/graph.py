"""The road graph of a detector network: directed links between VDs, part of the data and given to plugins
(``DatasetSpec.road_graph``); ``core.data.road_graph`` reads it from the field's standard files.

A link runs from VD ``source`` to VD ``target`` in the direction of travel (the ``from,to`` of PEMS0X's
``distance.csv``, the row → column of DCRNN's ``adj_mx``), so ``source`` is upstream of ``target``. A link
carries a road distance (``cost``, metres) or a weight (``weight``, e.g. DCRNN's Gaussian kernel), or both.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph

from core.errors import DataError


@attrs.frozen(eq=False)
class RoadGraph:
    """Directed links between the N VDs of a network, by VD index; ``cost`` in metres and ``weight`` are
    per-link arrays, or None when the source gave none. ``directed = False``: each link holds both ways."""

    num_vds: int
    source: np.ndarray  # int64 [E]
    target: np.ndarray  # int64 [E]
    cost: np.ndarray | None = None  # float64 [E] road distance, metres
    weight: np.ndarray | None = None  # float64 [E] > 0
    directed: bool = True

    def __attrs_post_init__(self) -> None:
        for name in ("source", "target"):
            ends = getattr(self, name)
            if len(ends) and (ends.min() < 0 or ends.max() >= self.num_vds):
                raise DataError(f"road graph: a link's {name} is not a VD index 0..{self.num_vds - 1}")
        if (self.source == self.target).any():
            raise DataError("road graph: a link from a VD to itself (self-links are not stored)")
        for name in ("cost", "weight"):
            values = getattr(self, name)
            if values is not None and (len(values) != len(self.source) or not np.isfinite(values).all()):
                raise DataError(f"road graph: '{name}' must hold one finite value per link")

    @property
    def num_links(self) -> int:
        return len(self.source)

    def select(self, keep: np.ndarray) -> RoadGraph:
        """The links between the VDs ``keep`` (indices, in their new order), renumbered."""
        new = np.full(self.num_vds, -1)
        new[keep] = np.arange(len(keep))
        kept = (new[self.source] >= 0) & (new[self.target] >= 0)
        return attrs.evolve(
            self,
            num_vds=len(keep),
            source=new[self.source[kept]],
            target=new[self.target[kept]],
            cost=None if self.cost is None else self.cost[kept],
            weight=None if self.weight is None else self.weight[kept],
        )

    def matrix(self, values: np.ndarray | None = None) -> sparse.csr_array:
        """The [N, N] sparse matrix with ``values`` (default 1) at (source, target)."""
        data = np.ones(self.num_links) if values is None else values
        return sparse.csr_array((data, (self.source, self.target)), shape=(self.num_vds, self.num_vds))

    def road_distances(self, limit_m: float, chunk: int = 1024) -> sparse.csr_array:
        """Shortest road distance (m) between every two VDs at most ``limit_m`` apart, either way along the links
        (a sparse [N, N], self excluded); needs ``cost``. Searched ``chunk`` source VDs at a time, so memory stays
        ``chunk`` × N."""
        if self.cost is None:
            raise DataError("the road graph has no road distances (its links carry weights only)")
        both = self.matrix(np.maximum(self.cost, 1e-3))  # a zero-cost link still links
        rows = []
        for lo in range(0, self.num_vds, chunk):
            sources = np.arange(lo, min(lo + chunk, self.num_vds))
            found = csgraph.dijkstra(both, directed=False, indices=sources, limit=limit_m)
            found[~np.isfinite(found)] = 0.0
            found[np.arange(len(sources)), sources] = 0.0
            rows.append(sparse.csr_array(found))
        return sparse.vstack(rows, format="csr")

    def summary(self, vd_ids: Sequence[str]) -> str:
        """One line: links, direction, connected components, degree range, VDs with no link."""
        if not self.num_links:
            return "road graph: no links"
        degree = np.bincount(self.source, minlength=self.num_vds) + np.bincount(self.target, minlength=self.num_vds)
        components = csgraph.connected_components(self.matrix(), directed=True, connection="weak")[0]
        lonely = [vd_ids[i] for i in np.flatnonzero(degree == 0)]
        carries = " and ".join(name for name in ("cost", "weight") if getattr(self, name) is not None)
        return (
            f"road graph: {self.num_links} {'directed' if self.directed else 'undirected'} links ({carries}), "
            f"{components} connected component(s), links per VD {degree.min()}..{degree.max()}, "
            f"{len(lonely)} VD(s) with no link"
            + (f" ({', '.join(lonely[:5])}{', ...' if len(lonely) > 5 else ''})" if lonely else "")
        )
