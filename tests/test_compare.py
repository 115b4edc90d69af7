"""python -m core.compare: the report's numbers are the runs' own, the plots are images, bad folders are named."""

from __future__ import annotations

import json
import math
import shutil
import tomllib

import matplotlib.image
import pytest
import tomli_w
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.experiments.compare import LABELS, main
from core.run import main as run_main
from core.training.metrics import floor
from tests.helpers import short_run


@pytest.fixture(scope="module")
def runs(small_h5, tmp_path_factory):
    """Two finished tiny runs on the same data: LSTM with and without radius pooling."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("compare")
    dirs = []
    for name, pooling in (("radius", "radius"), ("alone", "none")):
        recipe = root / f"{name}.toml"
        recipe.write_text(short_run(name, root / "runs", small_h5, data={"train_stride": 4}, pooling={"name": pooling}))
        before = set((root / "runs").glob("*"))
        assert run_main([str(recipe)]) == 0
        (run_dir,) = set((root / "runs").glob("*")) - before
        dirs.append(run_dir)
    return dirs


def metrics_of(run_dir):
    return json.loads((run_dir / "metrics.json").read_text())


def table_rows(report: str) -> dict[str, list[str]]:
    """The test table's rows by their first cell."""
    section = report.split("## Test metrics")[1].split("## What differs")[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


def test_report_table_holds_each_runs_metrics_and_the_baselines_once(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([*map(str, runs), str(runs[0]) + "/", "--out", str(out)]) == 0  # a folder named twice counts once
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    rows = table_rows(report)
    columns = [f"{m}@{h}" for m in ("mae", "rmse", "mape") for h in (3, 6, 12, "avg")]
    for run_dir in runs:
        metrics = metrics_of(run_dir)
        row = rows[run_dir.name]
        assert row[2:14] == [f"{metrics['test'][c]:.2f}" for c in columns]
        assert row[14:] == [f"{metrics['parameters']:,}", f"{metrics['train_seconds']:.0f}", str(metrics["best_epoch"])]
        assert printed.count(f"| {run_dir.name} |") == 1
    baselines = metrics_of(runs[0])["baselines"]
    assert rows["*last value*"][2:14] == [f"{baselines['last_value'][c]:.2f}" for c in columns]
    assert rows["*historical average*"][2:14] == [f"{baselines['historical_average'][c]:.2f}" for c in columns]
    assert report.count("*last value*") == 1  # same data and split: the baselines once
    assert rows[runs[0].name][1] == "radius" and rows[runs[1].name][1] == "none"
    assert "| pooling.name |" in report  # the recipe values that differ


def test_the_report_says_where_each_run_is_worse_than_a_baseline(runs, tmp_path, capsys):
    out = tmp_path / "report"
    assert main([*map(str, runs), "--out", str(out)]) == 0
    printed, report = capsys.readouterr().out, (out / "report.md").read_text()
    assert "*seasonal naive*" not in report  # four days of data: no week earlier
    for run_dir in runs:
        line = f"- `{run_dir.name}`: {floor(metrics_of(run_dir)['test_mae_by_step'])}"
        assert line in report.split("## What differs")[0] and line in printed


def test_floor_names_the_horizon_steps_where_the_model_loses():
    by_step = {
        "model": [1.0, 2.0, 3.0, 4.0, 2.0, 6.0],
        "last_value": [2.0, 1.0, 1.0, 5.0, 1.0, 1.0],
        "historical_average": [3.0, 3.0, 3.0, 3.0, 3.0, 3.0],  # a tie at @3 is not worse
        "seasonal_naive": [math.nan] * 6,  # not available: left out
    }
    assert floor(by_step) == "worse than last_value at @2..@3, @5..@6; worse than historical_average at @4, @6"
    assert floor({"model": [1.0, 1.0], "last_value": [2.0, 1.0]}) == "not worse than any baseline at any horizon step"


def test_plots_are_images(runs, tmp_path):
    out = tmp_path / "report"
    assert main([*map(str, runs), "--out", str(out)]) == 0
    report = (out / "report.md").read_text()
    for name in ("learning_curves.png", "error_by_horizon.png", "error_map.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 100 and image.shape[1] > 100 and image.std() > 0, name
        assert f"]({name})" in report


def test_metrics_json_has_per_step_and_per_vd_mae(runs, small_data):
    metrics = metrics_of(runs[0])
    assert metrics["vd_ids"] == list(small_data.vd_ids)
    assert len(metrics["test_mae_by_vd"]) == len(metrics["positions_xy"]) == len(small_data.vd_ids)
    by_step = metrics["test_mae_by_step"]
    assert set(by_step) == {"model", "last_value", "historical_average"}  # 4 days of data: no seasonal_naive
    assert set(metrics["baselines"]) == {"last_value", "historical_average"} and len(by_step["model"]) == 12
    assert by_step["model"][2] == pytest.approx(metrics["test"]["mae@3"])
    assert by_step["last_value"][11] == pytest.approx(metrics["baselines"]["last_value"]["mae@12"])


def test_hparams_in_the_run_folder_itself(runs):
    assert not [p for p in runs[0].iterdir() if p.is_dir()]  # no sub-run folder
    events = EventAccumulator(str(runs[0])).Reload()
    assert "_hparams_/session_start_info" in events.PluginTagToContent("hparams")


def test_a_run_without_positions_is_left_off_the_map(runs, tmp_path):
    copy = shutil.copytree(runs[1], tmp_path / "no_positions")
    metrics = metrics_of(copy) | {"positions_xy": None}
    (copy / "metrics.json").write_text(json.dumps(metrics))
    assert main([str(copy), "--out", str(tmp_path / "report")]) == 0
    assert (
        "`no_positions`: the data has no VD positions: not on the map"
        in (tmp_path / "report" / "report.md").read_text()
    )
    assert not (tmp_path / "report" / "error_map.png").exists()


def test_folders_that_are_not_finished_runs_are_named(runs, tmp_path, capsys):
    unfinished = tmp_path / "unfinished"
    shutil.copytree(runs[0], unfinished)
    (unfinished / "metrics.json").unlink()
    (tmp_path / "empty").mkdir()
    cases = {
        tmp_path / "empty": "not a run directory (no recipe.toml)",
        tmp_path / "missing": "no such folder",
        unfinished: f"unfinished run (no metrics.json); finish it with: python -m core.run --resume {unfinished}",
    }
    for folder, message in cases.items():
        assert main([str(runs[0]), str(folder), "--out", str(tmp_path / "report")]) == 2
        assert capsys.readouterr().err == f"error: {folder}: {message}\n"
    assert not (tmp_path / "report").exists()


def test_baselines_once_per_data_set(runs, tmp_path):
    other = shutil.copytree(runs[1], tmp_path / "other_split")
    recipe = tomllib.loads((other / "recipe.toml").read_text())
    recipe["data"]["split"] = [0.6, 0.2, 0.2]
    (other / "recipe.toml").write_text(tomli_w.dumps(recipe))
    metrics = metrics_of(other)
    metrics["baselines"]["last_value"]["mae@3"] = 99.0
    (other / "metrics.json").write_text(json.dumps(metrics))
    assert main([str(runs[0]), str(other), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    rows = table_rows(report)
    assert rows["*last value* (data 1)"][2] == f"{metrics_of(runs[0])['baselines']['last_value']['mae@3']:.2f}"
    assert rows["*last value* (data 2)"][2] == "99.00"
    assert "- data 2: " in report and "split [0.6, 0.2, 0.2]" in report


def test_a_run_whose_recipe_predates_a_data_key_is_on_the_same_data(runs, tmp_path):
    older = shutil.copytree(runs[1], tmp_path / "older")
    recipe = tomllib.loads((older / "recipe.toml").read_text())
    del recipe["data"]["gap_steps"], recipe["data"]["min_history"]  # keys added later, at their defaults
    (older / "recipe.toml").write_text(tomli_w.dumps(recipe))
    assert main([str(runs[0]), str(older), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    rows = table_rows(report)
    assert "*last value*" in rows and "*last value* (data 2)" not in rows
    assert "data.gap_steps" not in report  # not a difference: the older run has the default


def fabricate(source, folder, seed: int, name: str, mae: dict[str, float], train_seconds: float):
    """A copy of the finished run ``source`` as if trained with ``seed`` under ``name``, with these test MAEs."""
    copy = shutil.copytree(source, folder)
    recipe = tomllib.loads((copy / "recipe.toml").read_text())
    recipe["run"] |= {"seed": seed, "name": name, "output_dir": str(folder.parent)}
    (copy / "recipe.toml").write_text(tomli_w.dumps(recipe))
    metrics = metrics_of(copy)
    metrics["test"] |= mae
    metrics["train_seconds"] = train_seconds
    (copy / "metrics.json").write_text(json.dumps(metrics))
    return copy


def test_mean_and_sd_over_seeds_per_configuration(runs, tmp_path, capsys):
    maes = [(3.0, 3.5, 4.0, 3.4), (3.2, 3.4, 4.3, 3.6), (3.7, 3.9, 4.6, 3.9)]
    seeded = [
        fabricate(
            runs[1],
            tmp_path / f"alone-s{seed}-20250101-12000{seed}",
            seed,
            f"alone-s{seed}",
            dict(zip(("mae@3", "mae@6", "mae@12", "mae@avg"), mae)),
            100.0 + 10 * seed,
        )
        for seed, mae in enumerate(maes)
    ]
    assert main([str(runs[0]), *map(str, seeded), "--out", str(tmp_path / "report")]) == 0
    printed = capsys.readouterr().out
    report = (tmp_path / "report" / "report.md").read_text()
    section = report.split("## Mean ± sd over seeds")[1].split("## What differs")[0]
    rows = {
        cells[0].strip(): [c.strip() for c in cells[1:]]
        for cells in (line.strip("|").split("|") for line in section.splitlines() if line.startswith("| "))
    }
    # (3.0, 3.2, 3.7): mean 3.30, sd sqrt((0.09 + 0.01 + 0.16) / 2) = 0.36;
    # (3.5, 3.4, 3.9): 3.60 ± 0.26; (4.0, 4.3, 4.6): 4.30 ± 0.30
    assert rows["alone"] == ["lstm", "none", "3", "3.30 ± 0.36", "3.60 ± 0.26", "4.30 ± 0.30", "3.63 ± 0.25", "110"]
    radius = metrics_of(runs[0])
    assert rows["radius"] == [
        "lstm",
        "radius",
        "1",
        *(f"{radius['test'][f'mae@{h}']:.2f}" for h in (3, 6, 12, "avg")),
        f"{radius['train_seconds']:.0f}",
    ]
    baselines = radius["baselines"]["last_value"]
    assert rows["*last value*"] == ["", "", "", *(f"{baselines[f'mae@{h}']:.2f}" for h in (3, 6, 12, "avg")), ""]
    assert all(f"| {run.name} |" in report.split("## Test metrics")[1] for run in seeded)  # the per-run table as before
    assert "| alone | lstm | none | 3 | 3.30 ± 0.36 |" in printed and "| run.seed |" in report


@pytest.fixture(scope="module")
def quantile_run(runs, small_h5, tmp_path_factory):
    """A finished tiny run of a calibrated quantile head on the same data as ``runs``."""
    root = tmp_path_factory.mktemp("compare_quantile")
    recipe = root / "quantile.toml"
    head = {"name": "quantile", "calibrate": True}
    recipe.write_text(short_run("quantile", root / "runs", small_h5, data={"train_stride": 4}, head=head))
    assert run_main([str(recipe)]) == 0
    (run_dir,) = (root / "runs").iterdir()
    return run_dir


def section_rows(report: str, start: str, end: str) -> dict[str, list[str]]:
    """The rows, by their first cell, of the tables between the headings ``start`` and ``end``."""
    section = report.split(start)[1].split(end)[0]
    rows = [line.strip("|").split("|") for line in section.splitlines() if line.startswith("| ")]
    return {cells[0].strip(): [c.strip() for c in cells[1:]] for cells in rows}


DISTRIBUTION_KEYS = [
    f"{m}{label}" for m in ("coverage90", "width90", "coverage80", "width80", "crps") for label in LABELS
]


def test_distribution_heads_get_coverage_width_and_crps_beside_the_baselines_quantiles(
    runs, quantile_run, tmp_path, capsys
):
    out = tmp_path / "report"
    assert main([str(runs[0]), str(quantile_run), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    report = (out / "report.md").read_text()
    metrics = metrics_of(quantile_run)
    test_rows = section_rows(report, "## Test metrics", "## Forecast distributions")
    assert test_rows[quantile_run.name][2] == f"{metrics['test']['mae@3']:.2f}"  # in the test table too
    rows = section_rows(report, "## Forecast distributions", "## What differs")
    header = rows["run"]
    assert header[:5] == ["head", "cov90@3", "cov90@6", "cov90@12", "cov90@avg"] and header[-1] == "CRPS@avg"
    assert header[5] == "w90@3" and header[9] == "cov80@3"
    assert rows[quantile_run.name] == ["quantile", *(f"{metrics['test'][k]:.2f}" for k in DISTRIBUTION_KEYS)]
    for name, label in (("last_value", "*last value*"), ("historical_average", "*historical average*")):
        assert rows[label] == ["", *(f"{metrics['baselines'][name][k]:.2f}" for k in DISTRIBUTION_KEYS)]
    assert runs[0].name not in rows  # a point head's run: only in the test table
    assert f"| {quantile_run.name} | quantile | {metrics['test']['coverage90@3']:.2f} |" in printed
    image = matplotlib.image.imread(out / "reliability.png")
    assert image.shape[0] > 100 and image.std() > 0 and "](reliability.png)" in report

    point_only = tmp_path / "point"
    assert main([*map(str, runs), "--out", str(point_only)]) == 0
    assert "Forecast distributions" not in (point_only / "report.md").read_text()
    assert not (point_only / "reliability.png").exists()


def test_distribution_scores_as_mean_and_sd_over_seeds(runs, quantile_run, tmp_path, capsys):
    crps = (2.0, 2.5, 3.0)
    seeded = [
        fabricate(
            quantile_run,
            tmp_path / f"quantile-s{seed}-20250101-12000{seed}",
            seed,
            f"quantile-s{seed}",
            {"coverage90@12": 88.0 + 2 * seed, "crps@12": value},
            100.0,
        )
        for seed, value in enumerate(crps)
    ]
    assert main([str(runs[0]), *map(str, seeded), "--out", str(tmp_path / "report")]) == 0
    report = (tmp_path / "report" / "report.md").read_text()
    rows = section_rows(report, "as mean ± sd over the seeds:", "## What differs")  # after the MAE table
    assert set(rows) - {"---"} == {"configuration", "quantile", "*last value*", "*historical average*"}  # no radius
    assert rows["quantile"][:2] == ["quantile", "3"]
    columns = dict(zip(rows["configuration"][2:], rows["quantile"][2:]))
    assert columns["cov90@12"] == "90.00 ± 2.00" and columns["CRPS@12"] == "2.50 ± 0.50"  # 88, 90, 92; 2, 2.5, 3
    baseline = metrics_of(quantile_run)["baselines"]["last_value"]
    assert rows["*last value*"][-1] == f"{baseline['crps@avg']:.2f}"
    assert "Forecast distributions, mean ± sd over seeds" in capsys.readouterr().out
