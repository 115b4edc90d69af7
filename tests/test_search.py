"""Suites and searches as Optuna studies: a suite's runs through the study are the runs a plain command trains,
rerunning continues, a changed recipe is refused, an interrupted or orphaned trial resumes its run, a search ends
with its finalists and best.toml, pruning stops hopeless trials, and two workers survive one of them killed."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from core.errors import Interrupted, RecipeError
from core.experiments import search
from core.experiments import study as study_module
from core.experiments.launch import run_suite
from core.experiments.suite import load_suite
from core.recipe import load_recipe
from core.run import main, run
from tests.helpers import short_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(small_h5, tmp_path):
    """base.toml (a short lstm run on the small file) and a suite file written from dedented TOML text."""
    torch.set_num_threads(1)
    (tmp_path / "base.toml").write_text(
        short_run("base", tmp_path / "unused", small_h5, data={"train_stride": 4}, trainer={"batch_size": 8})
    )

    def write(text: str, name: str = "suite.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text).replace("OUT", str(tmp_path / "out")))
        return path

    return write


def trials(folder: Path, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = study_module.open_storage(study_module.default_storage(folder))
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def finished_dirs(folder: Path) -> dict[str, Path]:
    """Run name → its run directory (exactly one per name, finished)."""
    dirs: dict[str, Path] = {}
    for path in folder.iterdir():
        if path.is_dir() and (path / "recipe.toml").is_file():
            name = tomllib.loads((path / "recipe.toml").read_text())["run"]["name"]
            assert name not in dirs and (path / "metrics.json").is_file(), path
            dirs[name] = path
    return dirs


SEEDED = """
    [suite]
    name = "seeded"
    output_dir = "OUT"
    base = "base.toml"
    seeds = [3, 1]
    [suite.grid]
    "encoder.embedding_dim" = [8, 12]
