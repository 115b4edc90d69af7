"""Searches: a study whose trials a sampler proposes over a space of recipe keys, pruned by their validation MAE,
ended by re-running the best configurations on the suite's seeds.

A search is a suite file with a ``[suite.search]`` table beside its base recipe:

    [suite]
    name = "search_example"
    base = "../recipes/lstm_radius.toml"
    set = { "trainer.epochs" = 3 }     # overrides for every trial and finalist
    seeds = [0, 1, 2]                  # the finalists' seeds
    [suite.search]
    trials = 8                         # trials the sampler proposes (a dead worker's retried trial counts once)
    finalists = 2                      # the best configurations, each re-run on every seed
    sampler = "tpe"                    # or "random"
    pruner = "median"                  # "halving", "threshold" (val MAE above `threshold`), "none"
    [suite.search.space]
    "trainer.lr" = { log_uniform = [1e-4, 1e-2] }
    "trainer.weight_decay" = { uniform = [0.0, 0.1] }
    "encoder.embedding_dim" = { int = [8, 32], step = 8 }
    pooling = { choice = [{ name = "none" }, { name = "radius", radius_m = 1500.0 }] }

Every trial is an ordinary run, ``trial_<number>-<date>-<time>/`` in the suite's folder, whose objective is its
best validation MAE (``metrics.json`` ``best_val_mae``; the test split is never used to choose). The finalists
(``<trial>-s<seed>``) are a suite of their own, a second study in the same database, in ``finalists/``; the
configuration with the lowest mean validation MAE over the seeds is written out as ``best.toml``.
"""

from __future__ import annotations

import math
import statistics
import warnings
from pathlib import Path
from typing import Any, Literal

import attrs
import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, Trial, TrialState

from core.errors import RecipeError, SocialXLSTMError
from core.experiments.compare import markdown
from core.experiments.study import Study, Train, existing, launch_workers, open_study, shown, train_trial
from core.experiments.suite import (
    SuiteRun,
    SuiteTable,
    Workers,
    as_table,
    assignments,
    report_suite,
    suite_study,
    toml_value,
    work_on_suite,
    worker_command,
)
from core.host.options import build_config
from core.io import save_text
from core.recipe import flatten, load_recipe

KINDS = ("log_uniform", "uniform", "int", "choice")


@attrs.frozen
class SearchTable:
    trials: int = attrs.field(validator=attrs.validators.gt(0))  # trials the sampler proposes
    finalists: int = attrs.field(default=3, validator=attrs.validators.ge(0))  # re-run on the suite's seeds
    sampler: Literal["tpe", "random"] = "tpe"
    seed: int = 0  # the sampler's
    # trials before TPE models the others (it samples at random until then) and before the median pruner prunes
    startup_trials: int = attrs.field(default=5, validator=attrs.validators.ge(0))
    pruner: Literal["median", "halving", "threshold", "none"] = "median"
    min_epochs: int = attrs.field(default=1, validator=attrs.validators.ge(1))  # epochs before a trial can be pruned
    threshold: float | None = None  # pruner "threshold": a trial whose val MAE is above it is pruned
    space: Any = attrs.Factory(dict)


@attrs.frozen
class Dimension:
    """One recipe key of the space: ``kind`` with ``values`` (low and high, or the choices)."""

    key: str
    kind: str
    values: tuple[Any, ...]
    step: float | int | None = None

    def labels(self) -> list[Any]:
        """A choice as optuna stores it: a scalar as is, a table or list as its TOML text."""
        return [v if isinstance(v, str | int | float | bool) else toml_value(v) for v in self.values]

    def suggest(self, trial: Trial) -> Any:
        low, high = self.values[:2]
        if self.kind == "log_uniform":
            return trial.suggest_float(self.key, low, high, log=True)
        if self.kind == "uniform":
            return trial.suggest_float(self.key, low, high, step=self.step)
        if self.kind == "int":
            return trial.suggest_int(self.key, low, high, step=self.step or 1)
        return self.values[self.labels().index(trial.suggest_categorical(self.key, self.labels()))]

    def override(self, value: Any) -> str:
        return f"{self.key}={toml_value(value)}"

    def show(self, text: str) -> str:
        """A value of this dimension (as its override writes it) for the trials table."""
        return f"{float(text):.3g}" if self.kind in ("log_uniform", "uniform") else text

    def record(self) -> dict[str, Any]:
        return {self.kind: list(self.values), "step": self.step}


