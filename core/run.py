"""``python -m core.run RECIPE [--set TABLE.KEY=VALUE ...] [--resume RUN_DIR]``: train, validate, test, log.

Everything a run produces lands in one run directory: ``recipe.toml`` (resolved), ``best_model.pt``,
``last.pt`` (resumable) and ``last.prev.pt``, ``training_history.json``, ``metrics.json`` and the TensorBoard
events. The directory is created only once the recipe, the data and the model are valid, and removed again if
the run fails before its first checkpoint. Under ``torchrun`` the same command trains with DDP on every process
(``core.training.distributed``); rank 0 alone writes.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from core.api import Collator, DatasetSpec
from core.data import load_source
from core.data.windows import Prepared, prepare
from core.errors import RecipeError, TrainingError, run_cli
from core.experiments.launch import run_suite
from core.experiments.suite import Workers, is_suite
from core.host.registry import Registry
from core.io import save_text
from core.model import Forecaster, build_forecaster
from core.recipe import Recipe, load_recipe
from core.training import calibration, checkpoints, report, signals
from core.training.callbacks import EpochEnd, History, TensorBoard, asking
from core.training.distributed import Distributed, Silent, setup
from core.training.engine import Engine
from core.training.loaders import Loaders
from core.training.metrics import HORIZONS, METRICS, floor, widest_intervals
from core.training.tensorboard import RunLogger
from core.training.trainer import Trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.run", description="Train and test a forecaster from a TOML recipe."
    )
    parser.add_argument(
        "recipe",
        nargs="?",
        help="the recipe, e.g. recipes/shared_radius.toml, or a suite of runs (a [suite] table), "
        "e.g. suites/lstm_vs_xlstm.toml",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="TABLE.KEY=VALUE", help="override a recipe value (repeatable)"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last.pt")
    study = parser.add_argument_group("suites and searches (a study: rerunning the command continues it)")
    study.add_argument(
        "--workers", type=int, metavar="N", help="worker processes on this machine (default: the suite's parallel)"
    )
    study.add_argument(
        "--storage",
        metavar="URL",
        help="the study's database, e.g. postgresql://user:pass@host/db (default: SQLite in the suite's folder)",
    )
    study.add_argument("--study", metavar="NAME", help="the study's name and folder (default: the suite's name)")
    study.add_argument("--worker", type=int, default=0, help=argparse.SUPPRESS)  # k: the k-th process --workers starts
    parser.add_argument("--list-plugins", action="store_true", help="list the registered plugins and exit")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    args = parser.parse_args(argv)
    if not (args.recipe or args.resume or args.list_plugins):
        parser.error("a recipe is required (or --resume RUN_DIR, or --list-plugins)")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    workers = Workers(args.workers, args.storage, args.study, args.worker)

    def command() -> int:
        if args.list_plugins:
            from core.plugins import describe

            print(describe(Registry.default()))
            return 0
        if args.resume:
            run_dir = Path(args.resume)
            if not (run_dir / "recipe.toml").is_file():
                raise TrainingError(f"--resume {run_dir}: not a run directory (no recipe.toml)")
            return run(run_dir / "recipe.toml", args.set, resume_dir=run_dir)
        if is_suite(Path(args.recipe)):
            return run_suite(Path(args.recipe), args.set, run, workers)
        if workers != Workers():
            raise RecipeError(f"{args.recipe}: --workers, --storage and --study are for suites ([suite] files)")
        return run(Path(args.recipe), args.set)

    return run_cli(command, args.debug)


def run(
    recipe_path: Path, overrides: list[str], resume_dir: Path | None = None, on_epoch_end: EpochEnd | None = None
) -> int:
    """Train, test and report one run (``resume_dir``: continue that run); ``on_epoch_end``: ``callbacks.EpochEnd``."""
    recipe, registry = load_recipe(recipe_path, overrides)
    dist = setup(recipe)  # several processes under torchrun
    torch.manual_seed(recipe.run.seed)
    np.random.seed(recipe.run.seed)

    prepared = prepare_data(recipe)
    spec = prepared.spec()
    model, collator = build_forecaster(recipe, registry, spec, prepared.data.source)

    run_dir = resume_dir or dist.from_main(lambda: create_run_dir(recipe))
    try:
        code = train(
            recipe, model, collator, prepared, spec, run_dir, resume_dir is not None, dist, on_epoch_end=on_epoch_end
        )
        dist.finish()
        return code
    except BaseException:
        if dist.is_main and not resume_dir and not (run_dir / "last.pt").exists():
            shutil.rmtree(run_dir, ignore_errors=True)  # nothing worth keeping: no partial run directory
        raise


def prepare_data(recipe: Recipe) -> Prepared:
    """The recipe's data source, split, normalised and windowed."""
    data = load_source(recipe.data.source, recipe.data.synthetic_seed, recipe.data.store)
    return prepare(data, recipe.data, recipe.run.seed)


