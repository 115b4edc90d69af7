"""Suites: several runs trained as the trials of one Optuna study, then compared in one report.

``python -m core.run SUITE.toml [--set TABLE.KEY=VALUE ...] [--workers N] [--storage URL] [--study NAME]``
recognises a suite by its top-level ``[suite]`` table. Paths are relative to the suite file; the study (SQLite,
``study.db``, unless ``--storage`` names another database), every run (``<name>-<date>-<time>/``), the report and
plots of ``core.experiments.compare`` land in ``<output_dir>/<study name>/``. Rerunning the command continues the
study (``core.experiments.study``: workers, retries, the recipe check).

    [suite]
    name = "lstm_vs_xlstm"
    set = {"trainer.epochs" = 2}                   # overrides for every run
    recipes = ["../recipes/lstm_radius.toml"]      # one run per recipe, named after its file
    base = "../recipes/shared_radius.toml"         # the base recipe x the grid (cartesian product)
    seeds = [0, 1, 2]                              # every run once per seed: <name>-s0, <name>-s1, ... (optional)
    parallel = 2                                   # worker processes when --workers is not given
    [suite.grid]
    "trainer.lr" = [0.001, 0.002]                  # TABLE.KEY = values; TABLE = [inline tables] replaces a table
    [[suite.runs]]                                 # named runs with their own overrides
    name = "single_vd"
    recipe = "../recipes/shared_none.toml"
    set = {"data.vds" = ["VD-N1-05"]}

Overrides apply in this order: the suite's ``set``, the run's ``set`` (or grid values), the command line's ``--set``,
then the seed (``run.seed``) of ``seeds``. A ``[suite.search]`` table makes the suite a search over ``base``
instead (``core.experiments.search``).
"""

from __future__ import annotations

import itertools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import optuna
from optuna.storages import RDBStorage
from optuna.trial import Trial, TrialState

from core.errors import DataError, RecipeError, SocialXLSTMError
from core.experiments.compare import RunRecord, load_run, write_report
from core.experiments.study import (
    Study,
    Train,
    open_study,
    shown,
    train_trial,
)
from core.host.options import build_config
from core.recipe import flatten, load_recipe, read_toml


def _seeds_are_valid(instance, attribute, value) -> None:
    if value is not None and (not value or len(set(value)) < len(value)):
        raise ValueError(f"'seeds' must be a non-empty list of distinct ints: {list(value)}")


@attrs.frozen
class SuiteTable:
    name: str = "suite"
    output_dir: str = "runs"
    parallel: int = attrs.field(default=1, validator=attrs.validators.gt(0))  # worker processes (--workers)
    set: Any = attrs.Factory(dict)
    recipes: tuple[str, ...] = ()
    base: str = ""
    grid: Any = attrs.Factory(dict)
    runs: Any = attrs.Factory(list)
    seeds: tuple[int, ...] | None = attrs.field(
        default=None, validator=_seeds_are_valid
    )  # None: each run once, its recipe's seed (a search: its finalists' seeds)
    search: Any = None  # [suite.search]: a search over base (core.experiments.search) instead of listed runs


@attrs.frozen
class RunTable:
    name: str
    recipe: str
    set: Any = attrs.Factory(dict)


@attrs.frozen
class SuiteRun:
    name: str
    recipe: Path
    overrides: tuple[str, ...]


def is_suite(path: Path) -> bool:
    return "suite" in read_toml(path)