def parse_space(table: Any, where: str) -> list[Dimension]:
    """``[suite.search.space]``: ``"TABLE.KEY" = { KIND = [...] }`` (KIND one of ``KINDS``; ``step`` for uniform
    and int)."""
    dimensions = []
    for key, spec in as_table(table, where).items():
        at = f"{where} {key!r}"
        spec = dict(as_table(spec, at))
        step = spec.pop("step", None)
        kinds = [kind for kind in KINDS if kind in spec]
        if len(kinds) != 1 or len(spec) != 1:
            raise RecipeError(
                f"{at} must be one of {{ log_uniform = [LOW, HIGH] }}, {{ uniform = [LOW, HIGH] }}, "
                f"{{ int = [LOW, HIGH] }} (each with an optional step), {{ choice = [VALUES] }}; "
                f"got {spec!r}"
            )
        kind, values = kinds[0], spec[kinds[0]]
        if not isinstance(values, list) or not values:
            raise RecipeError(f"{at} {kind} = {values!r} must be a non-empty list")
        if kind == "choice":
            dimension = Dimension(key, kind, tuple(values))
            if step is not None or len(set(map(repr, dimension.labels()))) < len(values):
                raise RecipeError(f"{at}: a choice takes distinct values and no step, got {values!r}")
        else:
            number = int if kind == "int" else (int, float)
            good = len(values) == 2 and all(isinstance(v, number) and not isinstance(v, bool) for v in values)
            if not good or not values[0] < values[1] or (kind == "log_uniform" and values[0] <= 0):
                raise RecipeError(
                    f"{at} {kind} = {values!r} must be [LOW, HIGH] with LOW < HIGH"
                    + (" (both > 0)" if kind == "log_uniform" else " (integers)" if kind == "int" else "")
                )
            if step is not None and (kind == "log_uniform" or not isinstance(step, number) or step <= 0):
                raise RecipeError(f"{at}: step = {step!r} must be a positive number, and log_uniform takes none")
            dimension = Dimension(key, kind, tuple(values), step)
        dimensions.append(dimension)
    if not dimensions:
        raise RecipeError(
            f'{where} is empty: name the recipe keys to search, e.g. "trainer.lr" = {{ log_uniform = [1e-4, 1e-2] }}'
        )
    return dimensions


@attrs.frozen
class Search:
    """A loaded search: its table, space, the base run (its overrides: the suite's ``set`` and the command line's
    ``--set``), where it lives."""

    path: Path
    name: str
    folder: Path
    table: SearchTable
    space: list[Dimension]
    common: tuple[str, ...]
    cli: tuple[str, ...]
    base: Path
    seeds: tuple[int, ...]

    def overrides(self, sets: list[str]) -> list[str]:
        """A trial's overrides: the suite's ``set``, the trial's values, the command line's ``--set``."""
        return [*self.common, *sets, *self.cli]

    def finalists_study(self, runs: list[SuiteRun]) -> str:
        """The study of finalist ``runs``, named after their trials and seeds: a search given more trials, other
        ``finalists`` or ``seeds`` gets a study of its own (in ``finalists/`` with the others: a run chosen again
        is trained once)."""
        configs = dict.fromkeys(run.name.rsplit("-s", 1)[0] for run in runs)
        return f"{self.name}-finalists-{'-'.join(configs)}-s{'-'.join(map(str, self.seeds))}"

    def made_from(self) -> dict[str, Any]:
        """What the search study was made from: the base recipe, the space, the sampler and pruner (not the
        number of trials or finalists: a search may be extended)."""
        recipe = load_recipe(self.base, [*self.overrides([]), f"run.output_dir={toml_value(str(self.folder))}"])[0]
        table = attrs.asdict(self.table, filter=lambda a, v: a.name not in ("trials", "finalists", "space"))
        return {"base": flatten(recipe.to_dict()), "space": {d.key: d.record() for d in self.space}, **table}