"""


def test_a_suite_through_its_study_trains_the_runs_a_plain_command_trains(files, tmp_path, capsys):
    suite = files(SEEDED)
    assert main([str(suite)]) == 0
    folder = tmp_path / "out" / "seeded"
    _, runs = load_suite(suite, [])
    assert (
        [t.user_attrs["run"] for t in trials(folder, "seeded")]
        == [r.name for r in runs]
        == [
            "embedding_dim_8-s3",
            "embedding_dim_8-s1",
            "embedding_dim_12-s3",
            "embedding_dim_12-s1",
        ]
    )
    assert all(t.state == TrialState.COMPLETE for t in trials(folder, "seeded"))
    dirs = finished_dirs(folder)
    assert sorted(dirs) == sorted(r.name for r in runs)
    for name, path in dirs.items():
        recipe = tomllib.loads((path / "recipe.toml").read_text())
        assert recipe["run"]["seed"] == int(name[-1]) and recipe["encoder"]["embedding_dim"] == int(name[14:-3])
    # the same numbers as the run trained alone with the suite's overrides
    (one,) = [r for r in runs if r.name == "embedding_dim_12-s1"]
    assert run(one.recipe, [*one.overrides, f'run.output_dir="{tmp_path / "alone"}"']) == 0
    (alone,) = (tmp_path / "alone").iterdir()
    metrics = lambda path: json.loads((path / "metrics.json").read_text())["test"]  # noqa: E731
    assert metrics(alone) == metrics(dirs["embedding_dim_12-s1"])
    capsys.readouterr()

    # rerunning continues the study: nothing is left, nothing is trained again, the report is written again
    (folder / "report.md").unlink()
    assert main([str(suite)]) == 0
    assert finished_dirs(folder) == dirs and (folder / "report.md").is_file()
    assert "=== suite seeded: 4 of 4 runs finished" in capsys.readouterr().out

    # the same study from another recipe is refused in one line; another study name starts afresh
    assert main([str(suite), "--set", "trainer.lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"error: {suite}: the study 'seeded' in sqlite:///{folder}")
    assert "was made from other recipes (embedding_dim_12-s1: trainer.lr 0.001 -> 0.01;" in err
    assert "start another with --study NAME" in err
    assert finished_dirs(folder) == dirs


def interrupted_after(last: int):
    """``core.run.run`` for a suite, with SIGTERM at the end of epoch ``last`` of a run (it stops there, its
    last.pt saved)."""

    def train(recipe, overrides, resume_dir=None, on_epoch_end=None):
        def stop(epoch: int, val_mae: float) -> bool:
            if epoch == last:
                signal.raise_signal(signal.SIGTERM)  # in this thread, at once: the trainer defers it
            return on_epoch_end(epoch, val_mae)

        return run(recipe, overrides, resume_dir, stop)

    return train


def test_an_interrupted_trial_resumes_its_run_when_the_command_is_rerun(files, tmp_path, capsys):
    suite = files("""
        [suite]
        name = "stopped"
        output_dir = "OUT"
        recipes = ["base.toml"]
        set = {"trainer.epochs" = 3}
    """)

    with pytest.raises(Interrupted):
        run_suite(suite, [], interrupted_after(2))
    folder = tmp_path / "out" / "stopped"
    (first, retry) = trials(folder, "stopped")
    assert first.state == TrialState.FAIL and retry.state == TrialState.WAITING
    # epoch 2 ended (its last.pt saved, the pruner told) before the signal stopped the run
    assert retry.user_attrs["run"] == "base" and retry.intermediate_values.keys() == {1, 2}
    (run_dir,) = [p for p in folder.iterdir() if p.is_dir()]
    assert (run_dir / "last.pt").is_file() and not (run_dir / "metrics.json").is_file()
    capsys.readouterr()

    assert main([str(suite)]) == 0
    assert f"=== resuming {run_dir}" in capsys.readouterr().out
    assert finished_dirs(folder) == {"base": run_dir}
    history = json.loads((run_dir / "training_history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2, 3]  # epochs 1 and 2 were not trained again
    assert [t.state for t in trials(folder, "stopped")] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials(folder, "stopped")[1].intermediate_values.keys() == {1, 2, 3}  # epoch 2 from the history


def test_the_trial_of_a_worker_that_is_gone_is_retried_once(files, tmp_path, capsys):
    suite = files(SEEDED)
    folder = tmp_path / "out" / "seeded"
    folder.mkdir(parents=True)
    _, runs = load_suite(suite, [])
    storage = study_module.open_storage(study_module.default_storage(folder))
    from core.experiments.suite import suite_study

    study = suite_study(suite, storage, "seeded", runs, folder)
    assert isinstance(study.study.pruner, optuna.pruners.NopPruner)  # a suite's runs are never pruned
    orphan = study.claim_waiting()  # claimed by a process that then died before saving anything
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan.set_user_attr("worker", study_module.worker_id().rpartition(":")[0] + f":{dead.pid}")
    (folder / "embedding_dim_8-s3-20250101-000000").mkdir()  # what it left: a folder without a checkpoint

    assert main([str(suite)]) == 0
    states = [(t.user_attrs["run"], t.state) for t in trials(folder, "seeded")]
    assert states == [
        ("embedding_dim_8-s3", TrialState.FAIL),
        ("embedding_dim_8-s1", TrialState.COMPLETE),
        ("embedding_dim_12-s3", TrialState.COMPLETE),
        ("embedding_dim_12-s1", TrialState.COMPLETE),
        ("embedding_dim_8-s3", TrialState.COMPLETE),  # the retry, queued behind the others
    ]
    assert sorted(finished_dirs(folder)) == sorted(r.name for r in runs)  # the leftover folder is gone


SEARCH = """
    [suite]
    name = "tiny_search"
    output_dir = "OUT"
    base = "base.toml"
    seeds = [0, 1]
    set = {"trainer.epochs" = 2}
    [suite.search]
    trials = TRIALS
    finalists = 1
    sampler = "random"
    pruner = "none"
    [suite.search.space]
    "trainer.lr" = { log_uniform = [1e-4, 1e-2] }
    "encoder.embedding_dim" = { int = [8, 16], step = 4 }
    pooling = { choice = [{ name = "none" }, { name = "radius", radius_m = 1500.0 }] }
