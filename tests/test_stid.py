"""STID: the embeddings the paper concatenates, read off the right VD, time-of-day slot and day; padding that
changes nothing; the calendar it needs asked for by its recipe key; the shipped recipe trains."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import attrs
import numpy as np
import pytest
import torch

from core.api import EncoderInput
from core.calendar import calendar_columns
from core.data import write_hdf5
from core.data.config import DataConfig
from core.data.resample import resample
from core.data.windows import prepare
from core.errors import RecipeError
from core.run import main
from core.training.checkpoints import load_best
from core.training.metrics import floor
from plugins.encoders.stid import STIDConfig, STIDEncoder, time_of_day_slot
from tests.conftest import F64, make_spec
from tests.helpers import short_run

CALENDAR = ("time_of_day_sin", "time_of_day_cos", "day_of_week")
HORIZON = 3  # make_spec's
THURSDAY_17H = int(np.datetime64("2012-03-01T17:00", "s").astype(np.int64))
SUNDAY_08H30 = int(np.datetime64("2012-03-04T08:30", "s").astype(np.int64))


def spec(n: int = 5, features: int = 2, history: int = 6, covariates: tuple[str, ...] = CALENDAR, interval: int = 300):
    return attrs.evolve(
        make_spec(n=n, features=features, history=history),
        num_covariates=len(covariates),
        covariate_names=covariates,
        interval=interval,
    )


def encoder(config: STIDConfig = STIDConfig(), **changes) -> STIDEncoder:
    torch.manual_seed(0)
    return STIDEncoder(config, spec(**changes)).eval()


def calendar_input(
    last_steps=(THURSDAY_17H, SUNDAY_08H30),
    n: int = 5,
    t: int = 6,
    seed: int = 0,
    interval: int = 300,
    covariates: tuple[str, ...] = CALENDAR,
) -> EncoderInput:
    """Random values (some missing) for windows of steps of ``interval`` seconds ending at ``last_steps``, with
    the calendar of their steps and of the 3 target steps that follow (US holidays)."""
    g = torch.Generator().manual_seed(seed)
    observed = torch.rand(len(last_steps), n, t, 2, generator=g) > 0.1
    values = torch.randn(len(last_steps), n, t, 2, generator=g) * observed
    steps = np.asarray(last_steps)[:, None] + interval * np.arange(1 - t, 1 + HORIZON)
    columns = calendar_columns(steps.reshape(-1), day_of_week=True, holidays="US")
    calendar = torch.tensor(np.stack([columns[name] for name in covariates], -1), dtype=torch.float32)
    calendar = calendar.reshape(len(last_steps), t + HORIZON, len(covariates))
    return EncoderInput(values=values, observed=observed, covariates=calendar[:, :t], future_covariates=calendar[:, t:])


def concatenated(model: STIDEncoder, inputs: EncoderInput, slots: list[int], days: list[int]) -> torch.Tensor:
    """By hand: the window's embedding, VD i's vector in slot i, each sample's time-of-day and day vectors."""
    b, n = inputs.values.shape[:2]
    window = torch.cat([inputs.values, inputs.observed.float()], -1).flatten(2)  # [B, N, T * 2F]
    return torch.cat(
        [
            model.window(window),
            model.vd.weight.expand(b, n, -1),
            model.time_of_day.weight[slots, None].expand(b, n, -1),
            model.day_of_week.weight[days, None].expand(b, n, -1),
        ],
        -1,
    )


def test_the_state_is_the_window_vd_time_of_day_and_day_of_week_embeddings():
    model = encoder(STIDConfig(num_layers=0))  # no MLP: the state is the concatenated embeddings themselves
    inputs = calendar_input()
    state = model(inputs)
    assert state.shape == (2, 5, 128) and model.out_dim == 128
    torch.testing.assert_close(
        state, concatenated(model, inputs, slots=[17 * 12, 8 * 12 + 6], days=[3, 6])
    )  # Thu 17:00, Sun 08:30


