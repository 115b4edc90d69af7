"""``python -m core.compare RUN_DIR... [--out DIR]``: finished runs side by side, as one Markdown report with plots.

``report.md`` holds the test table (MAE, RMSE, MAPE at @3/@6/@12/@avg per run, beside the last-value and
historical-average baselines once per distinct data set and test split, with parameters, training time and
best epoch), for runs of a distribution head the coverage and width of their two widest central intervals and
the CRPS at @3/@6/@12/@avg beside the baselines' quantiles, when runs differ only in their seed the test MAE (and
those scores) as mean ± sd over the seeds, the recipe values that differ between the runs, and the plots of
``core.experiments.report_plots``.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from core.errors import run_cli
from core.experiments import report_plots
from core.experiments.runs import RunRecord, load_run
from core.io import save_text
from core.recipe import flatten
from core.training.metrics import floor, widest_intervals

LABELS = ("@3", "@6", "@12", "@avg")
COLUMNS = [(metric, label) for metric in ("mae", "rmse", "mape") for label in LABELS]
BASELINES = ("last_value", "historical_average", "seasonal_naive")
# what makes two runs' test windows (and so their baselines) the same
SPLIT_KEYS = (
    "source",
    "synthetic_seed",
    "target",
    "history",
    "horizon",
    "split",
    "vds",
    "min_history",
    "gap_steps",
    "holidays",
)
SEED_KEYS = ("seed", "name", "output_dir")  # the [run] keys that runs of one configuration may differ in
SEEDS_NOTE = (
    "Runs whose recipes differ only in `run.seed` (and their names and folders) are one configuration: its test MAE "
    "as mean ± sample standard deviation over its runs (one run: the value), and its mean training seconds."
)
DISTRIBUTIONS_NOTE = (
    "Runs of a distribution head (`[head]` quantile, gaussian or laplace; its median is the forecast the test "
    "table scores): the coverage (%) of its two widest central intervals on the test split (`cov90`: the share of "
    "targets between the 0.05 and 0.95 quantiles, 90 for a calibrated forecast), their mean width (`w90`) and the "
    "CRPS, both in the data's units (lower is better at the same coverage); the baselines' quantiles on the same "
    "windows below them."
)
SEEDS_DISTRIBUTIONS_NOTE = "The scores of their forecast distributions, as mean ± sd over the seeds:"
SHORT = {"coverage": "cov", "width": "w", "crps": "CRPS"}


def split_groups(runs: list[RunRecord]) -> dict[str, list[RunRecord]]:
    """Runs grouped by data set and test split, in order of first appearance."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        groups.setdefault(run.split_key(), []).append(run)
    return groups


def describe_data(data: dict[str, Any]) -> str:
    source = f"synthetic network (seed {data['synthetic_seed']})" if data["source"] == "default" else data["source"]
    vds = (
        f", {len(data['vds'])} VDs ({', '.join(data['vds'][:3])}{', ...' if len(data['vds']) > 3 else ''})"
        if data.get("vds")
        else ""
    )
    horizon = f"history {data['history']} → horizon {data['horizon']}"
    return f"{source}{vds}, target {data['target']}, {horizon}, split {data['split']}"


def table(runs: list[RunRecord]) -> str:
    """The Markdown test table: each data set's runs, then its baselines."""
    header = (
        ["run", "encoder", "pooling"]
        + [f"{m.upper()}{label}" for m, label in COLUMNS]
        + ["parameters", "train s", "best epoch"]
    )
    rows = []
    for suffix, members in labelled_groups(runs):
        for run in members:
            extra = [
                f"{run.metrics['parameters']:,}",
                f"{run.metrics['train_seconds']:.0f}",
                str(run.metrics["best_epoch"]),
            ]
            rows.append(
                [
                    run.name,
                    run.recipe["encoder"]["name"],
                    run.recipe["pooling"]["name"],
                    *cells(run.metrics["test"]),
                    *extra,
                ]
            )
        rows += baseline_rows(members[0], suffix, COLUMNS, blanks=(2, 3))
    return markdown(header, rows, text_columns=3)