"""


def test_a_search_runs_its_trials_then_its_finalists_on_the_seeds_and_writes_the_best_recipe(files, tmp_path, capsys):
    suite = files(SEARCH.replace("TRIALS", "3"))
    assert main([str(suite)]) == 0
    folder = tmp_path / "out" / "tiny_search"
    out = capsys.readouterr().out
    searched = trials(folder, "tiny_search")
    assert [t.user_attrs["run"] for t in searched] == ["trial_000", "trial_001", "trial_002"]
    assert all(t.state == TrialState.COMPLETE and t.intermediate_values.keys() == {1, 2} for t in searched)
    best = min(searched, key=lambda t: t.value)
    for trial in searched:  # every trial is an ordinary run with the values it was given
        recipe = tomllib.loads((Path(trial.user_attrs["run_dir"]) / "recipe.toml").read_text())
        assert recipe["trainer"]["lr"] == trial.params["trainer.lr"] and recipe["trainer"]["epochs"] == 2
        assert recipe["encoder"]["embedding_dim"] == trial.params["encoder.embedding_dim"] in (8, 12, 16)
        assert recipe["pooling"]["name"] in ("none", "radius")
        metrics = json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())
        assert trial.value == metrics["best_val_mae"]
    # in TensorBoard's HParams view with their values
    events = EventAccumulator(trial.user_attrs["run_dir"]).Reload()
    hparams = events.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    assert b"trainer.lr" in hparams and b"encoder.embedding_dim" in hparams

    name = best.user_attrs["run"]
    finalists = trials(folder, f"tiny_search-finalists-{name}-s0-1")
    assert [t.user_attrs["run"] for t in finalists] == [f"{name}-s0", f"{name}-s1"]
    assert sorted(finished_dirs(folder / "finalists")) == [f"{name}-s0", f"{name}-s1"]
    report = (folder / "finalists" / "report.md").read_text()
    assert "## Mean ± sd over seeds" in report and f"| {name} | lstm |" in report
    recipe, _ = load_recipe(folder / "best.toml")
    assert recipe.trainer.lr == best.params["trainer.lr"] and recipe.run.name == "tiny_search_best"
    assert recipe.encoder.config.embedding_dim == best.params["encoder.embedding_dim"]
    assert recipe.run.output_dir == str(tmp_path / "out") and recipe.trainer.epochs == 2
    summary = (folder / "search.md").read_text()
    assert "| trial | state | best val MAE | epochs | trainer.lr | encoder.embedding_dim | pooling |" in summary
    assert f"Best configuration ({name}, val MAE " in summary and "over 2 seed(s)" in summary
    assert "Mean ± sd over seeds" in out and f"best configuration ({name}" in out

    # more trials and finalists: the same study goes on with one more trial, then the finalists chosen from all
    suite = files(SEARCH.replace("TRIALS", "4").replace("finalists = 1", "finalists = 2"))
    assert main([str(suite)]) == 0
    searched = trials(folder, "tiny_search")
    assert len(searched) == len(finished_dirs(folder)) == 4
    best_two = [t.user_attrs["run"] for t in sorted(searched, key=lambda t: t.value)[:2]]
    finalists = trials(folder, f"tiny_search-finalists-{'-'.join(best_two)}-s0-1")
    assert [t.user_attrs["run"] for t in finalists] == [f"{n}-s{seed}" for n in best_two for seed in (0, 1)]
    assert all(t.state == TrialState.COMPLETE for t in finalists)
    assert {t.user_attrs["run"] for t in finalists} <= set(finished_dirs(folder / "finalists"))  # each run once
    assert any(f"({n}, val MAE" in (folder / "best.toml").read_text() for n in best_two)


def test_pruning_stops_hopeless_trials_and_the_report_counts_the_epochs_saved(files, tmp_path, capsys):
    suite = files(
        SEARCH.replace("TRIALS", "2")
        .replace('pruner = "none"', 'pruner = "threshold"\nthreshold = 0.001\nmin_epochs = 2')
        .replace('"trainer.epochs" = 2', '"trainer.epochs" = 4')
    )
    assert main([str(suite)]) == 0
    folder = tmp_path / "out" / "tiny_search"
    searched = trials(folder, "tiny_search")
    assert [t.state for t in searched] == [TrialState.PRUNED, TrialState.PRUNED]  # val MAE is never below 0.001
    for trial in searched:
        assert trial.intermediate_values.keys() == {1, 2}
        assert json.loads((Path(trial.user_attrs["run_dir"]) / "metrics.json").read_text())["epochs"] == 2
    out = capsys.readouterr().out
    assert "Pruning stopped 2 of 2 trials: 4 epochs trained, 4 saved (50% of the 8" in out
    assert "no trial completed: no finalists, no best configuration" in out
    assert not (folder / "best.toml").exists()


def test_bad_searches_stop_before_training(files, tmp_path, capsys):
    search = SEARCH.replace("TRIALS", "2")
    cases = {
        search.replace("{ log_uniform = [1e-4, 1e-2] }", "{ log_uniform = [0, 1e-2] }"): (
            "[suite.search].space 'trainer.lr' log_uniform = [0, 0.01] must be [LOW, HIGH] with LOW < HIGH (both > 0)"
        ),
        search.replace("{ log_uniform = [1e-4, 1e-2] }", "{ normal = [0, 1] }"): "'trainer.lr' must be one of",
        search.replace("[8, 16], step = 4", "[8, 16], step = 0"): "step = 0 must be a positive number",
        search.replace('"trainer.lr"', '"trainer.lrr"'): "[suite.search].space 'trainer.lrr' = 0.0001: ",
        search.replace('name = "none" }', 'name = "nope" }'): "[suite.search].space 'pooling' = {'name': 'nope'}",
        search.replace('sampler = "random"', 'sampler = "grid"'): "sampler = 'grid' is not allowed",
        search.replace('pruner = "none"', 'pruner = "threshold"'): 'pruner = "threshold" needs threshold',
        search.replace("seeds = [0, 1]\n", ""): "finalists = 1 are re-run on the suite's seeds",
        search.replace('base = "base.toml"', 'recipes = ["base.toml"]'): "[suite.search] searches over one base",
    }
    for text, message in cases.items():
        assert main([str(files(text))]) == 2
        err = capsys.readouterr().err
        assert message in err and err.startswith(f"error: {tmp_path / 'suite.toml'}: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["search_example", "metr_la_week_search"])
def test_the_shipped_searches_load_and_their_spaces_are_valid(name, tmp_path):
    data_file = tmp_path / "data.h5"
    data_file.touch()  # a real-data search takes its file from --set; only its existence is checked
    cli = [f'data.source="{data_file}"'] if name != "search_example" else []
    path = ROOT / "suites" / f"{name}.toml"
    suite, runs = load_suite(path, cli)
    search_ = search.load(path, suite, runs[0], name, tmp_path / name, cli)  # every corner of the space loads
    assert search_.table.trials <= 30 and search_.table.finalists * len(search_.seeds) >= 4
    if name == "search_example":  # a few one-epoch trials on the embedded data
        assert search_.table.trials <= 8 and "trainer.epochs=1" in runs[0].overrides
        assert load_recipe(runs[0].recipe)[0].data.source == "default"


TWO_WORKERS = """
    [suite]
    name = "two"
    output_dir = "OUT"
    base = "base.toml"
    [suite.set]
    "trainer.epochs" = 4
    "trainer.max_batches_per_epoch" = 12
    encoder = {name = "held_gru"}
    "plugins.modules" = ["tests.kit_plugins"]
    [suite.grid]
    "trainer.lr" = [0.001, 0.002, 0.003, 0.004]