def load_suite(path: Path, cli_overrides: list[str]) -> tuple[SuiteTable, list[SuiteRun]]:
    """The suite's table and its runs, every run's recipe validated (no data read)."""
    raw = read_toml(path)
    if set(raw) != {"suite"}:
        raise RecipeError(
            f"{path}: a suite file holds only the [suite] table, found [{'], ['.join(sorted(set(raw) - {'suite'}))}]"
        )
    suite = build_config(SuiteTable, raw["suite"], f"{path}: [suite]")
    common = assignments(suite.set, f"{path}: [suite] set")
    if suite.search is not None and (suite.recipes or suite.grid or suite.runs or not suite.base):
        raise RecipeError(
            f"{path}: [suite.search] searches over one base recipe: give base, and no recipes, grid or runs"
        )
    entries = [(Path(recipe).stem, recipe, []) for recipe in suite.recipes] + grid_entries(suite, path)
    if not isinstance(suite.runs, list):
        raise RecipeError(f"{path}: [suite] runs must be an array of tables ([[suite.runs]])")
    for number, table in enumerate(suite.runs, 1):
        where = f"{path}: [[suite.runs]] #{number}"
        run = build_config(RunTable, as_table(table, where), where)
        entries.append((run.name, run.recipe, assignments(run.set, f"{where} set")))
    if not entries:
        raise RecipeError(f"{path}: [suite] lists no runs; give recipes, base (+ grid) or [[suite.runs]]")
    names = [name for name, _, _ in entries]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RecipeError(
            f"{path}: run name(s) {', '.join(repeated)} appear more than once; give the [[suite.runs]] distinct names"
        )
    runs = [
        SuiteRun(name, Path(os.path.normpath(path.parent / recipe)), (*common, *own, *cli_overrides))
        for name, recipe, own in entries
    ]
    if suite.seeds is not None and suite.search is None:  # a search's seeds are its finalists'
        runs = [
            attrs.evolve(run, name=f"{run.name}-s{seed}", overrides=(*run.overrides, f"run.seed={seed}"))
            for run in runs
            for seed in suite.seeds
        ]
    for run in runs:
        check_run(path, run)
    return suite, runs


def grid_entries(suite: SuiteTable, path: Path) -> list[tuple[str, str, list[str]]]:
    """(name, recipe, overrides) for every combination of the grid's values over the base recipe."""
    if not suite.base:
        if suite.grid:
            raise RecipeError(f'{path}: [suite.grid] needs a base recipe: [suite] base = "recipes/....toml"')
        return []
    grid = as_table(suite.grid, f"{path}: [suite.grid]")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise RecipeError(f"{path}: [suite.grid] {key!r} must be a non-empty list of values, got {values!r}")
    return [
        (
            "-".join(slug(key, value) for key, value in zip(grid, values)) or Path(suite.base).stem,
            suite.base,
            assignments(dict(zip(grid, values)), f"{path}: [suite.grid]"),
        )
        for values in itertools.product(*grid.values())
    ]


def check_run(path: Path, run: SuiteRun) -> None:
    """Fail before any training: the recipe must load and a data file must exist."""
    try:
        recipe, _ = load_recipe(run.recipe, list(run.overrides))
    except SocialXLSTMError as error:
        raise RecipeError(f"{path}: run '{run.name}': {error}") from None
    source = recipe.data.source
    if source != "default" and not Path(source).is_file():
        raise DataError(
            f"{path}: run '{run.name}': data file '{source}' not found; pass yours with --set data.source=PATH"
        )


def as_table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RecipeError(f"{where} must be a table, got {value!r}")
    return value


def assignments(table: Any, where: str) -> list[str]:
    """``{"trainer.epochs": 2, "pooling": {"name": "none"}}`` → ``["trainer.epochs=2", 'pooling={name = "none"}']``."""
    return [f"{key}={toml_value(value)}" for key, value in as_table(table, where).items()]


def toml_value(value: Any) -> str:
    """A value in TOML's inline syntax."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return json.dumps(value) if isinstance(value, str) else repr(value)


def slug(key: str, value: Any) -> str:
    """A grid value as part of a run name: ``lr_0.001``; a plugin by its name (``lstm`` for ``encoder.name``),
    a plugin table by its name and options (``radius_radius_m_1500.0``); other characters than word characters and
    dots become ``_``."""
    if isinstance(value, dict):
        options = [f"{k}_{toml_value(v)}" for k, v in value.items() if k != "name"]
        value = "_".join([str(value["name"])] * ("name" in value) + options)
    elif not key.endswith(".name"):
        value = f"{key.split('.')[-1]}_{toml_value(value)}"
    return re.sub(r"[^\w.]+", "_", str(value)).strip("_") or "x"


@attrs.frozen
class Workers:
    """How a suite's command works on its study (``python -m core.run SUITE`` options)."""

    count: int | None = None  # --workers: processes on this machine (None: the suite's ``parallel``)
    storage: str | None = None  # --storage: the study's database URL (None: SQLite in the suite's folder)
    study: str | None = None  # --study: the study's name, and its folder's (None: the suite's name)
    worker: int = 0  # k > 0: the k-th of the processes the command starts (no report, each run's output in its log)


