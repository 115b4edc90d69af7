"""Suites: a grid trains one run per value with the right overrides, a failed run is reported, data.vds.
(The study behind a suite, workers, retries and searches: test_search.py.)"""

from __future__ import annotations

import json
import statistics
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch

from core.data.config import DataConfig
from core.data.windows import prepare
from core.errors import DataError, RecipeError
from core.experiments.suite import load_suite
from core.recipe import apply_override
from core.run import main
from tests.helpers import short_run

FAILING_AND_ONE_VD = """
[[suite.runs]]
name = "unknown_vd"
recipe = "base.toml"
set = {"data.vds" = ["VD-N1-00", "VD-NOPE"]}
[[suite.runs]]
name = "one_vd"
recipe = "base.toml"
set = {"data.vds" = ["VD-N1-03"], pooling = {name = "none"}}
"""


@pytest.fixture
def suite_files(small_h5, tmp_path):
    """Write base.toml and a suite file (TOML text, dedented) beside it; returns the suite's path."""
    torch.set_num_threads(1)
    (tmp_path / "base.toml").write_text(short_run("base", tmp_path / "unused", small_h5, data={"train_stride": 4}))

    def write(text: str) -> Path:
        path = tmp_path / "suite.toml"
        path.write_text(textwrap.dedent(text).replace("OUT", str(tmp_path / "out")))
        return path

    return write


def suite_folder(tmp_path: Path) -> Path:
    (folder,) = (tmp_path / "out").iterdir()
    return folder


def test_grid_trains_one_run_per_value_and_writes_the_report(suite_files, tmp_path, capsys):
    suite = suite_files("""
        [suite]
        name = "tiny"
        output_dir = "OUT"
        base = "base.toml"
        set = {"trainer.lr" = 0.003}
        [suite.grid]
        "model.hidden_dim" = [8, 16]
    """)
    assert main([str(suite), "--set", "trainer.batch_size=8"]) == 0
    folder = suite_folder(tmp_path)
    assert folder.name == "tiny" and (folder / "study.db").is_file()
    runs = sorted(p for p in folder.iterdir() if p.is_dir())
    assert [p.name.split("-")[0] for p in runs] == ["hidden_dim_16", "hidden_dim_8"]
    for run_dir, hidden in zip(runs, (16, 8)):
        recipe = tomllib.loads((run_dir / "recipe.toml").read_text())
        assert recipe["model"]["hidden_dim"] == hidden
        assert recipe["trainer"]["lr"] == 0.003 and recipe["trainer"]["batch_size"] == 8  # suite set, then --set
        assert recipe["run"]["output_dir"] == str(folder)
    report = (folder / "report.md").read_text()
    assert all(f"| {p.name} | lstm | radius |" in report for p in runs)
    assert (folder / "learning_curves.png").stat().st_size > 0
    assert f"report: {folder / 'report.md'}" in capsys.readouterr().out


def test_seeds_train_every_run_once_per_seed_and_report_mean_and_sd(suite_files, tmp_path, capsys):
    suite = suite_files("""
        [suite]
        name = "seeded"
        output_dir = "OUT"
        recipes = ["base.toml"]
        set = {"trainer.batch_size" = 8}
        seeds = [3, 1]
    """)
    _, runs = load_suite(suite, ["run.seed=7"])
    assert [(run.name, run.overrides[-1]) for run in runs] == [
        ("base-s3", "run.seed=3"),
        ("base-s1", "run.seed=1"),
    ]  # the seed wins
    assert main([str(suite), "--set", "run.seed=7"]) == 0
    folder = suite_folder(tmp_path)
    run_dirs = {p.name.split("-")[1]: p for p in folder.iterdir() if p.is_dir()}
    assert sorted(run_dirs) == ["s1", "s3"]
    maes = []
    for seed, run_dir in run_dirs.items():
        recipe = tomllib.loads((run_dir / "recipe.toml").read_text())
        assert (
            recipe["run"]["seed"] == int(seed[1:])
            and recipe["run"]["name"] == f"base-{seed}"
            and recipe["trainer"]["batch_size"] == 8
        )
        maes.append(json.loads((run_dir / "metrics.json").read_text())["test"]["mae@12"])
    assert maes[0] != maes[1]  # other seeds, other weights
    expected = f"{statistics.mean(maes):.2f} ± {statistics.stdev(maes):.2f}"
    row = next(
        line
        for line in (folder / "report.md").read_text().splitlines()
        if line.startswith("| base | lstm | radius | 2 |")
    )
    assert row.split(" | ")[6] == expected
    assert row in capsys.readouterr().out


def test_a_failed_run_is_reported_and_the_suite_goes_on(suite_files, small_data, tmp_path, capsys):
    suite = suite_files('[suite]\noutput_dir = "OUT"\n' + FAILING_AND_ONE_VD)
    assert main([str(suite)]) == 1
    folder = suite_folder(tmp_path)
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    assert run_dir.name.startswith("one_vd-")
    recipe = tomllib.loads((run_dir / "recipe.toml").read_text())
    assert recipe["data"]["vds"] == ["VD-N1-03"] and recipe["pooling"] == {"name": "none"}
    report = (folder / "report.md").read_text()
    assert "## Failed runs" in report and "`unknown_vd`: DataError:" in report and "'VD-NOPE'" in report
    assert "failed: unknown_vd: DataError:" in capsys.readouterr().out