def load(path: Path, suite: SuiteTable, base: SuiteRun, name: str, folder: Path, cli: list[str]) -> Search:
    """The search of ``suite``, every corner of its space validated on the base recipe (no data read)."""
    where = f"{path}: [suite.search]"
    table = build_config(SearchTable, as_table(suite.search, where), where)
    if table.pruner == "threshold" and table.threshold is None:
        raise RecipeError(f'{where}: pruner = "threshold" needs threshold = VAL_MAE (a trial above it is pruned)')
    if table.finalists and suite.seeds is None:
        raise RecipeError(
            f"{where}: finalists = {table.finalists} are re-run on the suite's seeds: give [suite] "
            "seeds = [0, 1, 2] (or finalists = 0)"
        )
    space = parse_space(table.space, f"{where}.space")
    common = tuple(assignments(suite.set, f"{path}: [suite] set"))
    search = Search(path, name, folder, table, space, common, tuple(cli), base.recipe, suite.seeds or ())
    for dimension in space:
        for value in dimension.values:
            try:
                load_recipe(base.recipe, search.overrides([dimension.override(value)]))
            except SocialXLSTMError as error:
                raise RecipeError(f"{where}.space {dimension.key!r} = {value!r}: {error}") from None
    return search


def sampler(search: Search, worker: int) -> optuna.samplers.BaseSampler:
    """The search's sampler, seeded per worker process (workers seeded alike would propose the same trials)."""
    seed = search.table.seed + 1000 * worker
    if search.table.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=search.table.startup_trials)


def pruner(table: SearchTable) -> optuna.pruners.BasePruner:
    """Epoch k of a trial is step k; none is pruned before ``min_epochs``."""
    if table.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=table.startup_trials, n_warmup_steps=table.min_epochs)
    if table.pruner == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=table.min_epochs, reduction_factor=3)
    if table.pruner == "threshold":
        return optuna.pruners.ThresholdPruner(upper=table.threshold, n_warmup_steps=table.min_epochs)
    return optuna.pruners.NopPruner()


def trials_study(search: Search, storage: RDBStorage, worker: int) -> Study:
    made_from = search.made_from()
    study = open_study(
        storage, search.name, made_from, str(search.path), sampler=sampler(search, worker), pruner=pruner(search.table)
    )
    return Study(study, storage)


def proposed(trial: FrozenTrial) -> bool:
    """A trial the sampler proposed (not a retry of a dead worker's trial, nor one past the budget)."""
    return "failed_trial" not in trial.system_attrs and "surplus" not in trial.user_attrs


def claim(search: Search):
    """A claim for ``Study.work``: a queued retry first, else a new trial while the budget lasts."""

    def take(study: Study) -> Trial | None:
        trial = study.claim_waiting()
        if trial is not None or sum(map(proposed, study.trials())) >= search.table.trials:
            return trial
        with warnings.catch_warnings():  # "heartbeat ... with Study.optimize": Study.heartbeat records it
            warnings.simplefilter("ignore", UserWarning)
            trial = study.study.ask()  # (a retry queued since is taken here: fine)
        frozen = study.storage.get_trial(study.trial_id(trial))
        earlier = [t for t in study.trials() if t.number < trial.number and proposed(t)]
        if proposed(frozen) and len(earlier) >= search.table.trials:  # another worker took the last one meanwhile
            trial.set_user_attr("surplus", True)
            study.study.tell(trial, state=TrialState.FAIL)
            return None
        return study.started(trial)

    return take


