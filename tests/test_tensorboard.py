"""What TensorBoard shows: per-step and per-epoch scalars, every tag documented in docs/tensorboard.md, one HParams
table whose columns are the union of every run's recipe keys (read through TensorBoard's own hparams backend), and
for a distribution head its scores, the reliability of its quantiles and its intervals on the forecast figure."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from tensorboard import context
from tensorboard.backend.event_processing import data_provider, plugin_event_multiplexer
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.backend.event_processing.event_file_loader import LegacyEventFileLoader
from tensorboard.plugins import base_plugin
from tensorboard.plugins.hparams import backend_context

from core.run import main as run_main
from core.training.tensorboard import RunLogger, forecast_figure
from tests.helpers import short_run

PAGE = Path(__file__).resolve().parents[1] / "docs" / "tensorboard.md"
BATCHES = 3
RUNS = {  # over the short run's lstm of E 8 and point head
    "lstm": {},
    "xlstm": {"encoder": {"name": "xlstm_shared", "num_blocks": 2, "slstm_at": [1], "num_heads": 2}},
    "quantile": {"head": {"name": "quantile", "calibrate": True}},
}


@pytest.fixture(scope="module")
def runs(small_h5, tmp_path_factory, one_thread_module):
    root = tmp_path_factory.mktemp("tensorboard")
    for name, tables in RUNS.items():
        recipe = root / f"{name}.toml"
        trainer = {"epochs": 2, "max_batches_per_epoch": BATCHES, "figure_vds": 1}
        recipe.write_text(short_run(name, root / "runs", small_h5, data={"train_stride": 4}, trainer=trainer, **tables))
        assert run_main([str(recipe)]) == 0
    return root / "runs"


def run_named(runs: Path, name: str) -> Path:
    (run_dir,) = runs.glob(f"{name}-*")
    return run_dir


@pytest.fixture(scope="module")
def one_thread_module():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def events(run_dir: Path) -> EventAccumulator:
    return EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0}).Reload()


def test_learning_rate_gradient_norm_and_throughput_are_logged_per_step_and_per_epoch(runs):
    for run_dir in runs.iterdir():
        scalars = events(run_dir)
        for tag in ("train/loss_step", "train/lr_step", "train/grad_norm_step", "train/samples_per_s_step"):
            assert [e.step for e in scalars.Scalars(tag)] == list(range(1, 2 * BATCHES + 1)), tag
        for tag in ("train/lr", "train/grad_norm", "train/samples_per_s"):
            assert [e.step for e in scalars.Scalars(tag)] == [BATCHES, 2 * BATCHES], tag
        lr = [e.value for e in scalars.Scalars("train/lr_step")]
        assert lr[0] == pytest.approx(1e-3) and lr[-1] < lr[0]  # the cosine schedule moves it between epochs
        assert all(e.value > 0 for e in scalars.Scalars("train/grad_norm_step"))


def test_the_one_cycle_schedule_steps_with_every_update_and_spans_the_run(small_h5, tmp_path, one_thread_module):
    recipe = tmp_path / "onecycle.toml"
    trainer = {"epochs": 2, "max_batches_per_epoch": BATCHES, "scheduler": "onecycle", "lr": 0.01}
    recipe.write_text(short_run("onecycle", tmp_path / "runs", small_h5, data={"train_stride": 4}, trainer=trainer))
    assert run_main([str(recipe)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    logged = [e.value for e in events(run_dir).Scalars("train/lr_step")]  # after each update
    reference = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(reference, max_lr=0.01, total_steps=2 * BATCHES + 1)
    expected = []
    for _ in range(2 * BATCHES):  # OneCycleLR refuses a step past its total: the schedule spans the run exactly
        reference.step()
        schedule.step()
        expected.append(reference.param_groups[0]["lr"])
    assert logged == pytest.approx(expected)
    assert max(logged) == pytest.approx(0.01, rel=0.05) and logged[-1] < 0.01 / 1e5  # up to lr, then annealed


def test_every_tag_written_is_listed_in_the_docs(runs):
    section = PAGE.read_text()
    for run_dir in runs.iterdir():
        tags = events(run_dir).Tags()
        written = tags["scalars"] + tags["images"] + list(tags["tensors"])
        for tag in (t for t in written if not t.startswith("_hparams_/")):  # TensorBoard's own HParams records aside
            metric = r"(mae|rmse|mape|coverage\d+|width\d+|crps)@(\d+|avg)"
            documented = re.sub(metric, "<metric>@<h>", tag.removesuffix("/text_summary"))
            assert f"`{documented}`" in section, f"{tag} is written but not listed in {PAGE}"


def test_the_hparams_table_has_every_runs_encoder_keys(runs):
    multiplexer = plugin_event_multiplexer.EventMultiplexer()
    multiplexer.AddRunsFromDirectory(str(runs))
    multiplexer.Reload()
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(runs))
    hparams = backend_context.Context(
        base_plugin.TBContext(logdir=str(runs), data_provider=provider, multiplexer=multiplexer)
    )
    request = context.RequestContext()
    experiment = hparams.experiment_from_metadata(
        request,
        "",
        True,
        hparams.hparams_metadata(request, ""),
        hparams.hparams_from_data_provider(request, "", limit=None),
    )
    columns = {info.name for info in experiment.hparam_infos}
    assert {"encoder.num_layers", "encoder.num_blocks", "encoder.slstm_at", "encoder.name", "trainer.lr"} <= columns
    names = next(info for info in experiment.hparam_infos if info.name == "encoder.name")
    assert sorted(v.string_value for v in names.domain_discrete.values) == ["lstm", "xlstm_shared"]
    metrics = {info.name.tag for info in experiment.metric_infos}
    assert {"hparam/test/mae@12", "hparam/best_val_mae"} <= metrics


def test_a_distribution_head_logs_its_scores_reliability_and_intervals(runs):
    """Coverage, width and CRPS per horizon step (validation, test, baselines), the reliability diagram after the
    test; a point head's run has the forecast figures and no reliability diagram."""
    quantile = events(run_named(runs, "quantile"))
    metrics = json.loads((run_named(runs, "quantile") / "metrics.json").read_text())
    scalars = quantile.Tags()["scalars"]
    for split in ("val", "test", "test_last_value", "test_historical_average"):
        for key in ("coverage90@12", "coverage80@3", "width90@avg", "crps@6"):
            assert f"{split}/{key}" in scalars, f"{split}/{key}"
    assert [e.step for e in quantile.Scalars("val/crps@12")] == [BATCHES, 2 * BATCHES]
    (logged,) = quantile.Scalars("test/coverage90@12")
    assert logged.value == pytest.approx(metrics["test"]["coverage90@12"])
    assert {"reliability/test", "forecast/val", "forecast/test"} <= set(quantile.Tags()["images"])
    (image,) = quantile.Images("reliability/test")
    assert image.width > 300 and image.height > 100

    point = events(run_named(runs, "lstm")).Tags()
    assert {"forecast/val", "forecast/test"} <= set(point["images"]) and "reliability/test" not in point["images"]
    assert not [tag for tag in point["scalars"] if "coverage" in tag or "crps" in tag]