def test_time_of_day_slots_follow_the_datas_step():
    quarter = encoder(STIDConfig(num_layers=0), interval=900)  # 15-minute data: 96 slots a day
    assert quarter.time_of_day.num_embeddings == 96 and encoder().time_of_day.num_embeddings == 288
    inputs = calendar_input(last_steps=(THURSDAY_17H + 900, SUNDAY_08H30), interval=900)
    torch.testing.assert_close(
        quarter(inputs), concatenated(quarter, inputs, slots=[17 * 4 + 1, 8 * 4 + 2], days=[3, 6])
    )
    half_hours = encoder(STIDConfig(num_layers=0, time_slots=48), interval=900)  # coarser than the data: accepted
    on_the_hour = calendar_input(interval=900)  # Thursday 17:00, Sunday 08:30
    torch.testing.assert_close(
        half_hours(on_the_hour)[..., 64:96], half_hours.time_of_day.weight[[34, 17], None].expand(2, 5, 32)
    )
    with pytest.raises(RecipeError) as error:
        encoder(STIDConfig(time_slots=288), interval=900)
    assert str(error.value) == (
        "encoder 'stid': time_slots = 288 is finer than the data's steps (900 s: 96 a day), so 192 time-of-day "
        "vectors would never be trained; leave time_slots out (0: the data's 96) or give at most 96"
    )


def test_the_target_calendar_embeds_each_target_steps_slot_day_and_holiday():
    with_holiday = (*CALENDAR, "holiday")
    config = STIDConfig(num_layers=0, calendar="target", holiday_dim=8, time_of_day_dim=16, day_of_week_dim=16)
    model = encoder(config, covariates=with_holiday)
    sunday_2350 = int(np.datetime64("2023-12-31T23:50", "s").astype(np.int64))  # targets into 2024-01-01, a holiday
    inputs = calendar_input(last_steps=(THURSDAY_17H, sunday_2350), covariates=with_holiday)
    state = model(inputs)
    assert state.shape == (2, 5, 32 + 32 + 40) == (2, 5, model.out_dim)
    slots, days = torch.tensor([[205, 206, 207], [287, 0, 1]]), torch.tensor([[3, 3, 3], [6, 0, 0]])
    holidays = torch.tensor([[0, 0, 0], [0, 1, 1]])  # Sunday 23:55, then Monday 00:00 and 00:05
    steps = torch.cat(  # [B, H, 40] by hand: each target step's time-of-day, day and holiday vectors
        [model.time_of_day.weight[slots], model.day_of_week.weight[days], model.holiday.weight[holidays]], -1
    )
    expected = model.target_calendar(steps.flatten(1))  # [B, 40]: the three steps' vectors to one
    torch.testing.assert_close(state[..., 64:], expected[:, None].expand(2, 5, 40))
    torch.testing.assert_close(
        state[..., :64], encoder(STIDConfig(num_layers=0), covariates=with_holiday)(inputs)[..., :64]
    )

    earlier = attrs.evolve(inputs, covariates=calendar_input(last_steps=(THURSDAY_17H - 86400, sunday_2350)).covariates)
    assert torch.equal(model(earlier), state)  # the inputs' own calendar is not read
    later = attrs.evolve(inputs, future_covariates=inputs.future_covariates.roll(1, 0))
    assert not torch.allclose(model(later), state)
    with pytest.raises(RecipeError, match='calendar = "target"\\) but the batch has no future_covariates'):
        model(attrs.evolve(inputs, future_covariates=None))
    with pytest.raises(RecipeError) as error:
        encoder(STIDConfig(holiday_dim=8))
    assert str(error.value) == (
        "encoder 'stid' embeds holidays (holiday_dim = 8) but the data has no holiday covariate; set [data] holidays = "
        '"<region>", e.g. "US-CA" (or [encoder] holiday_dim = 0)'
    )


def test_weekday_weekend_gives_monday_to_friday_one_vector():
    model = encoder(STIDConfig(num_layers=0, weekday_weekend=True))
    monday_17h = THURSDAY_17H - 3 * 86400
    state = model(calendar_input(last_steps=(THURSDAY_17H, SUNDAY_08H30, monday_17h)))
    assert model.day_of_week.num_embeddings == 2
    torch.testing.assert_close(state[..., 96:], model.day_of_week.weight[[0, 1, 0], None].expand(3, 5, 32))


