"""Pooling benchmark: forward + backward of each social-pooling strategy as the network grows.

    python bench/pooling.py                      # N = 207, 1,000, 10,000 on CPU
    python bench/pooling.py --device cuda
    python bench/pooling.py --vds 10000 --strategies radius road_graph   # some strategies only

VDs on a jittered 250 m grid, radius 600 m, at most 16 neighbours each (about 16 for inner VDs); B = 8,
E = 64; ``learned_graph``: k = 8 from the whole network (+ 2 explored in training), and with the distance
neighbours too; ``road_graph``: a synthetic road graph on the grid (one-way roads along its rows and columns,
each VD linked to the next of both: about 2 links in and 2 out), and with 2 hops and learned link weights. A
step is forward + backward + an SGD update (a learned graph then chooses its edges again, as in training). Each
case runs in its own process. The table gives the median step, the one-off neighbour-list build, the peak memory
of the steps and memory per VD (flat when memory grows linearly in N).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from bench.harness import memory_label, run_cases, time_steps  # noqa: E402
from core.api import DatasetSpec  # noqa: E402
from core.data.road_graph import RoadGraph  # noqa: E402
from plugins.pooling.attention import AttentionConfig, AttentionPooling  # noqa: E402
from plugins.pooling.learnable_radius import LearnableRadiusConfig, LearnableRadiusPooling  # noqa: E402
from plugins.pooling.learned_graph import LearnedGraphConfig, LearnedGraphPooling  # noqa: E402
from plugins.pooling.radius import RadiusConfig, RadiusPooling  # noqa: E402
from plugins.pooling.road_graph import RoadGraphConfig, RoadGraphPooling  # noqa: E402

NEIGHBOURHOOD = {"radius_m": 600.0, "max_neighbours": 16}
STRATEGIES = {
    "radius": lambda spec: RadiusPooling(RadiusConfig(**NEIGHBOURHOOD), spec, 64),
    "attention": lambda spec: AttentionPooling(AttentionConfig(**NEIGHBOURHOOD), spec, 64),
    "learnable_radius": lambda spec: LearnableRadiusPooling(
        LearnableRadiusConfig(**NEIGHBOURHOOD, initial_radius_m=400.0), spec, 64
    ),
    "learned_graph": lambda spec: LearnedGraphPooling(LearnedGraphConfig(), spec, 64),
    "learned_graph+distance": lambda spec: LearnedGraphPooling(
        LearnedGraphConfig(**NEIGHBOURHOOD, with_distance=True), spec, 64
    ),
    "road_graph": lambda spec: RoadGraphPooling(RoadGraphConfig(), spec, 64),
    "road_graph+hops2+learned_links": lambda spec: RoadGraphPooling(
        RoadGraphConfig(hops=2, learn_link_weights=True), spec, 64
    ),
}


def grid(n: int, spacing: float = 250.0) -> torch.Tensor:
    side = math.ceil(math.sqrt(n))
    g = torch.Generator().manual_seed(0)
    cells = torch.stack([torch.arange(n) % side, torch.arange(n) // side], 1).float()
    return (cells + 0.3 * torch.rand(n, 2, generator=g)) * spacing


def grid_roads(n: int, positions: torch.Tensor) -> RoadGraph:
    """One-way roads along the grid's rows and columns: each VD links to the next VD of its row and column."""
    side = math.ceil(math.sqrt(n))
    vd = torch.arange(n)
    along_row = vd[(vd % side < side - 1) & (vd + 1 < n)]
    along_column = vd[vd + side < n]
    source = torch.cat([along_row, along_column])
    target = torch.cat([along_row + 1, along_column + side])
    cost = (positions[target] - positions[source]).norm(dim=1).double()
    return RoadGraph(n, source.numpy(), target.numpy(), cost=cost.numpy())


def measure(name: str, n: int, args: argparse.Namespace) -> dict:
    torch.manual_seed(0)
    device = torch.device(args.device)
    positions = grid(n)
    spec = DatasetSpec(
        tuple(f"vd{i}" for i in range(n)),
        ("speed",),
        2,
        12,
        12,
        positions_xy=positions,
        road_graph=grid_roads(n, positions),
    )
    started = time.perf_counter()
    pooling = STRATEGIES[name](spec).to(device)
    build = time.perf_counter() - started
    hidden = torch.randn(args.batch, n, 64, device=device, requires_grad=True)
    node_mask = torch.ones(args.batch, n, dtype=torch.bool, device=device)
    optimizer = torch.optim.SGD([hidden, *pooling.parameters()], lr=1e-4)

    def step() -> None:
        optimizer.zero_grad()
        pooling(hidden, node_mask).square().mean().backward()
        optimizer.step()  # changed weights: a learned graph chooses its edges again, as in training

    timing = time_steps(step, device, args.warmup, args.repeats)
    neighbours = (pooling.edges()[1] > 0).sum(1).float().mean()
    return {"strategy": name, "vds": n, "build_s": build, "mean_neighbours": float(neighbours), **timing}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--vds", type=int, nargs="+", default=[207, 1000, 10000])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES), metavar="NAME")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child[0], int(args.child[1]), args)))
        return

    listed = {"--vds", "--strategies", *map(str, args.vds), *args.strategies}
    forwarded = [a for a in sys.argv[1:] if a not in listed]
    rows = run_cases(__file__, [[name, str(n)] for n in args.vds for name in args.strategies], forwarded)
    memory = memory_label(args.device)
    print(
        f"\npooling: B={args.batch} E=64, radius 600 m, <= 16 neighbours, on {args.device}; median of {args.repeats} "
        f"fwd+bwd+SGD after {args.warmup} warm-up"
    )
    print(f"| strategy | N | neighbours (mean) | build s | step ms | {memory} | KB per VD |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['strategy']} | {r['vds']:,} | {r['mean_neighbours']:.1f} | {r['build_s']:.2f} | "
            f"{1000 * r['seconds']:.1f} | {r['peak_mb']:.0f} | {1024 * r['peak_mb'] / r['vds']:.1f} |"
        )


if __name__ == "__main__":
    main()
