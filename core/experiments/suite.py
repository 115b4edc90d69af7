"""Suites: several runs trained one after another, then compared in one report.

``python -m core.run SUITE.toml [--set TABLE.KEY=VALUE ...]`` recognises a suite by its top-level ``[suite]``
table. Paths are relative to the suite file; every run lands in ``<output_dir>/<name>-<date>-<time>/``, and so
do the report and plots of ``core.experiments.compare``.

    [suite]
    name = "lstm_vs_xlstm"
    set = {"trainer.epochs" = 2}                   # overrides for every run
    recipes = ["../recipes/lstm_radius.toml"]      # one run per recipe, named after its file
    base = "../recipes/shared_radius.toml"         # the base recipe x the grid (cartesian product)
    seeds = [0, 1, 2]                              # every run once per seed: <name>-s0, <name>-s1, ... (optional)
    [suite.grid]
    "trainer.lr" = [0.001, 0.002]                  # TABLE.KEY = values; TABLE = [inline tables] replaces a table
    [[suite.runs]]                                 # named runs with their own overrides
    name = "single_vd"
    recipe = "../recipes/shared_none.toml"
    set = {"data.vds" = ["VD-N1-05"]}

Overrides apply in this order: the suite's ``set``, the run's ``set`` (or grid values), the command line's ``--set``,
then the seed (``run.seed``) of ``seeds``.
With ``parallel = K`` (> 1) up to K runs train at once, each in its own ``python -m core.run`` process whose
output goes to ``<folder>/<run name>.log`` (for a GPU with room for several).
"""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import attrs

from core.errors import DataError, Interrupted, RecipeError, SocialXLSTMError
from core.experiments.compare import load_run, write_report
from core.recipe import build_config, load_recipe, read_toml


def _seeds_are_valid(instance, attribute, value) -> None:
    if value is not None and (not value or len(set(value)) < len(value)):
        raise ValueError(f"'seeds' must be a non-empty list of distinct ints: {list(value)}")


@attrs.frozen
class SuiteTable:
    name: str = "suite"
    output_dir: str = "runs"
    parallel: int = attrs.field(default=1, validator=attrs.validators.gt(0))  # runs trained at once
    set: Any = attrs.Factory(dict)
    recipes: tuple[str, ...] = ()
    base: str = ""
    grid: Any = attrs.Factory(dict)
    runs: Any = attrs.Factory(list)
    seeds: tuple[int, ...] | None = attrs.field(
        default=None, validator=_seeds_are_valid
    )  # None: each run once, its recipe's seed


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
    if suite.seeds is not None:
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


def run_suite(path: Path, cli_overrides: list[str], train: Callable[[Path, list[str]], int]) -> int:
    """Train every run with ``train`` (core.run's ``run``), a failed one reported and skipped, then compare the
    finished runs in the suite's folder. Exit code 1 when a run failed."""
    suite, runs = load_suite(path, cli_overrides)
    folder = Path(suite.output_dir) / f"{suite.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    try:
        folder.mkdir(parents=True)
    except OSError as error:
        raise RecipeError(
            f"{path}: [suite] output_dir = '{suite.output_dir}': cannot create {folder}: {error.strerror}"
        ) from None
    if suite.parallel > 1:
        print(
            f"=== suite {suite.name}: {len(runs)} runs, {suite.parallel} at a time; their output: "
            f"{folder}/<run name>.log"
        )
        with ThreadPoolExecutor(suite.parallel) as pool:
            errors = list(pool.map(lambda run: train_in_process(run, folder, suite.parallel), runs))
    else:
        errors = [train_here(suite.name, number, len(runs), run, folder, train) for number, run in enumerate(runs, 1)]
    failed = {run.name: error for run, error in zip(runs, errors) if error is not None}
    finished = [load_run(run_dir(folder, run.name)) for run in runs if run.name not in failed]
    print(f"\n=== suite {suite.name}: {len(finished)} of {len(runs)} runs finished")
    if finished:
        print(write_report(finished, folder, failed))
        print(f"report: {folder / 'report.md'}\nTensorBoard: tensorboard --logdir {folder}")
    for name, error in failed.items():
        print(f"failed: {name}: {error}")
    return 1 if failed else 0


def suite_overrides(run: SuiteRun, folder: Path) -> list[str]:
    return [*run.overrides, f"run.name={toml_value(run.name)}", f"run.output_dir={toml_value(str(folder))}"]


def train_here(
    suite: str, number: int, total: int, run: SuiteRun, folder: Path, train: Callable[[Path, list[str]], int]
) -> str | None:
    """Train ``run`` in this process; None, or why it failed."""
    print(
        f"\n=== suite {suite}: run {number}/{total} '{run.name}' "
        f"({run.recipe}{''.join(' --set ' + o for o in run.overrides)})"
    )
    try:
        train(run.recipe, suite_overrides(run, folder))
        return None
    except Interrupted:
        raise
    except Exception as error:  # noqa: BLE001 - a failed run is reported and the suite goes on
        reason = " ".join(f"{type(error).__name__}: {error}".split())
        print(f"=== suite {suite}: run '{run.name}' failed: {reason}")
        return reason


def train_in_process(run: SuiteRun, folder: Path, parallel: int) -> str | None:
    """Train ``run`` in a ``python -m core.run`` process of its own (with its share of the CPU threads, unless
    OMP_NUM_THREADS is set), output to ``<folder>/<name>.log``; None, or why it failed (the log's last line)."""
    log = folder / f"{run.name}.log"
    command = [
        sys.executable,
        "-m",
        "core.run",
        str(run.recipe),
        *itertools.chain.from_iterable(("--set", o) for o in suite_overrides(run, folder)),
    ]
    env = {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel)), **os.environ}
    print(f"=== start '{run.name}'")
    with log.open("w") as out:
        code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, env=env, check=False).returncode
    lines = log.read_text(errors="replace").strip().splitlines()
    print(f"=== {'done' if code == 0 else 'FAILED'} '{run.name}'")
    return None if code == 0 else f"exit {code}: {lines[-1] if lines else 'no output'} (see {log})"


def run_dir(folder: Path, name: str) -> Path:
    """The run directory that run ``name`` created in the suite's ``folder``."""
    (path,) = [
        p for p in folder.iterdir() if p.is_dir() and re.fullmatch(re.escape(name) + r"-\d{8}-\d{6}(-\d+)?", p.name)
    ]
    return path
