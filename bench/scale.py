"""End-to-end scale benchmark: import, prepare, train, validate and forecast STID on networks of growing size.

    python bench/scale.py                                      # 716, 2,352 and 8,600 VDs, a year at 15 minutes
    python bench/scale.py --sizes 50,100 --steps 2000 --batches 2 --val-batches 2    # a smoke run
    python bench/scale.py --sizes 8600 --steps 105120 --interval 300 --contiguous --set 'data.store="disk"' \
        --poolings none                                        # CA's year at 5 minutes, its readings left on disk
    python bench/scale.py --sizes 8600 --batches 200 --set 'trainer.precision="bf16-mixed"' --nvidia-smi
                                                               # on a CUDA machine: GPU busy % and CUDA peak memory

For each size, LargeST's three files are written at that size (``bench/largest_file.py``: 5-minute flow, a road
network, the sensors' metadata) and imported as a user would (``python -m core.data import-largest --resample 900``),
then for each pooling (``--poolings``) a fresh process runs STID's stages on the imported file, each timed with the
process's peak resident memory at its end (``ru_maxrss``, less what the process held once its modules were
loaded): ``prepare`` (read, split, normalise, window; build the model), ``train`` (``--batches`` batches of
the trainer's epoch, with windows per second), ``validate`` (``--val-batches`` batches of the validation split
through the engine's metrics) and ``forecast`` (``core.predict --latest``'s function on the run's
``best_model.pt``: the latest window of the file). Prints a table, then per stage and pooling the time and the
memory per VD at the largest size over those at the smallest: 1.00 is linear growth, the target is <= 1.3.
With ``--nvidia-smi`` (on a CUDA machine) ``nvidia-smi`` samples the GPU every 200 ms meanwhile, and a second
table gives, per size and pooling, how busy the GPU was on average over the training stage and CUDA's peak
allocated memory.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

START = "2019-01-01"
POOLINGS = ("none", "road_graph", "learned_graph")
STAGES = ("import", "prepare", "train", "validate", "forecast")
TARGET_RATIO = 1.3


def main() -> None:
    args = parser().parse_args()
    if args.child:
        print(json.dumps(child(args)))
        return
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(dir=args.workdir) as folder:
        log = Path(folder) / "nvidia-smi.csv"
        with sampling_gpu(log) if args.nvidia_smi else contextlib.nullcontext():
            rows = measure(Path(folder), sizes, args)
        samples = gpu_samples(log.read_text()) if args.nvidia_smi else None
    print(table(rows, args))
    if samples is not None:
        print(gpu_table(rows, samples))
    for size in sizes:
        print(f"the series of {size} VDs: {args.steps * size * 4 / 2**20:,.0f} MB of float32 readings")
    print(ratios(rows, sizes))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="716,2352,8600", help="VDs per network, comma-separated")
    parser.add_argument("--steps", type=int, default=35040, help="steps of the imported file (35,040: a year)")
    parser.add_argument("--interval", type=int, default=900, help="seconds per step (900: LargeST's; 300: raw)")
    parser.add_argument("--contiguous", action="store_true", help="import the readings uncompressed (store = disk)")
    parser.add_argument("--poolings", default=",".join(POOLINGS), help="STID's poolings, comma-separated")
    parser.add_argument("--batches", type=int, default=20, help="training batches timed")
    parser.add_argument("--val-batches", type=int, default=20, help="validation batches timed")
    parser.add_argument("--batch-size", type=int, default=32, help="windows per training and validation batch")
    parser.add_argument("--set", action="append", default=[], metavar="TABLE.KEY=VALUE", help="recipe overrides")
    parser.add_argument("--nvidia-smi", action="store_true", help="sample the GPU's use while training (CUDA)")
    parser.add_argument("--workdir", help="where the generated files go (default: the system's temporary folder)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)  # import FOLDER | run FILE POOLING
    return parser


def measure(folder: Path, sizes: list[int], args: argparse.Namespace) -> list[dict]:
    """One row per (size, pooling, stage); the import's row is the size's, for every pooling."""
    rows = []
    for size in sizes:
        network = folder / str(size)
        write_largest(network, size, args.steps * args.interval)
        imported = run_child(__file__, ["import", str(network)])
        for pooling in args.poolings.split(","):
            stages = run_child(__file__, ["run", str(network / "network.h5"), pooling])
            for stage, values in {"import": imported, **stages}.items():
                rows.append({"vds": size, "pooling": pooling, "stage": stage, **values})
    return rows


def write_largest(folder: Path, sensors: int, seconds: int) -> None:
    """LargeST's three files for ``sensors`` covering at least ``seconds`` (whole days of 5 minutes)."""
    from bench.largest_file import write_adjacency, write_his, write_meta

    folder.mkdir(parents=True)
    ids = [str(400000 + 37 * i) for i in range(sensors)]
    districts = write_meta(folder / "ca_meta.csv", ids)
    write_adjacency(folder / "ca_rn_adj.npy", districts)
    write_his(folder / "ca_his_raw_2019.h5", ids, START, math.ceil(seconds / 86400))
    (folder / "seconds").write_text(str(seconds))


