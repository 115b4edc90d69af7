"""Collator benchmark: batches per second of each collator, and what dynamic padding saves in training.

    python bench/collators.py                              # METR-LA week from ../shared/data, CPU
    python bench/collators.py --device cuda --encoder xlstm_shared

Data: METR-LA's first week (207 VDs), read from ``--data`` (the publisher filled its gaps), as it is
("complete") and with outages drawn from a fixed seed ("outages": VDs that come online late, drop out for
1–8 hours, or are down when the window is cut), windows of ``history`` ≤ 48 steps (at least 6 after a gap of
3 missing steps). Three tables:

1. collation: samples/s of ``distributed``, ``centralized`` and ``dynamic_padding`` turning B = 64 windows
   into a batch (the window cut included), and the share of the padded [T × VD] grid that is real;
2. training step (forward + backward + Adam, pooling ``radius``, B = 16) of each encoder: dynamic padding vs
   padding every sample to the global maximum (all VDs, the full history: ``centralized``), same batches;
3. the seed's claim (batch 1 → 4 → 8 → 16 gives 2.5–6×): samples/s of dynamic padding against batch size 1.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import attrs  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.data.config import DataConfig  # noqa: E402
from core.data.importers import import_wide_csv  # noqa: E402
from core.data.windows import Prepared, prepare  # noqa: E402
from core.model import Forecaster  # noqa: E402
from core.recipe import ModelConfig  # noqa: E402
from core.training.metrics import masked_mae  # noqa: E402
from plugins.collators.centralized import CentralizedCollator  # noqa: E402
from plugins.collators.distributed import DistributedCollator  # noqa: E402
from plugins.collators.dynamic_padding import DynamicPaddingCollator, DynamicPaddingConfig  # noqa: E402
from plugins.encoders.lstm import LSTMConfig, LSTMEncoder  # noqa: E402
from plugins.encoders.xlstm_shared import SharedXLSTMConfig, SharedXLSTMEncoder  # noqa: E402
from plugins.pooling.radius import RadiusConfig, RadiusPooling  # noqa: E402

HISTORY, MIN_HISTORY, GAP_STEPS, HORIZON = 48, 6, 3, 12
COLLATORS = {
    "distributed": lambda spec: DistributedCollator(DistributedCollator.Config(), spec),
    "centralized": lambda spec: CentralizedCollator(CentralizedCollator.Config(), spec),
    "dynamic_padding": lambda spec: DynamicPaddingCollator(DynamicPaddingConfig(), spec),
}
ENCODERS = {
    "lstm": lambda spec: LSTMEncoder(LSTMConfig(embedding_dim=64), spec),
    "xlstm_shared": lambda spec: SharedXLSTMEncoder(
        SharedXLSTMConfig(embedding_dim=64, num_blocks=2, slstm_at=(1,)), spec
    ),
}


def with_outages(data, seed: int = 0):
    """A third of the VDs online late (up to 2 days), half with daily 1–8 hour outages: the gaps real networks have."""
    rng = np.random.default_rng(seed)
    features = data.features.copy()
    steps, vds = features.shape[:2]
    for vd in rng.choice(vds, vds // 3, replace=False):
        features[: rng.integers(1, 576), vd] = np.nan
    for vd in rng.choice(vds, vds // 2, replace=False):
        for start in rng.integers(0, steps, steps // 288):
            features[start : start + rng.integers(12, 97), vd] = np.nan
    return attrs.evolve(data, features=features)


def batches(prepared: Prepared, size: int, count: int, seed: int = 0) -> list[list[int]]:
    order = torch.randperm(len(prepared.splits["train"]), generator=torch.Generator().manual_seed(seed))
    return [order[i * size : (i + 1) * size].tolist() for i in range(count)]


def real_share(prepared: Prepared, picks: list[list[int]]) -> tuple[float, float]:
    """Share of the [T × N] grid (global maximum) and of the dynamic [T_b × M_b] grid that holds real steps."""
    dataset, glob, dyn = prepared.splits["train"], [], []
    for pick in picks:
        lengths = prepared.series.lengths(dataset.starts[pick]).float()  # [B, N]
        active = lengths > 0
        glob.append(float(lengths.sum() / (lengths.numel() * HISTORY)))
        dyn.append(float(lengths.sum() / (len(pick) * lengths.max() * active.sum(1).max())))
    return statistics.mean(glob), statistics.mean(dyn)


def collation_rate(prepared: Prepared, collator, picks: list[list[int]]) -> float:
    dataset = prepared.splits["train"]
    started = time.perf_counter()
    for pick in picks:
        collator(dataset.__getitems__(pick)).canonical()
    return sum(map(len, picks)) / (time.perf_counter() - started)


def training_rate(prepared: Prepared, collator, encoder: str, picks: list[list[int]], device: torch.device) -> float:
    """Samples/s of forward + backward + Adam over ``picks`` (the first batch is a warm-up)."""
    torch.manual_seed(0)
    spec = prepared.spec()
    enc = ENCODERS[encoder](spec)
    model = Forecaster(
        enc, RadiusPooling(RadiusConfig(radius_m=1500.0), spec, enc.out_dim), ModelConfig(hidden_dim=64)
    ).to(device)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    ready = [collator(prepared.splits["train"].__getitems__(pick)).to(device).canonical() for pick in picks]

    def step(batch) -> None:
        optimizer.zero_grad(set_to_none=True)
        masked_mae(model(batch), batch.target, batch.target_mask).backward()
        optimizer.step()

    step(ready[0])
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for batch in ready[1:]:
        step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return sum(map(len, picks[1:])) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "metr-la-week"))
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--encoders", nargs="+", choices=ENCODERS, default=list(ENCODERS))
    parser.add_argument("--batch", type=int, default=16, help="training batch size (table 2)")
    parser.add_argument("--batches", type=int, default=4, help="timed training batches per case")
    args = parser.parse_args()
    folder, device = Path(args.data), torch.device(args.device)
    if not (folder / "los_speed.csv").exists():
        sys.exit(f"{folder}: no los_speed.csv; pass --data DIR (see ../shared/data/README.md)")
    data = import_wide_csv(
        folder / "los_speed.csv", folder / "graph_sensor_locations.csv", start="2012-03-01T00:00:00", feature="speed"
    )
    settings = dict(history=HISTORY, horizon=HORIZON, min_history=MIN_HISTORY, gap_steps=GAP_STEPS)
    sets = {
        "complete": prepare(data, DataConfig(**settings)),
        "outages": prepare(with_outages(data), DataConfig(**settings)),
    }

    collation = []
    for name, prepared in sets.items():
        picks = batches(prepared, 64, 20)
        spec = prepared.spec()
        shares = real_share(prepared, picks)
        for collator in COLLATORS:
            share = shares[1] if collator == "dynamic_padding" else shares[0]
            collation.append((name, collator, collation_rate(prepared, COLLATORS[collator](spec), picks), share))

    training = []
    for encoder in args.encoders:
        for name, prepared in sets.items():
            picks, spec = batches(prepared, args.batch, args.batches + 1, seed=1), prepared.spec()
            rates = [
                training_rate(prepared, COLLATORS[c](spec), encoder, picks, device)
                for c in ("centralized", "dynamic_padding")
            ]
            training.append((encoder, name, *rates))

    dynamic, prepared, first = COLLATORS["dynamic_padding"], sets["outages"], args.encoders[0]
    scaling = {
        size: training_rate(
            prepared, dynamic(prepared.spec()), first, batches(prepared, size, max(3, 32 // size), seed=2), device
        )
        for size in (1, 4, 8, 16)
    }

    print(
        f"\n1. collation, N = {len(data.vd_ids)} VDs, B = 64, history <= {HISTORY} (samples/s; real = share of the "
        "padded grid that is data)"
    )
    print(f"{'data':<10} {'collator':<16} {'samples/s':>10} {'real':>6}")
    for name, collator, rate, share in collation:
        print(f"{name:<10} {collator:<16} {rate:>10.0f} {share:>6.0%}")
    print(
        f"\n2. training step + radius pooling, B = {args.batch}, on {device} (samples/s; ratio = dynamic / global max)"
    )
    print(f"{'encoder':<13} {'data':<10} {'global max':>11} {'dynamic':>9} {'ratio':>7}")
    for encoder, name, glob, dyn in training:
        print(f"{encoder:<13} {name:<10} {glob:>11.1f} {dyn:>9.1f} {dyn / glob:>6.2f}x")
    print(
        f"\n3. the dynamic padding design note's claim: {first} with dynamic padding, "
        "outages data, samples/s by batch size (ratio to batch 1)"
    )
    print(f"{'batch':>5} {'samples/s':>10} {'ratio':>7}")
    for size, rate in scaling.items():
        print(f"{size:>5} {rate:>10.1f} {rate / scaling[1]:>6.2f}x")


if __name__ == "__main__":
    main()
