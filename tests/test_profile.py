"""The historical profile (training part only, its fallbacks), the baselines that read it, the seasonal-naive
baseline, and the covariates of the target steps."""

from __future__ import annotations

import attrs
import numpy as np
import pytest
import torch

from core.calendar import calendar_columns
from core.data import TrafficData
from core.data.config import DataConfig
from core.data.profile import Profile
from core.data.synthetic import generate
from core.data.windows import prepare
from core.model import build_forecaster
from core.recipe import load_recipe
from core.run import prepare_data
from core.training.baselines import Baselines
from core.training.engine import Engine
from core.training.loaders import Loaders
from tests.helpers import short_run

MONDAY = int(np.datetime64("2024-01-01T00:00", "s").astype(np.int64))  # 2024-01-01 was a Monday
HOUR = 3600


def hourly(days: int, vds: int = 2, seed: int = 0, start: int = MONDAY) -> TrafficData:
    """``days`` of hourly readings of one feature, random, about 10% missing."""
    rng = np.random.default_rng(seed)
    values = rng.normal(100.0, 20.0, (days * 24, vds, 1)).astype(np.float32)
    values[rng.random(values.shape) < 0.1] = np.nan
    timestamps = start + HOUR * np.arange(days * 24, dtype=np.int64)
    return TrafficData(values, tuple(f"vd{i}" for i in range(vds)), ("flow",), timestamps)


def by_hand(raw: np.ndarray, timestamps: np.ndarray, weekend: np.ndarray) -> np.ndarray:
    """The profile ``[2, 24, N]`` of hourly readings, cell by cell, with the fallbacks ``Profile.fit`` states."""
    raw, hours, kinds = raw.astype(np.float64), timestamps % 86400 // HOUR, weekend.astype(int)
    table = np.zeros((2, 24, raw.shape[1]))
    for n in range(raw.shape[1]):
        readings = raw[:, n][np.isfinite(raw[:, n])]
        vd_mean = readings.mean() if len(readings) else np.nanmean(raw)
        for hour in range(24):
            slot = raw[hours == hour, n]
            slot = slot[np.isfinite(slot)]
            all_days = slot.mean() if len(slot) >= 2 else vd_mean
            for kind in (0, 1):
                cell = raw[(hours == hour) & (kinds == kind), n]
                cell = cell[np.isfinite(cell)]
                table[kind, hour, n] = cell.mean() if len(cell) >= 2 else all_days
    return table


