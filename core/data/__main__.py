"""``python -m core.data``: import real data to the project's HDF5 schema, write the synthetic default, inspect."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator

import attrs
import numpy as np

from core.data import TrafficData, importers, read_hdf5, road_graph, write_hdf5
from core.data.dataset import FeatureCounts, Layout, regular_interval, time_blocks, time_jumps
from core.data.hdf5 import open_readings, write_hdf5_stream
from core.data.largest import FEATURE, NETWORKS, import_largest
from core.data.resample import parse_how, resample
from core.data.synthetic import generate
from core.errors import DataError, run_cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return run_cli(lambda: command(args), args.debug)


def parser() -> argparse.ArgumentParser:
    """The command line: one subcommand per importer, ``synthetic`` and ``info``."""
    parser = argparse.ArgumentParser(prog="python -m core.data", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    wide = commands.add_parser("import-wide", help="time x detectors CSV (header = ids)")
    wide.add_argument("values")
    wide.add_argument("--start", required=True, help="time of the first row, ISO 8601, e.g. 2012-03-01T00:00")
    wide.add_argument("--interval", type=int, default=300, help="seconds between rows (default 300)")

    per = commands.add_parser("import-per-detector", help="one Stamp,value CSV per detector")
    per.add_argument("files", nargs="+")
    per.add_argument("--id-pattern", default=r"(\d+)", help="regex whose first group is the id in a file name")
    per.add_argument("--feature", help="what the readings are (default: the name in the files' header, Stamp,Speed)")

    pandas = commands.add_parser("import-pandas", help="metr-la.h5 / pems-bay.h5 (pandas store, key df)")
    pandas.add_argument("h5")
    for sub in (wide, pandas):
        sub.add_argument(
            "--feature", help="what the readings are, e.g. speed or flow (required: the file does not say)"
        )

    npz = commands.add_parser("import-npz", help="PEMS03/04/07/08 layout: npz array 'data' [T, N, F] (+ distance.csv)")
    npz.add_argument("npz")
    npz.add_argument("--features", required=True, help="names of the F features in order, e.g. flow,occupancy,speed")
    npz.add_argument("--start", required=True, help="time of the first step, ISO 8601, e.g. 2018-01-01T00:00")
    npz.add_argument("--interval", type=int, default=300, help="seconds between steps (default 300)")
    npz.add_argument("--ids", help="detector ids, one per line or comma-separated (default: the indices 0..N-1)")
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

    largest = commands.add_parser(
        "import-largest", help="LargeST: {ca,sd,gba,gla}_his[_raw]_YEAR.h5 (5-minute flow) + _meta.csv + _rn_adj.npy"
    )
    largest.add_argument("his", help="the readings: a pandas store, key t (LargeST's ca_his_raw_2019.h5, ...)")
    largest.add_argument("--meta", required=True, help="LargeST's {name}_meta.csv: ID,Lat,Lng,District,...")
    largest.add_argument("--adjacency", help="LargeST's {name}_rn_adj.npy [N, N], in the meta's order")
    largest.add_argument("--network", default="ca", choices=["ca", *NETWORKS], help="the meta's sensors to keep")
    largest.add_argument("--since", help="first time kept, ISO 8601 (e.g. 2019-01-01; default: the file's first)")
    largest.add_argument("--until", help="first time left out, ISO 8601 (e.g. 2020-01-01; default: none)")
    largest.add_argument("--resample", type=int, help="seconds per step: LargeST's rounded means (900: 15 minutes)")
    largest.add_argument(
        "--zero-missing",
        default=FEATURE,
        help="'flow' (default: a 0 is masked, as LargeST's metrics do) or '' (a 0 flow is a reading)",
    )
    largest.add_argument("--out", required=True, help="HDF5 file to write")

    repack = commands.add_parser(
        "repack", help="rewrite an HDF5 file of the schema with its readings compressed or (--contiguous) not"
    )
    repack.add_argument("h5")
    repack.add_argument("--out", required=True, help="HDF5 file to write")

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
    for sub in (largest, repack, resampled):
        sub.add_argument(
            "--contiguous",
            action="store_true",
            help='store the readings uncompressed, as [data] store = "disk" reads them (a series longer than memory)',
        )

    info = commands.add_parser("info", help="summarise an HDF5 file of the schema")
    info.add_argument("h5")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    return parser


def command(args: argparse.Namespace) -> int:
    if args.command == "info":
        print(summary(read_hdf5(args.h5)))
        return 0
    if args.command in ("synthetic", "resample"):
        if args.command == "synthetic":
            data = generate(args.seed, args.days)
        else:
            data = resample(read_hdf5(args.h5), args.interval, parse_how(args.how))
        write_hdf5(data, args.out, getattr(args, "contiguous", False))
        print(f"wrote {args.out}\n{summary(data)}")
        return 0
    if args.command == "repack":
        layout, counts = repacked(args.h5, args.out, args.contiguous)
        print(f"wrote {args.out}\n{summary(layout, counts)}")
        return 0
    zeros = tuple(name.strip() for name in args.zero_missing.split(",") if name.strip())
    if args.command == "import-largest":
        written, counts = import_largest(
            args.his,
            args.meta,
            args.out,
            args.adjacency,
            args.network,
            args.since,
            args.until,
            args.resample,
            zeros,
            contiguous=args.contiguous,
        )
    else:
        written = imported(args, zeros)
        write_hdf5(written, args.out)
        counts = FeatureCounts.of(written.features)
    print(f"wrote {args.out}\n{summary(written, counts, zeros)}")
    return 0


def repacked(source: str, out: str, contiguous: bool) -> tuple[Layout, FeatureCounts]:
    """``source`` written again to ``out``, a block of steps at a time, with its readings laid out as asked."""
    with open_readings(source) as (layout, dataset):
        counts = FeatureCounts.of(np.zeros((0, *layout.shape[1:]), np.float32))

        def blocks() -> Iterator[np.ndarray]:
            for _, block in time_blocks(dataset):  # an h5py dataset reads the steps sliced
                counts.add(block)
                yield block.astype(np.float32, copy=False)

        write_hdf5_stream(layout, blocks(), out, contiguous)
    return layout, counts


def imported(args: argparse.Namespace, zeros: tuple[str, ...]) -> TrafficData:
    """The readings of an ``import-*`` command, with the VD attributes and road graph it names."""
    check_feature(args)
    if args.command == "import-wide":
        data = importers.import_wide_csv(
            args.values, args.locations, args.start, args.interval, feature=args.feature, zero_missing=zeros
        )
    elif args.command == "import-per-detector":
        data = importers.import_per_detector(args.files, args.locations, args.feature, args.id_pattern, zeros)
    elif args.command == "import-pandas":
        data = importers.import_pandas_h5(args.h5, args.locations, feature=args.feature, zero_missing=zeros)
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


def check_feature(args: argparse.Namespace) -> None:
    """An import whose file does not say what its readings are needs ``--feature``: never a guess."""
    if args.command in ("import-wide", "import-pandas") and not args.feature:
        raise DataError(
            f"{args.values if args.command == 'import-wide' else args.h5}: the file does not say what its readings "
            "are: give --feature (e.g. --feature speed, --feature flow)"
        )


def summary(data: Layout, counts: FeatureCounts | None = None, zero_missing: tuple[str, ...] | None = None) -> str:
    """What a file holds; after an import (``zero_missing`` given), how each feature's zeros were taken."""
    counts = counts or FeatureCounts.of(data.features)
    start, end = (np.datetime64(int(t), "s") for t in data.timestamps[[0, -1]])
    positions = (
        "none" if data.latlon is None else f"{int(np.isfinite(data.latlon).all(1).sum())} of {len(data.vd_ids)} VDs"
    )
    jumps = time_jumps(data.timestamps)
    gaps = [
        f"step {i} ({int(data.timestamps[i] - data.timestamps[i - 1])} s after the previous step)" for i in jumps[:5]
    ]
    lines = [
        f"{len(data.timestamps)} steps from {start} to {end} every {regular_interval(data.timestamps)} s; "
        f"{len(data.vd_ids)} VDs; positions: {positions}",
        *(
            [f"irregular time steps: {len(jumps)}: " + ", ".join(gaps) + (", ..." if len(jumps) > 5 else "")]
            if len(jumps)
            else []
        ),
        *(
            f"  {name}: {100 * missing / counts.readings:.1f}% missing{_zero_rule(name, zeros, zero_missing)}"
            for name, missing, zeros in zip(data.feature_names, counts.missing, counts.zeros)
        ),
        "VD attributes: "
        + (", ".join(f"{k} ({len(set(v) - {''})} values)" for k, v in data.vd_attributes.items()) or "none"),
        "no road graph" if data.road_graph is None else data.road_graph.summary(data.vd_ids),
    ]
    return "\n".join(lines)


def _zero_rule(feature: str, zeros: int, zero_missing: tuple[str, ...] | None) -> str:
    """How an import took ``feature``'s zeros ("" for a file merely read)."""
    if zero_missing is None:
        return ""
    if feature in zero_missing:
        return f"; a 0 counts as missing (--zero-missing {','.join(zero_missing)})"
    return f"; a 0 counts as a reading ({zeros:,} of them; --zero-missing {feature} would count them as missing)"


if __name__ == "__main__":
    sys.exit(main())