def run_child(script: str, case: list[str]) -> dict:
    """``case`` in a fresh process (``script`` with this process's arguments and ``--child CASE``), its JSON line
    parsed."""
    command = [sys.executable, script, *sys.argv[1:], "--child", *case]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(case)} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ in the child
class Stages:
    """Each stage's seconds and the process's peak RSS at its end, above what it held when this was made."""

    def __init__(self):
        self.baseline = rss_mb()
        self.results: dict[str, dict] = {}
        self.started = time.perf_counter()

    def done(self, stage: str, **extra: float) -> None:
        import torch

        seconds = time.perf_counter() - self.started
        self.results[stage] = {"seconds": seconds, "peak_mb": max(0.0, peak_rss_mb() - self.baseline), **extra}
        self.results[stage]["ended"] = time.time()  # the wall clock, to match nvidia-smi's samples
        if torch.cuda.is_available():
            self.results[stage]["cuda_peak_mb"] = torch.cuda.max_memory_allocated() / 2**20
        self.started = time.perf_counter()


def child(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(torch.get_num_threads())  # torch's pools are up before the baseline
    if args.child[0] == "import":
        return import_stage(Path(args.child[1]), args)
    return run_stages(Path(args.child[1]), args.child[2], args)


def import_stage(folder: Path, args: argparse.Namespace) -> dict:
    import numpy as np

    from bench.largest_file import STEP_S
    from core.data.__main__ import main as data_main

    stages = Stages()
    until = str(np.datetime64(START, "s") + int((folder / "seconds").read_text()))  # the first time left out
    argv = ["import-largest", str(folder / "ca_his_raw_2019.h5"), "--meta", str(folder / "ca_meta.csv")]
    argv += ["--adjacency", str(folder / "ca_rn_adj.npy"), "--until", until, "--out", str(folder / "network.h5")]
    argv += ["--resample", str(args.interval)] if args.interval != STEP_S else []
    argv += ["--contiguous"] if args.contiguous else []
    if data_main(argv):
        raise SystemExit(f"import-largest {folder} failed")
    stages.done("import")
    return stages.results["import"]


def recipe_text(source: Path, pooling: str, batches: int, batch_size: int) -> str:
    """STID on LargeST's protocol (12 in, 12 out, 60/20/20, time of day and day of week) with ``pooling``."""
    pooling_options = {"road_graph": 'weights = "stored"\n'}.get(pooling, "")
    return f"""[run]
name = "scale"
seed = 0

[data]
source = "{source}"
target = "flow"
split = [0.6, 0.2, 0.2]
train_stride = 1
day_of_week = true

[encoder]
name = "stid"

[pooling]
name = "{pooling}"
{pooling_options}
[trainer]
epochs = 1
batch_size = {batch_size}
eval_batch_size = {batch_size}
max_batches_per_epoch = {batches}
lr = 0.002
figure_vds = 0
"""


def build(source: Path, pooling: str, args: argparse.Namespace, run_dir: Path):
    """The recipe's data, model and trainer, built as ``python -m core.run`` builds them (its logger writes to
    ``run_dir``)."""
    import torch

    from core.model import build_forecaster
    from core.recipe import load_recipe
    from core.run import prepare_data
    from core.training.engine import Engine
    from core.training.loaders import Loaders
    from core.training.tensorboard import RunLogger
    from core.training.trainer import Trainer

    (run_dir / "recipe.toml").write_text(recipe_text(source, pooling, args.batches, args.batch_size))
    recipe, registry = load_recipe(run_dir / "recipe.toml", args.set)
    (run_dir / "recipe.toml").write_text(recipe.to_toml())  # resolved, as a run writes it
    torch.manual_seed(recipe.run.seed)
    prepared = prepare_data(recipe)
    spec = prepared.spec()
    model, collator = build_forecaster(recipe, registry, spec, prepared.data.source)
    engine = Engine(model, recipe.trainer, prepared.normaliser, recipe.data.target)
    loaders = Loaders(prepared, collator, recipe.trainer, recipe.run.seed, engine.device)
    return Trainer(recipe, engine, loaders, prepared, spec, run_dir, RunLogger(run_dir))


def run_stages(source: Path, pooling: str, args: argparse.Namespace) -> dict:
    from core.experiments.predict import predict
    from core.training import checkpoints, progress

    stages = Stages()
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        trainer = build(source, pooling, args, run_dir)
        stages.done("prepare")
        batches = trainer.loaders.batches_per_epoch()
        with progress.bar(1, 1, batches, 0, enabled=False) as bar:
            trainer.train_epoch(1, batches, bar)
        stages.done("train", windows_per_s=batches * args.batch_size / (time.perf_counter() - stages.started))
        trainer.engine.evaluate(itertools.islice(trainer.loaders.evaluate("val"), args.val_batches))
        stages.done("validate")
        card = checkpoints.model_card(trainer.recipe, trainer.prepared, trainer.spec)
        checkpoints.save_best(run_dir, trainer.model.state_dict(), 1, 0.0, card)
        stages.started = time.perf_counter()  # saving the weights is the training's
        predict(run_dir, source, run_dir / "latest.h5", latest=True)
        stages.done("forecast")
        trainer.logger.close()
    return stages.results


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ------------------------------------------------------------------------------------------------- the report
def table(rows: list[dict], args: argparse.Namespace) -> str:
    lines = [
        f"\nscale: STID, {args.steps} steps of {args.interval} s, {args.batches} training and {args.val_batches} "
        f"validation batches of {args.batch_size} windows; peak RSS above the process's start"
        + (f"; overrides: {' '.join(args.set)}" if args.set else ""),
        "| VDs | pooling | stage | s | peak RSS +MB | windows/s | ms per VD | KB per VD |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        rate = f"{row['windows_per_s']:.1f}" if "windows_per_s" in row else ""
        lines.append(
            f"| {row['vds']} | {row['pooling']} | {row['stage']} | {row['seconds']:.3f} | {row['peak_mb']:.0f} | "
            f"{rate} | {row['seconds'] / row['vds'] * 1000:.3f} | {row['peak_mb'] / row['vds'] * 1024:.1f} |"
        )
    return "\n".join(lines)


def growth(rows: list[dict], sizes: list[int]) -> list[dict]:
    """Per (pooling, stage): the time and the memory per VD at the largest size over those at the smallest."""
    small, large = min(sizes), max(sizes)
    at = {(row["vds"], row["pooling"], row["stage"]): row for row in rows}
    found = []
    for pooling, stage in dict.fromkeys((row["pooling"], row["stage"]) for row in rows):
        a, b = at[small, pooling, stage], at[large, pooling, stage]
        time_, memory = (per_vd_ratio(a[key], small, b[key], large) for key in ("seconds", "peak_mb"))
        found.append({"pooling": pooling, "stage": stage, "time": time_, "memory": memory})
    return found


@contextlib.contextmanager
def sampling_gpu(log: Path):
    """``nvidia-smi`` writing the GPU's utilisation to ``log`` every 200 ms while the block runs."""
    query = ["nvidia-smi", "--query-gpu=timestamp,utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200"]
    with open(log, "w") as out:
        sampler = subprocess.Popen(query, stdout=out)
        try:
            yield
        finally:
            sampler.terminate()
            sampler.wait()


def gpu_samples(text: str) -> list[tuple[float, float]]:
    """``(wall-clock seconds, GPU busy %)`` from ``nvidia-smi``'s CSV lines (its timestamps are local time)."""
    samples = []
    for line in text.splitlines():
        stamp, busy = (field.strip() for field in line.split(",")[:2])
        samples.append((datetime.strptime(stamp, "%Y/%m/%d %H:%M:%S.%f").timestamp(), float(busy)))
    return samples


def gpu_table(rows: list[dict], samples: list[tuple[float, float]]) -> str:
    """Per size and pooling: the GPU's mean busy % over the training stage, its samples, CUDA's peak memory."""
    lines = ["\nGPU (nvidia-smi every 200 ms)", "| VDs | pooling | train: GPU busy % | samples | CUDA peak MB |"]
    lines.append("|---|---|---|---|---|")
    for row in (row for row in rows if row["stage"] == "train"):
        busy = [value for at, value in samples if row["ended"] - row["seconds"] <= at <= row["ended"]]
        mean = f"{statistics.mean(busy):.0f}" if busy else "-"
        lines.append(f"| {row['vds']} | {row['pooling']} | {mean} | {len(busy)} | {row.get('cuda_peak_mb', 0):.0f} |")
    return "\n".join(lines)


def per_vd_ratio(small_value: float, small: int, large_value: float, large: int) -> float:
    return (large_value / large) / (small_value / small) if small_value > 0 else math.nan


def ratios(rows: list[dict], sizes: list[int]) -> str:
    if len(set(sizes)) < 2:
        return "\n(one size: no growth ratios)"
    lines = [
        f"\nper VD, {max(sizes)} VDs over {min(sizes)} VDs (1.00: linear growth; target <= {TARGET_RATIO})",
        "| pooling | stage | time | memory | within |",
        "|---|---|---|---|---|",
    ]
    for ratio in growth(rows, sizes):
        within = "yes" if max(ratio["time"], ratio["memory"]) <= TARGET_RATIO else "NO"
        row = f"{ratio['pooling']} | {ratio['stage']} | {ratio['time']:.2f} | {ratio['memory']:.2f}"
        lines.append(f"| {row} | {within} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