def work_on_trials(search: Search, study: Study, train: Train, logs: bool) -> None:
    def run_one(trial: Trial) -> None:
        name = trial.user_attrs.get("run") or f"trial_{trial.number:03d}"
        sets = [d.override(d.suggest(trial)) for d in search.space]
        trial.set_user_attr("set", sets)
        print(f"\n=== search {search.name}: '{name}' ({' '.join(sets)})")
        overrides = [
            *search.overrides(sets),
            f"run.name={toml_value(name)}",
            f"run.output_dir={toml_value(str(search.folder))}",
        ]
        log = search.folder / f"{name}.log" if logs else None
        train_trial(trial, name, search.base, overrides, search.folder, train, log)

    study.work(claim(search), run_one)


def searched(search: Search, study: Study) -> bool:
    """Whether every trial of the budget has ended (none running or queued)."""
    trials = study.trials()
    done = [t for t in trials if proposed(t) and t.state.is_finished()]
    return len(done) >= search.table.trials and not study.trials(TrialState.RUNNING, TrialState.WAITING)


def finalist_runs(search: Search, study: Study) -> list[SuiteRun]:
    """The best ``finalists`` configurations (lowest val MAE, each once) on every seed: ``<trial>-s<seed>``."""
    chosen, seen = [], set()
    for trial in sorted(study.trials(TrialState.COMPLETE), key=lambda t: (t.value, t.number)):
        key = tuple(trial.user_attrs["set"])
        if key not in seen and len(chosen) < search.table.finalists:
            seen.add(key)
            chosen.append(trial)
    return [
        SuiteRun(
            f"{trial.user_attrs['run']}-s{seed}",
            search.base,
            (*search.overrides(trial.user_attrs["set"]), f"run.seed={seed}"),
        )
        for trial in chosen
        for seed in search.seeds
    ]


def run(search: Search, suite: SuiteTable, storage: RDBStorage, train: Train, options: Workers) -> int:
    """The search's trials, then its finalists, in this process or in ``options.count`` workers; then the report."""
    path, name, folder, cli = search.path, search.name, search.folder, list(search.cli)
    study = trials_study(search, storage, options.worker)
    count = options.count or suite.parallel
    if count > 1 and not options.worker:
        print(f"=== search {name}: {search.table.trials} trials, study '{name}' in {shown(storage.url)}")

        def studies() -> list[Study]:
            runs = finalist_runs(search, study) if searched(search, study) else []
            finalists = existing(storage, search.finalists_study(runs)) if runs else None
            return [study] + ([finalists] if finalists else [])

        launch_workers(worker_command(path, cli, storage.url, name), count, folder, studies)
    else:
        work_on_trials(search, study, train, options.worker > 0)
        runs = finalist_runs(search, study)
        if searched(search, study) and runs:
            finals = folder / "finalists"
            finals.mkdir(exist_ok=True)
            finalists = suite_study(path, storage, search.finalists_study(runs), runs, finals)
            work_on_suite(finalists, runs, finals, train, f"search {name}: finalists", options.worker > 0)
        if options.worker:
            return 0
    return report(search, study, storage)


def report(search: Search, study: Study, storage: RDBStorage) -> int:
    """The trials table and the epochs pruning saved (``search.md``), the finalists' report (``finalists/``) and
    the best configuration (``best.toml``)."""
    folder = search.folder
    table, saved = trials_table(search, study)
    lines = [f"# Search {search.name}", "", table, "", saved, ""]
    print(f"\n=== search {search.name}: trials\n{table}\n{saved}")
    if not searched(search, study):
        save_text("\n".join(lines), folder / "search.md")
        print("the search has trials left; rerun the same command to continue it")
        return 1
    runs = finalist_runs(search, study)
    code = 0
    if runs:
        finalists = suite_study(search.path, storage, search.finalists_study(runs), runs, folder / "finalists")
        code = report_suite(finalists, runs, folder / "finalists", f"search {search.name}: finalists", storage.url)
        best, why = best_of_finalists(study, finalists, runs)
    else:
        best, why = best_trial(study)
    if best is not None:
        recipe = write_best(search, best, why)
        lines += [f"Best configuration ({why}): `{recipe}`", ""]
        print(f"best configuration ({why}): {recipe}")
    else:
        lines += ["No trial completed: no finalists, no best configuration.", ""]
        print("no trial completed: no finalists, no best configuration")
    save_text("\n".join(lines), folder / "search.md")
    print(f"search summary: {folder / 'search.md'}\nTensorBoard (HParams): tensorboard --logdir {folder}")
    return code