@pytest.mark.slow
def test_parallel_runs_train_in_processes_of_their_own(suite_files, tmp_path, capsys):
    suite = suite_files('[suite]\noutput_dir = "OUT"\nparallel = 2\n' + FAILING_AND_ONE_VD)
    assert main([str(suite)]) == 1
    folder = suite_folder(tmp_path)
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    assert run_dir.name.startswith("one_vd-") and (run_dir / "metrics.json").is_file()
    assert f"run directory {run_dir}" in (folder / "one_vd.log").read_text()
    assert "'VD-NOPE'" in (folder / "unknown_vd.log").read_text().splitlines()[-1]
    report = (folder / "report.md").read_text()
    assert f"| {run_dir.name} | lstm | none |" in report
    assert "`unknown_vd`: DataError: " in report and "'VD-NOPE'" in report
    assert "=== FAILED 'unknown_vd': DataError: " in capsys.readouterr().out


def test_bad_suites_stop_before_training(suite_files, tmp_path, capsys):
    recipes = '[suite]\nrecipes = ["base.toml"]\n'
    cases = {
        '[suite]\noutput_dir = "OUT"\n[suite.grid]\n"model.hidden_dim" = [8]\n': "[suite.grid] needs a base recipe",
        '[suite]\nrecipe = "base.toml"\n': "[suite]: unknown key 'recipe' (did you mean 'recipes'?)",
        '[suite]\nrecipes = ["base.toml"]\nset = {"trainer.epocs" = 1}\n': "run 'base': ",
        recipes + 'set = {"data.source" = "nowhere.h5"}\n': (
            "run 'base': data file 'nowhere.h5' not found; pass yours with --set data.source=PATH"
        ),
        '[suite]\nbase = "base.toml"\n[suite.grid]\n"trainer.lr" = 0.1\n': (
            "'trainer.lr' must be a non-empty list of values"
        ),
        recipes + "seeds = []\n": "[suite]: 'seeds' must be a non-empty list of distinct ints: []",
        recipes + "seeds = [1, 2, 1]\n": "[suite]: 'seeds' must be a non-empty list of distinct ints: [1, 2, 1]",
        recipes + "seeds = [0, 0.5]\n": "[suite] seeds = [0, 0.5] has the wrong type, expected list[int]",
    }
    for text, message in cases.items():
        assert main([str(suite_files(text))]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith(f"error: {tmp_path / 'suite.toml'}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("path", sorted(Path("suites").glob("*.toml")), ids=lambda path: path.stem)
def test_every_shipped_suite_loads(path, tmp_path):
    data_file = tmp_path / "data.h5"
    data_file.touch()  # a real-data suite takes its file from --set; only its existence is checked
    suite, runs = load_suite(path, [f'data.source="{data_file}"'] if path.stem != "lstm_vs_xlstm" else [])
    assert runs and all(run.recipe.is_file() for run in runs)
    if path.stem in ("lstm_vs_xlstm", "pems_bay_16"):  # the three modes: single VD, independent VDs, social pooling
        names = [run.name for run in runs]
        assert names[:5] == [
            "single_vd-lstm",
            "single_vd-xlstm",
            "multi_vd-lstm",
            "multi_vd-xlstm",
            "independent_multi_vd-xlstm",
        ]
        assert any(override.startswith("data.vds=[") for override in runs[0].overrides)


def test_set_replaces_a_whole_table():
    raw = {"pooling": {"name": "radius", "radius_m": 1500.0}}
    apply_override(raw, 'pooling={name = "none"}')
    assert raw == {"pooling": {"name": "none"}}
    with pytest.raises(RecipeError, match="expected TABLE.KEY=VALUE"):
        apply_override(raw, "pooling=none")


def test_data_vds_keeps_exactly_those_vds(small_data):
    chosen = ("VD-N1-04", "VD-N1-01")
    prepared = prepare(small_data, DataConfig(vds=chosen))
    index = [small_data.vd_ids.index(vd) for vd in chosen]
    assert prepared.spec().vd_ids == chosen
    np.testing.assert_array_equal(prepared.data.features, small_data.features[:, index])
    np.testing.assert_array_equal(prepared.data.latlon, small_data.latlon[index])
    xy = prepared.spec().positions_xy.numpy()  # projected about the kept VDs: distances are what stays
    assert np.linalg.norm(xy[0] - xy[1]) == pytest.approx(
        np.linalg.norm(np.subtract(*small_data.positions_xy()[index])), rel=1e-3
    )
    assert {name: values for name, values in prepared.data.vd_attributes.items()} == {
        name: tuple(values[i] for i in index) for name, values in small_data.vd_attributes.items()
    }
    with pytest.raises(DataError, match=r"data.vds: unknown VD id\(s\) 'VD-N1-4' \(did you mean 'VD-N1-04'\?\)"):
        prepare(small_data, DataConfig(vds=("VD-N1-01", "VD-N1-4")))