"""
RUNS = sorted(f"lr_0.00{d}" for d in (1, 2, 3, 4))


def start_workers(suite: Path, tmp_path: Path) -> subprocess.Popen:
    """The suite's two workers; their runs wait after their first epoch while ``tmp_path/hold`` exists. The launcher
    starts as a script's background job: a session of its own, SIGINT ignored (what it starts inherits that)."""
    command = [sys.executable, "-m", "core.run", str(suite), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HOLD_FILE": str(tmp_path / "hold")}
    return subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )


def mid_run(folder: Path, launcher: subprocess.Popen, count: int) -> list[optuna.trial.FrozenTrial]:
    """Wait until ``count`` trials of study 'two' are in the middle of their runs (epoch 1 over and its last.pt
    saved: the callbacks write the history file before the checkpoint)."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and launcher.poll() is None:
        time.sleep(0.2)
        try:
            running = trials(folder, "two") if (folder / "study.db").is_file() else []
        except KeyError:  # the study is being created
            continue
        found = []
        for trial in running:
            dirs = [p for p in folder.glob(f"{trial.user_attrs.get('run')}-*") if p.is_dir()]
            if trial.state == TrialState.RUNNING and dirs and (dirs[0] / "last.pt").is_file():
                found.append(trial)
        if len(found) >= count:
            return found
    return []


def nothing_lost_or_repeated(folder: Path, stopped: list[str]) -> None:
    """Every run finished once, in one run directory; the ``stopped`` ones resumed, each epoch trained once."""
    states = [(t.user_attrs["run"], t.state) for t in trials(folder, "two")]
    assert sorted(n for n, s in states if s == TrialState.COMPLETE) == RUNS
    assert sorted(n for n, s in states if s == TrialState.FAIL) == sorted(stopped)
    dirs = finished_dirs(folder)
    assert sorted(dirs) == RUNS
    for name in stopped:
        assert [h["epoch"] for h in json.loads((dirs[name] / "training_history.json").read_text())] == [1, 2, 3, 4]
        assert f"=== resuming {dirs[name]}" in (folder / f"{name}.log").read_text()


@pytest.mark.slow
def test_two_workers_finish_a_suite_with_nothing_lost_or_repeated_when_one_is_killed(files, tmp_path):
    folder = tmp_path / "out" / "two"
    (tmp_path / "hold").touch()
    launcher = start_workers(files(TWO_WORKERS), tmp_path)
    running = mid_run(folder, launcher, 1)
    if running:
        os.kill(int(running[0].user_attrs["worker"].rpartition(":")[2]), signal.SIGKILL)
    (tmp_path / "hold").unlink()
    output = launcher.communicate(timeout=300)[0].decode()
    assert running and launcher.returncode == 0, output
    assert "=== worker" in output and "ended with exit code -9" in output
    threads = max(1, (os.cpu_count() or 1) // 2)  # each worker its share of the cores
    assert f"=== 2 workers ({threads} threads each)" in output
    assert f" {threads} threads) on sqlite:///{folder}/study.db" in (folder / "worker-1.log").read_text()
    nothing_lost_or_repeated(folder, [running[0].user_attrs["run"]])


@pytest.mark.slow
def test_ctrl_c_saves_the_workers_runs_and_rerunning_the_command_finishes_the_suite(files, tmp_path):
    folder = tmp_path / "out" / "two"
    suite = files(TWO_WORKERS)
    (tmp_path / "hold").touch()
    launcher = start_workers(suite, tmp_path)
    running = mid_run(folder, launcher, 2)
    if running:
        launcher.send_signal(signal.SIGINT)
        told(folder, signal.SIGINT)
    (tmp_path / "hold").unlink()
    output = launcher.communicate(timeout=300)[0].decode()
    assert running and launcher.returncode == 130, output
    assert "interrupted by SIGINT while the workers trained; each saved its run and stopped: rerun" in output
    stopped = [t.user_attrs["run"] for t in trials(folder, "two") if "failed_trial" in t.system_attrs]
    assert stopped and set(stopped) <= {t.user_attrs["run"] for t in running}  # queued again (one may have ended)
    rerun = start_workers(suite, tmp_path)
    output = rerun.communicate(timeout=300)[0].decode()
    assert rerun.returncode == 0, output
    nothing_lost_or_repeated(folder, stopped)


STOP = """
    [suite]
    name = "stop"
    output_dir = "OUT"
    [suite.set]
    "trainer.max_batches_per_epoch" = 4
    encoder = {name = "held_gru"}
    "plugins.modules" = ["tests.kit_plugins"]
    [[suite.runs]]
    name = "a"
    recipe = "base.toml"
    set = {"trainer.epochs" = 1}
    [[suite.runs]]
    name = "b"
    recipe = "base.toml"
    set = {"trainer.epochs" = 1}
    [[suite.runs]]
    name = "c"
    recipe = "base.toml"
    set = {"trainer.epochs" = 3}