def seed_table(runs: list[RunRecord]) -> str:
    """The Markdown table of every configuration's test MAE, ``mean ± sd`` over its seeds (``configurations``),
    then each data set's baselines."""
    header = ["configuration", "encoder", "pooling", "seeds"] + [f"MAE{label}" for label in LABELS] + ["train s"]
    mae = [("mae", label) for label in LABELS]
    rows = []
    for suffix, members in labelled_groups(runs):
        for configuration in configurations(members):
            first = configuration[0]
            seconds = statistics.mean(run.metrics["train_seconds"] for run in configuration)
            rows.append(
                [
                    configuration_name(first),
                    first.recipe["encoder"]["name"],
                    first.recipe["pooling"]["name"],
                    str(len(configuration)),
                    *mean_sd_cells(configuration, mae),
                    f"{seconds:.0f}",
                ]
            )
        rows += baseline_rows(members[0], suffix, mae, blanks=(3, 1))
    return markdown(header, rows, text_columns=3)


def distribution_runs(runs: list[RunRecord]) -> list[RunRecord]:
    """The runs of a distribution head (metrics.json has its ``head`` section)."""
    return [run for run in runs if "head" in run.metrics]


def distribution_columns(runs: list[RunRecord]) -> list[tuple[str, str]]:
    """(metric, label) of the distribution tables: coverage and width of the runs' two widest central intervals,
    then the CRPS, at @3/@6/@12/@avg."""
    percents = sorted({p for run in runs for p in widest_intervals(run.metrics["test"])}, reverse=True)
    metrics = [f"{kind}{p}" for p in percents for kind in ("coverage", "width")] + ["crps"]
    return [(metric, label) for metric in metrics for label in LABELS]


def distribution_table(runs: list[RunRecord], seeds: bool = False) -> str:
    """The Markdown table of the distribution-head runs' coverage, width and CRPS (``seeds``: per configuration,
    ``mean ± sd`` over its seeds), then each data set's baselines; '' when no run has a distribution head."""
    distributions = distribution_runs(runs)
    if not distributions:
        return ""
    columns = distribution_columns(distributions)
    first = ["configuration", "head", "seeds"] if seeds else ["run", "head"]
    header = first + [column_name(metric, label) for metric, label in columns]
    rows = []
    for suffix, members in labelled_groups(runs):
        members = distribution_runs(members)
        if not members:
            continue
        for group in configurations(members) if seeds else [[run] for run in members]:
            head = group[0].metrics["head"]["name"]
            if seeds:
                rows.append([configuration_name(group[0]), head, str(len(group)), *mean_sd_cells(group, columns)])
            else:
                rows.append([group[0].name, head, *cells(group[0].metrics["test"], columns)])
        rows += baseline_rows(members[0], suffix, columns, blanks=(len(first) - 1, 0))
    return markdown(header, rows, text_columns=len(first))


def configurations(runs: list[RunRecord]) -> list[list[RunRecord]]:
    """Runs grouped by their recipe apart from ``SEED_KEYS`` (the same configuration trained with other seeds),
    in order of first appearance."""
    groups: dict[str, list[RunRecord]] = {}
    for run in runs:
        recipe = {**run.recipe, "run": {k: v for k, v in run.recipe["run"].items() if k not in SEED_KEYS}}
        groups.setdefault(json.dumps(recipe, sort_keys=True), []).append(run)
    return list(groups.values())


def configuration_name(run: RunRecord) -> str:
    """The run's name without its seed suffix (``lstm-s1`` → ``lstm``, as suites name them)."""
    name = run.recipe["run"].get("name", run.name)
    return re.sub(rf"-s{run.recipe['run'].get('seed', 0)}$", "", name)


