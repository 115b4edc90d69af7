"""A file whose time step jumps is refused (training, predict), reported (``core.data info``), or, with
``[data] irregular_steps = "split"``, cut into windows that never span a jump."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

from core.data import write_hdf5
from core.data.__main__ import main as data_main
from core.data.config import DataConfig
from core.data.windows import prepare
from core.errors import DataError
from core.experiments.predict import main as predict_main
from core.run import main as run_main
from core.training.baselines import Baselines
from tests.helpers import short_run

JUMP_AT = 400  # a day is missing before this step


@pytest.fixture(scope="module")
def jumpy(small_data):
    """The small synthetic network with one day cut out before step ``JUMP_AT``."""
    keep = np.r_[0:JUMP_AT, JUMP_AT + 288 : small_data.num_steps]
    return attrs.evolve(small_data, features=small_data.features[keep], timestamps=small_data.timestamps[keep])


@pytest.fixture(scope="module")
def jumpy_h5(jumpy, tmp_path_factory):
    return write_hdf5(jumpy, tmp_path_factory.mktemp("jumpy") / "jumpy.h5")


def test_a_jump_is_refused_with_the_step_the_interval_and_the_way_out(jumpy):
    with pytest.raises(DataError) as error:
        prepare(jumpy)
    assert str(error.value).startswith(
        f"{jumpy.source}: irregular time step at step 400: 86700 s after the previous step, expected 300 s"
    )
    assert 'irregular_steps = "split"' in str(error.value)


def test_split_mode_cuts_no_window_across_the_jump_and_counts_what_it_left_out(jumpy, small_data):
    cfg = DataConfig(irregular_steps="split")
    prepared = prepare(jumpy, cfg)
    window = cfg.history + cfg.horizon
    for dataset in prepared.splits.values():
        times = jumpy.timestamps[dataset.starts.numpy()[:, None] + np.arange(window)]
        assert (np.diff(times, axis=1) == 300).all()
    # the windows that would start at JUMP_AT - window + 1 .. JUMP_AT - 1 are the ones left out (all in train)
    assert prepared.windows_across_jumps == window - 1
    regular = prepare(attrs.evolve(jumpy, timestamps=jumpy.timestamps[0] + 300 * np.arange(jumpy.num_steps)), cfg)
    assert len(regular.splits["train"]) - len(prepared.splits["train"]) == window - 1
    assert regular.windows_across_jumps == 0


def test_the_last_value_baseline_never_reaches_back_across_a_jump(jumpy):
    hidden = jumpy.features.copy()
    hidden[JUMP_AT : JUMP_AT + 30, 0] = np.nan  # VD 0 silent for the first 30 steps after the jump
    prepared = prepare(attrs.evolve(jumpy, features=hidden), DataConfig(irregular_steps="split"))
    baselines = Baselines(prepared)
    vd_mean = np.nanmean(hidden[: prepared.boundaries[0], 0, 0])
    last = baselines.predict(torch.tensor([JUMP_AT]))["last_value"]  # history JUMP_AT .. +11, all missing for VD 0
    assert last[0, 0, 0].item() == pytest.approx(vd_mean, rel=1e-5)
    assert last[0, 0, 0].item() != pytest.approx(hidden[JUMP_AT - 1, 0, 0])


def test_training_refuses_and_split_trains(jumpy_h5, write_recipe, tmp_path, capsys):
    recipe = write_recipe(short_run("jumps", tmp_path / "runs", jumpy_h5, pooling={"name": "none"}))
    assert run_main([str(recipe)]) == 2
    assert (
        f"error: {jumpy_h5}: irregular time step at step 400: 86700 s after the previous step, expected 300 s"
        in capsys.readouterr().err
    )
    assert run_main([str(recipe), "--set", "data.irregular_steps=split"]) == 0
    assert "(23 window(s) spanning the file's 1 time jump(s) left out)" in capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert predict_main([str(run_dir), "--data", str(jumpy_h5)]) == 0  # the run's recipe says split
    text = (run_dir / "recipe.toml").read_text().replace('irregular_steps = "split"', 'irregular_steps = "refuse"')
    (run_dir / "recipe.toml").write_text(text)
    capsys.readouterr()
    assert predict_main([str(run_dir), "--data", str(jumpy_h5)]) == 2
    assert "irregular time step at step 400" in capsys.readouterr().err


def test_data_info_reports_the_jumps(jumpy_h5, capsys):
    assert data_main(["info", str(jumpy_h5)]) == 0
    assert "irregular time steps: 1: step 400 (86700 s after the previous step)" in capsys.readouterr().out