def worker_command(path: Path, cli_overrides: list[str], url: str, name: str) -> Callable[[int], list[str]]:
    """The arguments of worker k's process (after the Python executable): this suite, its overrides and study."""
    sets = [*itertools.chain.from_iterable(("--set", o) for o in cli_overrides)]
    return lambda k: ["-m", "core.run", str(path), *sets, "--storage", url, "--study", name, "--worker", str(k)]


def suite_overrides(run: SuiteRun, folder: Path) -> list[str]:
    return [*run.overrides, f"run.name={toml_value(run.name)}", f"run.output_dir={toml_value(str(folder))}"]


def suite_study(path: Path, storage: RDBStorage, name: str, runs: list[SuiteRun], folder: Path) -> Study:
    """The study whose trials are ``runs`` (queued in their order when it is created); refused when it exists and
    was made from other recipes."""
    made_from = {run.name: flatten(load_recipe(run.recipe, suite_overrides(run, folder))[0].to_dict()) for run in runs}

    def queue(study: optuna.Study) -> None:
        for run in runs:
            study.enqueue_trial({}, user_attrs={"run": run.name})

    return Study(open_study(storage, name, made_from, str(path), queue), storage)


def work_on_suite(study: Study, runs: list[SuiteRun], folder: Path, train: Train, title: str, logs: bool) -> None:
    """Claim and train the study's queued runs until none is left (``logs``: each run's output in
    ``<folder>/<run name>.log``)."""
    number = {run.name: (k, run) for k, run in enumerate(runs, 1)}

    def run_one(trial: Trial) -> None:
        k, run = number[trial.user_attrs["run"]]
        sets = "".join(" --set " + o for o in run.overrides)
        print(f"\n=== {title}: run {k}/{len(runs)} '{run.name}' ({run.recipe}{sets})")
        log = folder / f"{run.name}.log" if logs else None
        train_trial(trial, run.name, run.recipe, suite_overrides(run, folder), folder, train, log)

    study.work(Study.claim_waiting, run_one)


def outcome(study: Study, runs: list[SuiteRun]) -> tuple[list[RunRecord], list[str], dict[str, str], list[str]]:
    """The suite's finished runs here (in its order), those finished on other machines ('name (host:run dir)'),
    the failed ones (name → error) and the names of those left, from each run's latest trial."""
    latest = {trial.user_attrs.get("run"): trial for trial in study.trials()}  # in trial order: the last one wins
    finished, elsewhere, failed, left = [], [], {}, []
    for run in runs:
        trial = latest.get(run.name)
        if trial is not None and trial.state in (TrialState.COMPLETE, TrialState.PRUNED):
            path = Path(trial.user_attrs["run_dir"])
            if path.is_dir():
                finished.append(load_run(path))
            else:  # trained by a worker on another machine (--storage): its run directory is there
                elsewhere.append(f"{run.name} ({trial.user_attrs['worker'].partition('/')[0]}:{path})")
        elif trial is not None and "error" in trial.user_attrs:
            failed[run.name] = trial.user_attrs["error"]
        else:
            left.append(run.name)
    return finished, elsewhere, failed, left


def report_suite(study: Study, runs: list[SuiteRun], folder: Path, title: str, url: str) -> int:
    """Compare the finished runs in ``folder`` (report.md, plots), say which failed and which are left."""
    finished, elsewhere, failed, left = outcome(study, runs)
    done = len(finished) + len(elsewhere)
    print(f"\n=== {title}: {done} of {len(runs)} runs finished (study '{study.study.study_name}' in {shown(url)})")
    if elsewhere:
        print(f"finished on other machines, left out of this report: {', '.join(elsewhere)}")
    if finished:
        print(write_report(finished, folder, failed))
        print(f"report: {folder / 'report.md'}\nTensorBoard: tensorboard --logdir {folder}")
    for name, error in failed.items():
        print(f"failed: {name}: {error}")
    if left:
        print(f"not finished: {', '.join(left)}; rerun the same command to continue them")
    return 1 if failed or left else 0