def column_name(metric: str, label: str) -> str:
    """A distribution table's column as the printed test table names it: ``cov90@3``, ``w90@3``, ``CRPS@3``."""
    kind = metric.rstrip("0123456789")
    return f"{SHORT[kind]}{metric[len(kind) :]}{label}"


def mean_sd_cells(configuration: list[RunRecord], columns: list[tuple[str, str]]) -> list[str]:
    """The configuration's test ``columns`` as ``mean_sd`` over its runs."""
    return [mean_sd([run.metrics["test"].get(f"{m}{label}") for run in configuration]) for m, label in columns]


def mean_sd(values: list[float | None]) -> str:
    """``mean ± sd`` (sample sd) of the values, the value itself for one, '–' if a run lacks it."""
    if None in values:
        return "–"
    return f"{values[0]:.2f}" if len(values) == 1 else f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def labelled_groups(runs: list[RunRecord]) -> list[tuple[str, list[RunRecord]]]:
    """``split_groups`` with the suffix of their baseline rows: '' for one data set, ' (data k)' for several."""
    groups = list(split_groups(runs).values())
    return [(f" (data {number})" if len(groups) > 1 else "", members) for number, members in enumerate(groups, 1)]


def baseline_rows(
    run: RunRecord, suffix: str, columns: list[tuple[str, str]], blanks: tuple[int, int]
) -> list[list[str]]:
    """The run's baselines as table rows: the label, ``blanks[0]`` empty cells, the ``columns``, ``blanks[1]`` more."""
    return [
        [
            f"*{baseline.replace('_', ' ')}*{suffix}",
            *[""] * blanks[0],
            *cells(run.metrics["baselines"][baseline], columns),
            *[""] * blanks[1],
        ]
        for baseline in available_baselines(run)
    ]


def available_baselines(run: RunRecord) -> list[str]:
    """The baselines the run has values of: seasonal_naive needs two weeks of data, and runs from before it have
    none."""
    return [name for name in BASELINES if name in run.metrics["baselines"]]


def floors(runs: list[RunRecord]) -> list[str]:
    """Where each configuration is worse than a baseline (``metrics.floor``), from its test MAE at every horizon
    step (the mean over its seeds), one Markdown bullet per configuration; runs without per-step MAE are left
    out."""
    lines = []
    for configuration in configurations([run for run in runs if "test_mae_by_step" in run.metrics]):
        by_step = [run.metrics["test_mae_by_step"] for run in configuration]
        names = [name for name in by_step[0] if all(name in methods for methods in by_step)]
        mean = {name: [statistics.mean(step) for step in zip(*(b[name] for b in by_step))] for name in names}
        if len(configuration) == 1:
            lines.append(f"- `{configuration[0].name}`: {floor(mean)}")
        else:
            name, seeds = configuration_name(configuration[0]), len(configuration)
            lines.append(f"- `{name}` (mean of {seeds} seeds): {floor(mean)}")
    return lines


def cells(values: dict[str, float], columns: list[tuple[str, str]] = COLUMNS) -> list[str]:
    return [f"{values[f'{m}{label}']:.2f}" if f"{m}{label}" in values else "–" for m, label in columns]


def markdown(header: list[str], rows: list[list[str]], text_columns: int) -> str:
    """A Markdown table, the first ``text_columns`` left-aligned, the others right-aligned."""
    lines = [header, ["---"] * text_columns + ["---:"] * (len(header) - text_columns), *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def differences(runs: list[RunRecord]) -> str:
    """The recipe values that differ between the runs (run name and output folder left out), as a table."""
    flat = [flatten(run.recipe) for run in runs]
    keys = sorted({key for values in flat for key in values} - {"run.name", "run.output_dir"})
    differing = [key for key in keys if len({json.dumps(values.get(key)) for values in flat}) > 1]
    if not differing:
        return "The runs' recipes are the same (apart from their names)."
    lines = [["run", *differing], ["---"] * (len(differing) + 1)]
    lines += [[run.name, *(as_text(values.get(key)) for key in differing)] for run, values in zip(runs, flat)]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)