def test_the_profile_is_the_mean_per_kind_of_day_slot_and_vd_with_its_fallbacks():
    data = hourly(days=14, vds=3)
    raw = data.features[..., 0].copy()
    hours = data.timestamps % 86400 // HOUR
    weekend = (data.timestamps // 86400 + 3) % 7 >= 5
    raw[weekend & (hours == 5), 1] = np.nan
    raw[np.flatnonzero(weekend & (hours == 5))[0], 1] = 42.0  # one weekend reading at 05:00: the all-days mean
    raw[hours == 6, 1] = np.nan
    raw[np.flatnonzero(hours == 6)[3], 1] = 7.0  # one reading at 06:00 over all days: the VD's mean
    raw[:, 2] = np.nan  # never observed: the mean of all VDs
    profile = Profile.fit(raw, data.timestamps, HOUR)
    assert profile.split and profile.table.shape == (2, 24, 3)
    expected = by_hand(raw, data.timestamps, weekend)
    np.testing.assert_allclose(profile.table, expected, rtol=1e-12)
    assert profile.table[1, 5, 1] == pytest.approx(np.nanmean(raw[hours == 5, 1]))
    assert profile.table[0, 6, 1] == profile.table[1, 6, 1] == pytest.approx(np.nanmean(raw[:, 1]))
    assert profile.table[0, 0, 2] == pytest.approx(np.nanmean(raw))
    np.testing.assert_array_equal(profile.at(data.timestamps), expected[weekend.astype(int), hours])


def test_weekdays_and_weekends_are_apart_only_with_two_days_of_each_and_holidays_count_as_weekends():
    data = hourly(days=7)
    raw, timestamps = data.features[..., 0], data.timestamps
    assert not Profile.fit(raw[: 6 * 24], timestamps[: 6 * 24], HOUR).split  # Monday .. Saturday: one weekend day
    six_days = Profile.fit(raw[: 6 * 24], timestamps[: 6 * 24], HOUR)
    hours = timestamps[: 6 * 24] % 86400 // HOUR
    for hour in (0, 13):  # one kind: every day's mean
        np.testing.assert_allclose(
            six_days.table[0, hour], np.nanmean(raw[: 6 * 24][hours == hour].astype(np.float64), 0), rtol=1e-12
        )
    assert Profile.fit(raw, timestamps, HOUR).split  # Monday .. Sunday

    mlk = int(np.datetime64("2024-01-15T00:00", "s").astype(np.int64))  # Martin Luther King Jr. Day, a Monday
    week = hourly(days=14, start=mlk - 7 * 86400)
    holiday = (week.timestamps >= mlk) & (week.timestamps < mlk + 86400)
    with_holidays = Profile.fit(week.features[..., 0], week.timestamps, HOUR, holidays="US")
    weekend = ((week.timestamps // 86400 + 3) % 7 >= 5) | holiday
    np.testing.assert_allclose(
        with_holidays.table, by_hand(week.features[..., 0], week.timestamps, weekend), rtol=1e-12
    )
    assert not np.allclose(with_holidays.table, Profile.fit(week.features[..., 0], week.timestamps, HOUR).table)


def test_the_profile_comes_from_the_training_part_only():
    data = generate(seed=0, days=4)
    prepared = prepare(data, DataConfig(target="volume"))
    val_start = prepared.boundaries[0]
    features = data.features.copy()
    features[val_start:] = np.random.default_rng(1).normal(50.0, 30.0, features[val_start:].shape)
    features[val_start + 5 :: 7] = np.nan
    changed = prepare(attrs.evolve(data, features=features), DataConfig(target="volume"))
    np.testing.assert_array_equal(changed.profile.table, prepared.profile.table)
    assert torch.equal(changed.series.profile, prepared.series.profile)  # the table
    test_starts = prepared.splits["test"].starts
    for built in (prepared, changed):
        assert torch.equal(
            Baselines(built).predict(test_starts)["historical_average"],
            Baselines(prepared).predict(test_starts)["historical_average"],
        )
    assert not torch.equal(changed.series.cut(test_starts).target, prepared.series.cut(test_starts).target)


def test_windows_carry_the_profile_of_their_target_steps_and_the_baseline_is_the_profile():
    data = generate(seed=0, days=4)
    prepared = prepare(data, DataConfig(target="volume"))
    starts = prepared.splits["test"].starts[[0, 50, 200]]
    windows = prepared.series.cut(starts)
    future = starts[:, None] + 12 + torch.arange(12)
    profile = prepared.profile.at(data.timestamps)[future.numpy()].astype(np.float32)  # [B, H, N] the data's units
    np.testing.assert_array_equal(windows.target_profile.numpy(), profile)
    historical = Baselines(prepared).predict(starts)["historical_average"]
    np.testing.assert_array_equal(historical.numpy(), profile)  # one computation


def test_profile_input_adds_the_profile_of_the_input_steps_as_a_feature():
    data = generate(seed=0, days=4)
    prepared = prepare(data, DataConfig(target="volume", features=("speed", "volume"), profile_input=True))
    assert prepared.spec().feature_names == ("speed", "volume", "volume_profile")
    starts = prepared.splits["val"].starts[:4]
    windows = prepared.series.cut(starts)
    past = starts[:, None] + torch.arange(12)
    assert windows.values.shape[-1] == 3 and windows.observed[..., 2].all()
    (mean,), (std,) = prepared.normaliser.select(("volume",))
    profile = prepared.profile.at(data.timestamps)[past.numpy()].astype(np.float32)
    torch.testing.assert_close(windows.values[..., 2], (torch.from_numpy(profile) - mean) / std)
    plain = prepare(data, DataConfig(target="volume", features=("speed", "volume"))).series.cut(starts)
    assert torch.equal(windows.values[..., :2], plain.values) and torch.equal(windows.target, plain.target)


def test_seasonal_naive_is_the_reading_a_week_earlier_else_the_profile():
    data = generate(seed=0, days=15)
    week = 7 * 288
    prepared = prepare(data, DataConfig(target="volume"))
    baselines = Baselines(prepared)
    assert baselines.seasonal and set(baselines.predict(torch.tensor([0]))) == set(Baselines.NAMES) == set(
        baselines.names
    )
    raw = data.features[..., 2]
    starts = prepared.splits["test"].starts
    future = (starts[:, None] + 12 + torch.arange(12)).numpy()
    forecast = baselines.predict(starts)["seasonal_naive"].numpy()
    week_ago = raw[future - week]
    profile = prepared.profile.at(data.timestamps)[future]
    assert np.isnan(week_ago).any()  # the synthetic network's gaps: some readings a week earlier are missing
    np.testing.assert_array_equal(forecast, np.where(np.isnan(week_ago), profile, week_ago).astype(np.float32))
    early = baselines.predict(torch.tensor([0]))["seasonal_naive"]  # the first week has no week earlier: the profile
    np.testing.assert_array_equal(early.numpy(), prepared.profile.at(data.timestamps[12:24])[None].astype(np.float32))

    short = Baselines(prepare(generate(seed=0, days=13), DataConfig(target="volume")))
    assert not short.seasonal and "seasonal_naive" not in short.predict(torch.tensor([0]))


def test_the_covariates_of_the_target_steps_are_their_calendar_across_a_day_and_a_week_boundary():
    days = 21
    saturday = MONDAY - 2 * 86400
    timestamps = saturday + 900 * np.arange(days * 96, dtype=np.int64)  # 15-minute steps from a Saturday
    data = TrafficData(
        np.random.default_rng(0).normal(size=(len(timestamps), 2, 1)).astype(np.float32),
        ("a", "b"),
        ("flow",),
        timestamps,
    )
    cfg = DataConfig(target="flow", weekend=True, day_of_week=True, holidays="US")
    prepared = prepare(data, cfg)
    monday_midnight = 2 * 96  # the step at Monday 2024-01-01 00:00: the week starts, on a public holiday
    starts = torch.tensor([monday_midnight - 18, monday_midnight - 12, 7 * 96 + monday_midnight - 15])
    windows = prepared.series.cut(starts)
    for b, start in enumerate(starts.tolist()):
        target_steps = timestamps[start + 12 : start + 24]
        columns = calendar_columns(target_steps, weekend=True, day_of_week=True, holidays="US")
        expected = np.stack([columns[name] for name in prepared.spec().covariate_names], -1)
        np.testing.assert_array_equal(windows.future_covariates[b].numpy(), expected.astype(np.float32))
        past = calendar_columns(timestamps[start : start + 12], weekend=True, day_of_week=True, holidays="US")
        np.testing.assert_array_equal(windows.covariates[b, :, 3].numpy(), past["day_of_week"].astype(np.float32))
    assert windows.future_covariates[0, :, 3].tolist() == [6.0] * 6 + [0.0] * 6  # Sunday, then Monday
    assert windows.future_covariates[0, :, 4].tolist() == [0.0] * 6 + [1.0] * 6  # New Year's Day
    assert windows.future_covariates[0, :, 2].tolist() == [1.0] * 6 + [0.0] * 6  # the weekend ends
    assert windows.future_covariates[1, :, 4].tolist() == [1.0] * 12
    assert windows.future_covariates[2, :, 3].tolist() == [6.0] * 3 + [0.0] * 9  # a week later, no holiday
    assert windows.future_covariates[2, :, 4].tolist() == [0.0] * 12


@pytest.mark.parametrize("collator", ["centralized", "distributed", "dynamic_padding"])
def test_residual_mode_with_a_zeroed_model_is_exactly_the_historical_average(collator, tmp_path):
    """``[model] residual = "profile"``: the head forecasts the deviation from the profile, so with every weight at
    zero the test metrics and forecasts are the historical-average baseline's, to the bit; the loss is the head's
    against the target less the profile."""
    recipe = tmp_path / "residual.toml"
    tables = {"model": {"residual": "profile"}, "collator": {"name": collator}, "data": {"target": "volume"}}
    recipe.write_text(short_run("residual", tmp_path / "runs", "default", **tables))
    recipe, registry = load_recipe(recipe)
    prepared = prepare_data(recipe)
    model, collate = build_forecaster(recipe, registry, prepared.spec(), "test")
    with torch.no_grad():
        for weight in model.parameters():
            weight.zero_()
    engine = Engine(model, recipe.trainer, prepared.normaliser, "volume")
    loaders = Loaders(prepared, collate, recipe.trainer, 0, engine.device)
    baselines = Baselines(prepared)
    result, _ = engine.evaluate(loaders.evaluate("test"), baselines)
    assert result["model"] == result["historical_average"]
    for batch, forecast in engine.forecasts(loaders.evaluate("test")):
        assert torch.equal(forecast.point, baselines.predict(batch.start)["historical_average"])
        output = engine.run(batch)[1]
        (mean,), (std,) = prepared.normaliser.select(("volume",))
        deviation = batch.target - (batch.target_profile - mean) / std
        torch.testing.assert_close(engine.loss(output, batch), deviation.abs(), rtol=1e-6, atol=1e-6)