def test_residual_mlp_layers_and_gradients_reach_every_parameter():
    model = encoder()
    inputs = calendar_input()
    expected = concatenated(model, inputs, slots=[204, 102], days=[3, 6])
    for layer in model.layers:  # Linear-ReLU-Dropout-Linear + the input (dropout is off in eval)
        expected = expected + layer[3](torch.relu(layer[0](expected)))
    torch.testing.assert_close(model(inputs), expected)
    model.train()(inputs).pow(2).sum().backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, f"no gradient for {missing}"


def test_the_vd_embedding_tells_vds_apart_and_follows_the_slots(float64):
    inputs = calendar_input()
    same = attrs.evolve(
        inputs,
        values=inputs.values[:, :1].expand_as(inputs.values),
        observed=inputs.observed[:, :1].expand_as(inputs.observed),
    )
    states = encoder()(same)  # every VD with VD 0's window
    assert (
        torch.cdist(states[0], states[0]).triu(1)[torch.ones(5, 5).triu(1).bool()].min() > 1e-2
    )  # five different states
    without = encoder(STIDConfig(vd_embedding_dim=0))(same)
    assert without.shape == (2, 5, 96) and torch.allclose(without, without[:, :1].expand_as(without))
    vd_index = torch.tensor([[3, 1, 0], [4, 2, 3]])  # dynamic padding: slot j holds VD vd_index[b, j]
    slots = attrs.evolve(
        inputs, values=gather(inputs.values, vd_index), observed=gather(inputs.observed, vd_index), vd_index=vd_index
    )
    torch.testing.assert_close(encoder()(slots), gather(encoder()(inputs), vd_index), **F64)  # 3 slots, 5 VDs


def gather(per_vd: torch.Tensor, vd_index: torch.Tensor) -> torch.Tensor:
    return torch.stack([per_vd[b, vd_index[b]] for b in range(len(vd_index))])