def trials_table(search: Search, study: Study) -> tuple[str, str]:
    """Every trial (latest attempt of each run): state, best val MAE, epochs trained, its values; and a line on
    the epochs pruning saved."""
    latest = {t.user_attrs.get("run"): t for t in study.trials() if t.user_attrs.get("run")}
    rows, trained, saved, pruned = [], 0, 0, 0
    for name, trial in latest.items():
        epochs, planned = trial.user_attrs.get("epochs"), trial.user_attrs.get("max_epochs")
        if trial.state == TrialState.PRUNED and epochs is not None:
            pruned += 1
            saved += planned - epochs
        trained += epochs or 0
        value = min(trial.intermediate_values.values(), default=math.nan)  # the best val MAE of its epochs
        state = trial.state.name.lower() if "error" not in trial.user_attrs else "failed"
        values = dict(s.split("=", 1) for s in trial.user_attrs.get("set", []))
        values = {d.key: d.show(values[d.key]) for d in search.space if d.key in values}
        rows.append(
            [
                name,
                state,
                f"{value:.4f}",
                str(epochs if epochs is not None else "–"),
                *(values.get(d.key, "–") for d in search.space),
            ]
        )
    header = ["trial", "state", "best val MAE", "epochs", *(d.key for d in search.space)]
    total = trained + saved
    line = (
        (
            f"Pruning stopped {pruned} of {len(latest)} trials: {trained} epochs trained, {saved} saved "
            f"({100 * saved / total:.0f}% of the {total} a search without pruning would train)."
        )
        if total
        else ""
    )
    return markdown(header, rows, 2), line


def best_of_finalists(search: Study, finalists: Study, runs: list[SuiteRun]) -> tuple[list[str] | None, str]:
    """The values of the finalist configuration with the lowest mean val MAE over its seeds."""
    done = {t.user_attrs.get("run"): t.value for t in finalists.trials(TrialState.COMPLETE)}
    scores: dict[str, list[float]] = {}
    for run in runs:
        if run.name in done:
            scores.setdefault(run.name.rsplit("-s", 1)[0], []).append(done[run.name])
    if not scores:
        return None, ""
    config = min(scores, key=lambda c: (statistics.mean(scores[c]), c))
    values = scores[config]
    sd = f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    (trial,) = [t for t in search.trials(TrialState.COMPLETE) if t.user_attrs.get("run") == config]
    return trial.user_attrs["set"], f"{config}, val MAE {statistics.mean(values):.4f}{sd} over {len(values)} seed(s)"


def best_trial(study: Study) -> tuple[list[str] | None, str]:
    """The values of the trial with the lowest val MAE."""
    complete = study.trials(TrialState.COMPLETE)
    if not complete:
        return None, ""
    best = min(complete, key=lambda t: (t.value, t.number))
    return best.user_attrs["set"], f"{best.user_attrs['run']}, val MAE {best.value:.4f}"


def write_best(search: Search, sets: list[str], why: str) -> Path:
    """``best.toml``: the base recipe with the best values, every value written out, named ``<search>_best``, its
    runs going to the suite's output_dir."""
    named = [f"run.name={toml_value(search.name + '_best')}", f"run.output_dir={toml_value(str(search.folder.parent))}"]
    recipe, _ = load_recipe(search.base, [*search.overrides(sets), *named])
    header = (
        f"# The best configuration of search '{search.name}' ({why}),\n"
        f"# written by: python -m core.run {search.path}\n# the base recipe {search.base} with\n"
        + "".join(f"#   --set {s}\n" for s in [*search.common, *sets, *search.cli])
    )
    return save_text(header + recipe.to_toml(), search.folder / "best.toml")