def train(
    recipe: Recipe,
    model: Forecaster,
    collator: Collator,
    prepared: Prepared,
    spec: DatasetSpec,
    run_dir: Path,
    resume: bool,
    dist: Distributed = Distributed(),
    on_epoch_end: EpochEnd | None = None,
) -> int:
    """Fit (or go on fitting), calibrate, test and report; every output goes to ``run_dir``, written by rank 0 alone."""
    checkpoint, changes = checkpoints.resumable(run_dir, recipe, spec) if resume else (None, [])
    purge_step = checkpoint["state"]["global_step"] + 1 if checkpoint else None  # a crash's later events
    logger = RunLogger(run_dir, purge_step=purge_step) if dist.is_main else Silent()
    try:
        engine = Engine(model, recipe.trainer, prepared.normaliser, recipe.data.target, dist)
        loaders = Loaders(prepared, collator, recipe.trainer, recipe.run.seed, engine.device, dist)
        board = TensorBoard(logger, engine, collator, prepared, spec, recipe)
        callbacks = [board, History(run_dir, dist.is_main), *([asking(on_epoch_end)] if on_epoch_end else [])]
        trainer = Trainer(recipe, engine, loaders, prepared, spec, run_dir, logger, dist, callbacks)
        if checkpoint:
            try:  # on every rank
                trainer.load_state_dict(checkpoint)
            except TrainingError as error:  # a new trainer.epochs that the run's schedule cannot take
                raise TrainingError(f"--resume {run_dir}: {error}") from None
            if dist.is_main:
                save_text(recipe.to_toml(), run_dir / "recipe.toml")
                for change in changes:
                    print(f"resuming with {change}")
        logger.recipe(recipe.to_toml())
        print(header(recipe, prepared, trainer, run_dir, resume))
        trainer.fit()
        metrics = dist.from_main(lambda: calibrate_and_test(trainer, board))
        logger.hparams(
            recipe.flat(),
            {f"test/{k}": v for k, v in metrics["test"].items()} | {"best_val_mae": metrics["best_val_mae"]},
        )
    finally:
        logger.close()

    print(format_table(metrics, recipe.data.target))
    print(
        f"best epoch {metrics['best_epoch']} (val MAE {metrics['best_val_mae']:.4f}), "
        f"{metrics['train_seconds']:.0f} s of training"
    )
    print(f"run directory: {run_dir}\nTensorBoard:   tensorboard --logdir {run_dir.parent}")
    return 0


def calibrate_and_test(trainer: Trainer, board: TensorBoard) -> dict:
    """After the fit: the best checkpoint, calibrated on the validation split when its head asks (the offsets
    saved into ``best_model.pt``, its uncalibrated test metrics kept beside), then tested and reported."""
    engine, loaders, run_dir = trainer.engine, trainer.loaders, trainer.run_dir
    best = checkpoints.load_best(run_dir)
    engine.model.load_state_dict(best["model"])
    uncalibrated = None
    with signals.at_once(run_dir):
        if calibration.requested(engine.head):
            engine.head.offsets.zero_()  # a finished run's best_model.pt holds them: its resumed test starts over
            uncalibrated = engine.evaluate(loaders.evaluate("test"))[0]["model"]
            calibration.calibrate(engine, loaders)
            checkpoints.save_best_weights(run_dir, best, engine.model.state_dict())
        return report.test(trainer, board, uncalibrated)