def test_the_forecast_figure_shades_the_intervals_it_is_given():
    history, truth, forecast = np.zeros((12, 2)), np.ones((6, 2)), np.ones((6, 2))
    bands = [(forecast - 2, forecast + 2, 90), (forecast - 1, forecast + 1, 80)]
    shaded = forecast_figure(history, truth, forecast, ["a", "b"], "speed", bands)
    plain = forecast_figure(history, truth, forecast, ["a", "b"], "speed")
    assert [len(ax.collections) for ax in shaded.axes] == [2, 2]
    assert [len(ax.collections) for ax in plain.axes] == [0, 0]
    widest = shaded.axes[0].collections[0].get_paths()[0].vertices[:, 1]
    assert widest.min() == -1.0 and widest.max() == 3.0  # the forecast ± 2
    assert [t.get_text() for t in shaded.axes[0].get_legend().get_texts()][:2] == ["90%", "80%"]


def test_buffered_scalars_reach_the_file_with_their_times_and_order(tmp_path, monkeypatch):
    """The per-step scalars wait in the logger (the writer's thread is not woken per step) and reach the events
    file, before whatever is written after them, with the step, value and wall time they were logged at."""
    monkeypatch.setattr(RunLogger, "BUFFERED", 5)
    logger = RunLogger(tmp_path)
    added, add_scalar = [], logger._writer.add_scalar
    monkeypatch.setattr(logger._writer, "add_scalar", lambda *args, **kw: added.append(args) or add_scalar(*args, **kw))
    logged = []
    for step in range(1, 4):
        before = time.time()
        logger.scalars({"train/loss_step": 1.0 / step, "train/lr_step": 0.1 * step}, step)
        logged.append((before, time.time()))
        if step == 2:
            assert added == []  # 4 scalars kept, fewer than BUFFERED
    assert len(added) == 6  # the 5th and 6th: handed over, all 6 at once
    logger.scalars({"val/mae": 2.5}, 3)
    logger.recipe("[run]")  # after every scalar logged before it
    logger.close()

    events = [e for f in tmp_path.glob("events.*") for e in LegacyEventFileLoader(str(f)).Load() if e.summary.value]
    tags = [(e.summary.value[0].tag, e.step) for e in events]
    assert tags == [
        *[(tag, step) for step in range(1, 4) for tag in ("train/loss_step", "train/lr_step")],
        ("val/mae", 3),
        ("recipe/text_summary", 0),
    ]
    for event in events[:6]:
        before, after = logged[event.step - 1]
        assert before <= event.wall_time <= after  # the time it was logged, not handed over
    values = [e.summary.value[0].simple_value for e in events[:7]]
    np.testing.assert_allclose(values, [1.0, 0.1, 0.5, 0.2, 1 / 3, 0.3, 2.5], rtol=1e-6)


def test_scalars_kept_past_keep_s_are_handed_over(tmp_path, monkeypatch):
    monkeypatch.setattr(RunLogger, "KEEP_S", 0.0)  # every scalar is old enough at once
    logger = RunLogger(tmp_path)
    logger.scalars({"train/loss_step": 1.0}, 1)
    assert logger._scalars == []
    logger.close()