"""


def one_idle_one_held(folder: Path, launcher: subprocess.Popen, held: Path) -> list[int]:
    """Wait until runs a and b are done and c holds after its first epoch (so one worker is idle, the other in the
    middle of c); the workers' pids."""
    while launcher.poll() is None:
        time.sleep(0.1)
        logs = [folder / f"worker-{k}.log" for k in (1, 2)]
        if not all(log.is_file() and "=== worker" in log.read_text() for log in logs):
            continue
        try:
            states = {t.user_attrs.get("run"): t.state for t in trials(folder, "stop")}
        except KeyError:  # the study is being created
            continue
        if held.is_file() and states == {"a": TrialState.COMPLETE, "b": TrialState.COMPLETE, "c": TrialState.RUNNING}:
            return [int(re.search(r"pid (\d+)", log.read_text())[1]) for log in logs]
    raise AssertionError(f"the suite ended before it could be stopped: {launcher.communicate()[0].decode()}")


def told(folder: Path, signum: signal.Signals) -> None:
    """Wait until both workers say that they stop (their signal handled: the held run stops at its next batch)."""
    said = f") stopping as on {signum.name}: "
    logs = [folder / f"worker-{k}.log" for k in (1, 2)]
    pids = [int(re.search(r"pid (\d+)", log.read_text())[1]) for log in logs]
    while True:
        ended = all(map(gone, pids))  # looked at before the logs: a worker says that it stops before it ends
        if sum(said in log.read_text() for log in logs) == 2:
            return
        assert not ended, "the workers ended without saying that they stop"
        time.sleep(0.1)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.slow