def header(recipe: Recipe, prepared: Prepared, trainer: Trainer, run_dir: Path, resume: bool) -> str:
    """What a run says before its first epoch: model, device, data, windows, run directory."""
    data = prepared.data
    parameters = sum(p.numel() for p in trainer.model.parameters())
    sizes = ", ".join(f"{part} {len(ds)}" for part, ds in prepared.splits.items())
    head = "" if recipe.head.name == "point" else f" + {recipe.head.name} head"
    return (
        f"{recipe.encoder.name} + {recipe.pooling.name} pooling{head} ({parameters:,} parameters) on "
        f"{trainer.engine.device}, precision {recipe.trainer.precision}\n"
        f"data {data.source}: {data.num_steps} steps x {len(data.vd_ids)} VDs x {len(prepared.input_features)} "
        f"features; windows {sizes}{jumps_note(prepared)}\nrun directory {run_dir}"
        + (f" (resuming at epoch {trainer.state.epoch + 1}, batch {trainer.state.batch + 1})" if resume else "")
    )


def jumps_note(prepared: Prepared) -> str:
    """What ``irregular_steps = "split"`` did, for the run's header ('' for a regular file)."""
    jumps = int(prepared.series.stretch[-1])  # the last step's stretch counts the jumps before it
    removed = prepared.windows_across_jumps
    return f" ({removed} window(s) spanning the file's {jumps} time jump(s) left out)" if jumps else ""


def create_run_dir(recipe: Recipe) -> Path:
    """A new, never-shared directory ``<output_dir>/<name>-<date>-<time>[-k]`` with the resolved recipe."""
    root = Path(recipe.run.output_dir)
    stem = f"{recipe.run.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        root.mkdir(parents=True, exist_ok=True)
        for k in range(1, 10_000):
            run_dir = root / (stem if k == 1 else f"{stem}-{k}")
            try:
                run_dir.mkdir()  # atomic: two runs can never get the same directory
            except FileExistsError:
                continue
            save_text(recipe.to_toml(), run_dir / "recipe.toml")
            return run_dir
    except OSError as error:
        raise RecipeError(
            f"{recipe.path}: [run] output_dir = '{root}': cannot create a run directory there: {error.strerror}"
        ) from None
    raise TrainingError(f"{root}: cannot create a run directory for '{stem}'")


def format_table(metrics: dict, target: str) -> str:
    """Test MAE/RMSE/MAPE per horizon for the model beside the baselines (those the data allows); for a
    distribution head, then the coverage (%) and width of its two widest central intervals and the CRPS; last,
    the horizon steps where the model is worse than a baseline."""
    methods = {"model": metrics["test"], **metrics["baselines"]}
    labels = [f"@{h}" for h in HORIZONS if f"mae@{h}" in metrics["test"]] + ["@avg"]
    tables = [(f"test ({target})", [(k.upper().replace("MAPE", "MAPE%"), k, 8) for k in METRICS])]
    percents = widest_intervals(metrics["test"])
    if percents:
        columns = [
            (f"{label}{p}", f"{key}{p}", 7) for p in percents for label, key in (("cov", "coverage"), ("w", "width"))
        ]
        tables.append((f"intervals ({target})", [*columns, ("CRPS", "crps", 7)]))
    lines = []
    for title, columns in tables:
        width = sum(w for _, _, w in columns) + 2
        lines.append(f"{title:<22}" + "".join(f"{name:>{width}}" for name in methods))
        lines.append(
            f"{'horizon':<22}" + "".join(f"{'':2}" + "".join(f"{c:>{w}}" for c, _, w in columns) for _ in methods)
        )
        lines += [
            f"{label:<22}"
            + "".join(
                f"{'':2}" + "".join(f"{m[f'{k}{label}']:>{w}.2f}" for _, k, w in columns) for m in methods.values()
            )
            for label in labels
        ]
    lines.append(f"model vs baselines (test MAE per horizon step): {floor(metrics['test_mae_by_step'])}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