def test_time_of_day_slot_and_day_of_week_follow_the_files_clock(small_data):
    columns = calendar_columns(np.array([THURSDAY_17H + 300]), day_of_week=True)  # Thursday 2012-03-01, 17:05
    slot = time_of_day_slot(torch.tensor(columns["time_of_day_sin"]), torch.tensor(columns["time_of_day_cos"]), 288)
    assert slot.tolist() == [17 * 12 + 1] and columns["day_of_week"].tolist() == [3]
    start = THURSDAY_17H - 17 * 3600  # midnight
    data = attrs.evolve(
        small_data, timestamps=small_data.timestamps - small_data.timestamps[0] + start
    )  # Thu .. Sun, 5-minute steps
    prepared = prepare(data, DataConfig(day_of_week=True))
    assert prepared.spec().covariate_names == CALENDAR
    covariates = prepared.series.covariates
    slots = time_of_day_slot(covariates[:, 0], covariates[:, 1], 288)
    np.testing.assert_array_equal(slots.numpy(), data.timestamps % 86400 // 300)  # every step of the four days
    weekday = [datetime.datetime.fromtimestamp(int(t), datetime.UTC).weekday() for t in data.timestamps]
    np.testing.assert_array_equal(covariates[:, 2].numpy(), weekday)
    assert covariates[0, 2] == 3 and covariates[-1, 2] == 6  # Thursday .. Sunday


def test_padded_steps_change_nothing_and_get_no_gradient(float64):
    model = encoder()
    inputs = calendar_input()
    lengths = torch.tensor([[4, 4, 2, 1, 3], [3, 4, 4, 2, 1]])
    step_mask = torch.arange(6) >= 6 - lengths[..., None]  # [B, N, T] left padding
    real = step_mask[..., None]
    clean = attrs.evolve(inputs, values=inputs.values * real, observed=inputs.observed & real, step_mask=step_mask)
    junk = torch.randn(inputs.values.shape, generator=torch.Generator().manual_seed(1)) * 100
    values = (clean.values + junk * ~real).requires_grad_()
    state = model(attrs.evolve(clean, values=values, observed=clean.observed | ~real))
    assert torch.equal(state, model(clean))
    state.pow(2).sum().backward()
    assert values.grad[~step_mask].abs().max() == 0 and values.grad[step_mask].abs().min() > 0
    cut = attrs.evolve(
        clean,
        values=clean.values[:, :, 2:],
        observed=clean.observed[:, :, 2:],
        covariates=clean.covariates[:, 2:],
        step_mask=step_mask[:, :, 2:],
    )
    torch.testing.assert_close(model(cut), model(clean), **F64)  # padded to 4 steps or to 6: the same


def test_a_missing_calendar_covariate_is_asked_for_by_its_recipe_key(small_h5, write_recipe, tmp_path, capsys):
    recipe = write_recipe(
        short_run("stid", tmp_path / "runs", small_h5, encoder={"name": "stid"}, pooling={"name": "none"})
    )
    cases = {
        (): "encoder 'stid' embeds day of week (day_of_week_dim = 32) but the data has no day_of_week covariate; "
        "set [data] day_of_week = true (or [encoder] day_of_week_dim = 0)",
        (
            "data.day_of_week=true",
            "data.time_of_day=false",
        ): "encoder 'stid' embeds time of day (time_of_day_dim = 32) but the data "
        "has no time_of_day_sin / time_of_day_cos covariate; set [data] time_of_day = true (or [encoder] "
        "time_of_day_dim = 0)",
    }
    for overrides, message in cases.items():
        assert main([str(recipe), *(f"--set={o}" for o in overrides)]) == 2
        assert capsys.readouterr().err == f"error: {recipe}: [encoder] (stid): {message}\n"
    assert not (tmp_path / "runs").exists()
    assert encoder(STIDConfig(time_of_day_dim=0, day_of_week_dim=0), covariates=()).out_dim == 64  # no calendar needed


def test_the_shipped_recipe_trains(small_h5, tmp_path, one_thread):
    overrides = [
        f"data.source={small_h5}",
        f"run.output_dir={tmp_path}",
        "trainer.epochs=1",
        "trainer.max_batches_per_epoch=2",
    ]
    assert main(["recipes/metr_la_week_stid.toml", *(f"--set={o}" for o in overrides)]) == 0
    (run_dir,) = tmp_path.iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    e, features, vds = 128, 3, 36
    encoder_parameters = (
        (12 * 2 * features * 32 + 32) + vds * 32 + 288 * 32 + 2 * 32 + 3 * 2 * (e * e + e)
    )  # weekday_weekend: 2 days
    head_parameters = (2 * e * 64 + 64) + (64 * 12 + 12)
    assert metrics["parameters"] == encoder_parameters + head_parameters
    assert np.isfinite(metrics["test"]["mae@avg"]) and Path(run_dir / "best_model.pt").is_file()


def test_the_15_minute_recipe_trains_on_resampled_data(small_data, tmp_path, one_thread, capsys):
    quarters = write_hdf5(resample(small_data, 900, {"volume": "sum"}), tmp_path / "quarters.h5")
    overrides = [
        f"data.source={quarters}",
        "data.target=volume",
        "pooling.with_road=false",
        f"run.output_dir={tmp_path / 'runs'}",
        "trainer.epochs=1",
        "trainer.max_batches_per_epoch=2",
    ]
    assert main(["recipes/orange_d12_flow_15min.toml", *(f"--set={o}" for o in overrides)]) == 0
    printed = capsys.readouterr().out
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    e = 32 + 16 + 16 + 32 + 8
    window = 12 * 2 * 4 * 32 + 32  # speed, occupancy, volume and volume_profile
    calendar = 96 * 16 + 7 * 32 + 2 * 8 + (12 * 56 * 56 + 56)  # 96 slots a day; the 12 target steps' vectors to one
    weights = load_best(run_dir)["model"]
    encoder_parameters = sum(w.numel() for name, w in weights.items() if name.startswith("encoder."))
    assert encoder_parameters == window + 36 * 16 + calendar + 3 * 2 * (e * e + e)
    assert np.isfinite(metrics["test"]["mae@avg"]) and set(metrics["baselines"]) == {"last_value", "historical_average"}
    assert f"model vs baselines (test MAE per horizon step): {floor(metrics['test_mae_by_step'])}" in printed