@pytest.mark.parametrize(
    "to, signum",
    [
        ("launcher", signal.SIGINT),
        ("launcher", signal.SIGTERM),
        ("group", signal.SIGINT),
        ("group", signal.SIGTERM),
        ("launcher", signal.SIGKILL),  # the launcher dies: its workers stop by themselves
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_stopping_a_suite_stops_every_worker_and_a_rerun_resumes_the_interrupted_run(files, tmp_path, to, signum):
    """One worker idle between runs, one in the middle of the last run, the launcher started as a script's
    background job. After the signal no process of the suite remains,
    the run stopped at its next batch and was taken by no one; the rerun resumes it and every run is done once."""
    folder = tmp_path / "out" / "stop"
    suite = files(STOP)
    (tmp_path / "hold").touch()
    launcher = start_workers(suite, tmp_path)
    workers = one_idle_one_held(folder, launcher, tmp_path / "hold.held")
    (os.killpg if to == "group" else os.kill)(launcher.pid, signum)
    stopped_by = signal.SIGTERM if signum == signal.SIGKILL else signum
    told(folder, stopped_by)  # both workers are stopping: c may go on to its next batch
    (tmp_path / "hold").unlink()
    output = launcher.communicate(timeout=600)[0].decode()
    while not all(map(gone, workers)):  # a killed launcher does not wait for them
        time.sleep(0.1)
    if signum != signal.SIGKILL:
        assert launcher.returncode == 128 + signum, output
        assert f"interrupted by {signum.name} while the workers trained; each saved its run and stopped" in output
    (run_dir,) = folder.glob("c-*")
    state = torch.load(run_dir / "last.pt", weights_only=False)["state"]
    assert (state["epoch"], state["batch"]) == (1, 1), output  # epoch 2 stopped at its next batch
    worker_logs = "".join((folder / f"worker-{k}.log").read_text() for k in (1, 2))
    assert f"interrupted by {stopped_by.name} at epoch 2, batch 1 of 4; saved {run_dir / 'last.pt'}" in worker_logs
    assert f"interrupted by {stopped_by.name} between runs" in worker_logs  # the idle worker took no run
    states = [(t.user_attrs.get("run"), t.state) for t in trials(folder, "stop")]
    assert states == [
        ("a", TrialState.COMPLETE),
        ("b", TrialState.COMPLETE),
        ("c", TrialState.FAIL),
        ("c", TrialState.WAITING),  # its retry, taken by no one
    ]

    rerun = start_workers(suite, tmp_path)
    output = rerun.communicate(timeout=600)[0].decode()
    assert rerun.returncode == 0, output
    assert sorted(finished_dirs(folder)) == ["a", "b", "c"] and finished_dirs(folder)["c"] == run_dir
    assert f"=== resuming {run_dir}" in (folder / "c.log").read_text()
    assert [h["epoch"] for h in json.loads((run_dir / "training_history.json").read_text())] == [1, 2, 3]
    assert [t.state for t in trials(folder, "stop")][3] == TrialState.COMPLETE


def test_a_rerun_resumes_the_interrupted_run_before_it_starts_a_new_one(files, tmp_path, capsys):
    suite = files("""
        [suite]
        name = "order"
        output_dir = "OUT"
        recipes = ["base.toml"]
        seeds = [0, 1, 2]
        set = {"trainer.epochs" = 2}
    """)

    with pytest.raises(Interrupted):
        run_suite(suite, [], interrupted_after(1))  # the first run, base-s0
    capsys.readouterr()
    assert main([str(suite)]) == 0
    started = re.findall(r"=== suite order: run \d/3 '(base-s\d)'|(=== resuming)", capsys.readouterr().out)
    assert started == [("base-s0", ""), ("", "=== resuming"), ("base-s1", ""), ("base-s2", "")]


def claim_all(url: str, start) -> list[int]:
    """(In a process of its own) claim queued trials of study 'queue' until none is left; their numbers."""
    storage = study_module.open_storage(url)
    study = study_module.Study(optuna.load_study(study_name="queue", storage=storage), storage)
    start.wait()  # a barrier: all processes start claiming at once
    claimed = []
    while (trial := study.claim_waiting()) is not None:
        claimed.append(trial.number)
    return claimed


def open_at(url: str, start) -> str:
    """(In a process of its own) open the study database at ``url`` once all of its openers reach the barrier
    ``start``; the error, or ''."""
    start.wait()
    try:
        study_module.open_storage(url)
    except RecipeError as error:
        return str(error)
    return ""


@pytest.mark.slow
def test_processes_opening_a_new_database_at_once_all_get_it(tmp_path):
    urls = [study_module.default_storage(tmp_path / str(k)) for k in range(4)]
    for k in range(4):
        (tmp_path / str(k)).mkdir()
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        barriers = [manager.Barrier(4) for _ in urls]  # each database opened by 4 processes at once
        errors = pool.starmap(open_at, [(url, barrier) for url, barrier in zip(urls, barriers) for _ in range(4)], 1)
    assert errors == [""] * 16


@pytest.mark.slow
def test_workers_claiming_at_once_never_get_the_same_trial(tmp_path):
    url = study_module.default_storage(tmp_path)
    storage = study_module.open_storage(url)
    queue = lambda study: [study.enqueue_trial({}, user_attrs={"run": str(k)}) for k in range(60)]  # noqa: E731
    study_module.open_study(storage, "queue", {}, "test", queue)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(4) as pool:
        claimed = pool.starmap(claim_all, [(url, manager.Barrier(4))] * 4, 1)
    numbers = [n for each in claimed for n in each]
    assert sorted(numbers) == list(range(60)) and sum(map(bool, claimed)) > 1  # each once, by several processes