def as_text(value: Any) -> str:
    """A recipe value as written in a recipe; '–' where the run's recipe has no such key."""
    return "–" if value is None else value if isinstance(value, str) else json.dumps(value)


def write_report(runs: list[RunRecord], out: Path, failed: dict[str, str] | None = None) -> str:
    """Draw the plots into ``out`` and write ``out/report.md`` (with the runs that ``failed``, name → error, if
    any); returns the test table, and the mean ± sd table when a configuration was trained with several seeds."""
    out.mkdir(parents=True, exist_ok=True)
    groups = split_groups(runs)
    test_table = table(runs)
    several = any(len(members) > 1 for members in configurations(runs))
    seeds = seed_table(runs) if several else ""
    distributions = distribution_table(runs)
    seeds_distributions = distribution_table(runs, seeds=True) if several else ""
    notes = report_plots.draw_all(runs, list(groups.values()), out)
    worse = floors(runs)
    data_lines = [f"- data {i}: {describe_data(g[0].recipe['data'])}" for i, g in enumerate(groups.values(), 1)]
    lines = [
        f"# Comparison of {len(runs)} runs ({time.strftime('%Y-%m-%d %H:%M')})",
        "",
        *(f"- `{run.name}`: `{run.path.resolve()}`" for run in runs),
        "",
        "## Test metrics",
        "",
        "Best checkpoint of each run on the test split (MAPE in %); the baselines are computed on the same windows.",
        "",
        test_table,
        "",
        *(
            ["Where the model is worse than a baseline (test MAE at each horizon step, the same windows):", ""]
            if worse
            else []
        ),
        *worse,
        *([""] if worse else []),
        *(data_lines if len(groups) > 1 else [f"Data: {describe_data(runs[0].recipe['data'])}."]),
        "",
        *(["## Forecast distributions", "", DISTRIBUTIONS_NOTE, "", distributions, ""] if distributions else []),
        *(["## Mean ± sd over seeds", "", SEEDS_NOTE, "", seeds, ""] if seeds else []),
        *([SEEDS_DISTRIBUTIONS_NOTE, "", seeds_distributions, ""] if seeds_distributions else []),
        "## What differs between the recipes",
        "",
        differences(runs),
        "",
        "## Plots",
        "",
        *(f"![{title}]({file})\n" for title, file in report_plots.TITLES.items() if (out / file).is_file()),
        *(f"- {note}" for note in notes),
        *(["", "## Failed runs", "", *(f"- `{name}`: {error}" for name, error in failed.items())] if failed else []),
    ]
    save_text("\n".join(lines) + "\n", out / "report.md")
    printed = [
        test_table,
        *(["\n".join(worse)] if worse else []),
        *([f"Forecast distributions\n{distributions}"] if distributions else []),
        *([f"Mean ± sd over seeds\n{seeds}"] if seeds else []),
        *([f"Forecast distributions, mean ± sd over seeds\n{seeds_distributions}"] if seeds_distributions else []),
    ]
    return "\n\n".join(printed)


def compare(run_dirs: list[Path], out: Path | None = None) -> Path:
    """Read the runs (all of them, before writing anything; a folder named twice counts once), write the
    report, print the table."""
    runs = [load_run(path) for path in dict.fromkeys(Path(path).resolve() for path in run_dirs)]
    out = out or runs[0].path.resolve().parent.parent / f"compare-{time.strftime('%Y%m%d-%H%M%S')}"
    print(write_report(runs, out))
    print(f"report: {out / 'report.md'}")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m core.compare", description="Compare finished runs in one Markdown report with plots."
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories, e.g. runs/lstm_radius-20250101-120000")
    parser.add_argument(
        "--out", type=Path, help="report folder (default: compare-<date>-<time> beside the first run's parent folder)"
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    args = parser.parse_args(argv)

    def command() -> int:
        compare(args.runs, args.out)
        return 0

    return run_cli(command, args.debug)
