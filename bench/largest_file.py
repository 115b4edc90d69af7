"""Write LargeST's three files at any size, in LargeST's exact layout, to measure ``import-largest`` on CA's size.

    python bench/largest_file.py DIR                         # CA: 8,600 sensors x 365 days of 5 minutes (~7 GB)
    python bench/largest_file.py DIR --sensors 716 --days 30
    /usr/bin/time -v python -m core.data import-largest DIR/ca_his_raw_2019.h5 --meta DIR/ca_meta.csv \\
        --adjacency DIR/ca_rn_adj.npy --resample 900 --since 2019-01-01 --until 2020-01-01 --out ca_2019.h5

``ca_his_raw_{year}.h5``: the DataFrame of float64 flow [rows, sensors] that pandas' ``to_hdf(key="t")`` writes
(fixed format), with pandas' own nodes and attributes (copied from a two-row frame that pandas writes), its
readings written a day at a time so the generator's memory stays small too: a daily profile per sensor, integer
counts, 8% NaN. ``ca_meta.csv``: LargeST's columns, sensors spread over the sub-networks' districts.
``ca_rn_adj.npy``: float64 [N, N], ones on the diagonal and a Gaussian weight to the next 5 sensors of a district.
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

DISTRICTS = (3, 4, 5, 6, 7, 8, 10, 11, 12)
STEP_S = 300


def write_his(path: Path, ids: list[str], start: str, days: int, seed: int = 0) -> Path:
    """LargeST's readings file: ``days`` of 5-minute flow for the sensors ``ids`` from ``start`` (midnight)."""
    rows = days * 86400 // STEP_S
    index = pd.date_range(start, periods=rows, freq=f"{STEP_S}s")
    with tempfile.TemporaryDirectory() as folder:
        reference = Path(folder) / "reference.h5"
        pd.DataFrame(np.zeros((2, len(ids))), index=index[:2], columns=ids).to_hdf(reference, key="t", mode="w")
        with h5py.File(reference, "r") as model, h5py.File(path, "w") as out:
            _copy_attrs(model, out)
            group = out.create_group("t")
            _copy_attrs(model["t"], group)
            for name, node in model["t"].items():
                shape = (rows, *node.shape[1:]) if name in ("axis1", "block0_values") else node.shape
                dataset = group.create_dataset(name, shape, node.dtype)  # contiguous, as pandas writes them
                _copy_attrs(node, dataset)
                if name not in ("axis1", "block0_values"):
                    dataset[...] = node[()]
            group["axis1"][...] = _ticks(index, model["t/axis1"].attrs["kind"].decode())
            day = 86400 // STEP_S
            rng = np.random.default_rng(seed)
            scale = rng.uniform(20, 400, len(ids))
            profile = 0.55 - 0.45 * np.cos(2 * np.pi * (np.arange(day) / day - 1 / 24))  # low at 1 am
            for first in range(0, rows, day):
                flow = np.round(profile[:, None] * scale * rng.lognormal(0, 0.15, (day, len(ids))))
                flow[rng.random(flow.shape) < 0.08] = np.nan
                group["block0_values"][first : first + day] = flow
    return path


def _ticks(index: pd.DatetimeIndex, kind: str) -> np.ndarray:
    """The index as pandas stores it: counts of the unit that ``kind`` names ("datetime64": pandas < 2's ns)."""
    unit = kind[len("datetime64[") : -1] if kind.endswith("]") else "ns"
    return index.values.astype(f"datetime64[{unit}]").astype(np.int64)


def _copy_attrs(source, target) -> None:
    for key, value in source.attrs.items():
        target.attrs.create(key, value, dtype=source.attrs.get_id(key).dtype)


def write_meta(path: Path, ids: list[str], seed: int = 0) -> np.ndarray:
    """LargeST's ``ca_meta.csv`` for ``ids``; returns each sensor's district."""
    rng = np.random.default_rng(seed)
    districts = rng.choice(DISTRICTS, len(ids))
    with open(path, "w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ID", "Lat", "Lng", "District", "County", "Fwy", "Lanes", "Type", "Direction", "ID2"])
        for i, (vd, district) in enumerate(zip(ids, districts)):
            lat, lon = 32.5 + 9 * rng.random(), -124 + 9 * rng.random()
            fwy = f"I-{rng.choice([5, 10, 405, 880])}"
            out.writerow(
                [vd, f"{lat:.6f}", f"{lon:.6f}", district, f"County {district}", fwy, rng.integers(1, 9), "Mainline",
                 rng.choice(list("NSEW")), i]
            )  # fmt: skip
    return districts


def write_adjacency(path: Path, districts: np.ndarray, rows: int = 256) -> Path:
    """float64 [N, N] written ``rows`` rows at a time: 1 on the diagonal, exp(-k^2 / 10) to the k-th next sensor
    of the same district (k = 1..5)."""
    n = len(districts)
    matrix = np.lib.format.open_memmap(path, mode="w+", dtype=np.float64, shape=(n, n))
    order = {d: np.flatnonzero(districts == d) for d in np.unique(districts)}
    rank = np.empty(n, np.int64)
    for members in order.values():
        rank[members] = np.arange(len(members))
    for lo in range(0, n, rows):
        block = np.zeros((min(rows, n - lo), n))
        for i in range(lo, lo + len(block)):
            members = order[districts[i]]
            ahead = members[rank[i] + 1 : rank[i] + 6]
            block[i - lo, ahead] = np.exp(-(np.arange(1, len(ahead) + 1) ** 2) / 10)
            block[i - lo, i] = 1.0
        matrix[lo : lo + len(block)] = block
    matrix.flush()
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--sensors", type=int, default=8600)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--year", type=int, default=2019)
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    ids = [str(400000 + 37 * i) for i in range(args.sensors)]
    districts = write_meta(args.folder / "ca_meta.csv", ids)
    write_adjacency(args.folder / "ca_rn_adj.npy", districts)
    his = write_his(args.folder / f"ca_his_raw_{args.year}.h5", ids, f"{args.year}-01-01", args.days)
    print(f"wrote {his} ({his.stat().st_size / 1e9:.2f} GB), ca_meta.csv, ca_rn_adj.npy in {args.folder}")


if __name__ == "__main__":
    main()
