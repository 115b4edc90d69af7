"""``python -m core.data``: import real data to the project's HDF5 schema, write the synthetic default, inspect."""

from __future__ import annotations

import argparse
import sys

import attrs
import numpy as np

from core.data import importers, read_hdf5, road_graph, write_hdf5
from core.data.resample import parse_how, resample
from core.data.synthetic import generate
from core.errors import DataError, run_cli


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    wide = commands.add_parser("import-wide", help="time x detectors CSV (header = ids)")
    wide.add_argument("values")
    wide.add_argument("--start", required=True, help="time of the first row, ISO 8601, e.g. 2012-03-01T00:00")
    wide.add_argument("--interval", type=int, default=300, help="seconds between rows (default 300)")

    per = commands.add_parser("import-per-detector", help="one Stamp,value CSV per detector")
    per.add_argument("files", nargs="+")
    per.add_argument("--id-pattern", default=r"(\d+)", help="regex whose first group is the id in a file name")

    pandas = commands.add_parser("import-pandas", help="metr-la.h5 / pems-bay.h5 (pandas store, key df)")
    pandas.add_argument("h5")

    npz = commands.add_parser("import-npz", help="PEMS03/04/07/08 layout: npz array 'data' [T, N, F] (+ distance.csv)")
    npz.add_argument("npz")
    npz.add_argument("--features", required=True, help="names of the F features in order, e.g. flow,occupancy,speed")
    npz.add_argument("--start", required=True, help="time of the first step, ISO 8601, e.g. 2018-01-01T00:00")
    npz.add_argument("--interval", type=int, default=300, help="seconds between steps (default 300)")
    npz.add_argument("--ids", help="detector ids, one per line or comma-separated (default: the indices 0..N-1)")
    for sub in (wide, per, pandas):
        sub.add_argument(
            "--feature", default="speed", help="name of the imported feature (zeros are missing for speed)"
        )
    for sub in (wide, per, pandas, npz):
        sub.add_argument("--locations", help="[index,]sensor_id,latitude,longitude CSV (none: no positions)")
        sub.add_argument(
            "--zero-missing",
            default=",".join(importers.ZERO_MISSING),
            help="features whose zeros are missing readings, comma-separated (default: speed; '' for none)",
        )
        sub.add_argument("--edges", help="road links CSV from,to[,cost] by VD index or id (PEMS0X distance.csv)")
        sub.add_argument("--cost-unit", default="m", choices=sorted(road_graph.UNITS_M), help="unit of --edges costs")
        sub.add_argument("--adjacency", help="DCRNN's adj_mx.pkl [sensor_ids, sensor_id_to_index, adj_mx]")
        sub.add_argument("--out", required=True, help="HDF5 file to write")
        sub.add_argument(
            "--vd-attributes",
            help="CSV 'sensor_id,<attribute>,...' (e.g. road,direction) for the pooling's 'same' filter",
        )

    synthetic = commands.add_parser("synthetic", help="write the embedded default network")
    synthetic.add_argument("--seed", type=int, default=0)
    synthetic.add_argument("--days", type=int, default=21)
    synthetic.add_argument("--out", required=True)

    resampled = commands.add_parser("resample", help="aggregate an HDF5 file of the schema to longer steps")
    resampled.add_argument("h5")
    resampled.add_argument("--interval", type=int, required=True, help="seconds per new step, e.g. 900 for 15 minutes")
    resampled.add_argument(
        "--how", default="", help="per feature, sum or mean (the default), e.g. flow=sum,occupancy=mean,speed=mean"
    )
    resampled.add_argument("--out", required=True, help="HDF5 file to write")

    info = commands.add_parser("info", help="summarise an HDF5 file of the schema")
    info.add_argument("h5")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")

    args = parser.parse_args(argv)
    return run_cli(lambda: command(args), args.debug)


def command(args: argparse.Namespace) -> int:
    if args.command == "info":
        print(summary(read_hdf5(args.h5)))
        return 0
    if args.command == "synthetic":
        data = generate(args.seed, args.days)
    elif args.command == "resample":
        data = resample(read_hdf5(args.h5), args.interval, parse_how(args.how))
    else:
        data = imported(args)
    write_hdf5(data, args.out)
    print(f"wrote {args.out}\n{summary(data)}")
    return 0


def imported(args: argparse.Namespace):
    """The readings of an ``import-*`` command, with the VD attributes and road graph it names."""
    zeros = tuple(name.strip() for name in args.zero_missing.split(",") if name.strip())
    if args.command == "import-wide":
        data = importers.import_wide_csv(args.values, args.locations, args.start, args.interval, args.feature, zeros)
    elif args.command == "import-per-detector":
        data = importers.import_per_detector(args.files, args.locations, args.feature, args.id_pattern, zeros)
    elif args.command == "import-pandas":
        data = importers.import_pandas_h5(args.h5, args.locations, args.feature, zero_missing=zeros)
    else:
        features = [name.strip() for name in args.features.split(",")]
        data = importers.import_npz(args.npz, features, args.start, args.interval, args.ids, args.locations, zeros)
    if args.vd_attributes:
        data = attrs.evolve(data, vd_attributes=importers.read_vd_attributes(args.vd_attributes, data.vd_ids))
    if args.edges and args.adjacency:
        raise DataError("give the road graph once: --edges or --adjacency, not both")
    if args.edges or args.adjacency:
        graph, note = (
            road_graph.read_edges(args.edges, data.vd_ids, args.cost_unit)
            if args.edges
            else road_graph.read_adjacency(args.adjacency, data.vd_ids)
        )
        print(note)
        data = attrs.evolve(data, road_graph=graph)
    return data


def summary(data) -> str:
    start, end = (np.datetime64(int(t), "s") for t in data.timestamps[[0, -1]])
    missing = np.isnan(data.features).mean(axis=(0, 1))
    positions = (
        "none" if data.latlon is None else f"{int(np.isfinite(data.latlon).all(1).sum())} of {len(data.vd_ids)} VDs"
    )
    jumps = data.time_jumps()
    gaps = [
        f"step {i} ({int(data.timestamps[i] - data.timestamps[i - 1])} s after the previous step)" for i in jumps[:5]
    ]
    lines = [
        f"{data.num_steps} steps from {start} to {end} every {data.interval} s; {len(data.vd_ids)} VDs; "
        f"positions: {positions}",
        *(
            [f"irregular time steps: {len(jumps)}: " + ", ".join(gaps) + (", ..." if len(jumps) > 5 else "")]
            if len(jumps)
            else []
        ),
        *(f"  {name}: {100 * m:.1f}% missing" for name, m in zip(data.feature_names, missing)),
        "VD attributes: "
        + (", ".join(f"{k} ({len(set(v) - {''})} values)" for k, v in data.vd_attributes.items()) or "none"),
        "no road graph" if data.road_graph is None else data.road_graph.summary(data.vd_ids),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
