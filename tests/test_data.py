from __future__ import annotations

import datetime

import attrs
import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from pyproj import Geod

from core.calendar import calendar_columns
from core.data import TrafficData, read_hdf5, write_hdf5
from core.data.__main__ import main as data_cli
from core.data.config import DataConfig
from core.data.geo import project_to_metres
from core.data.hdf5 import describe_hdf5
from core.data.importers import import_pandas_h5, import_per_detector, import_wide_csv, read_vd_attributes
from core.data.resample import parse_how, resample
from core.data.synthetic import generate
from core.data.windows import prepare
from core.errors import DataError
from tests.conftest import SHARED_DATA

METR = SHARED_DATA / "metr-la-week"
PEMS = SHARED_DATA / "pems-bay-16"
needs_metr = pytest.mark.skipif(not METR.is_dir(), reason="../shared/data/metr-la-week is absent")
needs_pems = pytest.mark.skipif(not PEMS.is_dir(), reason="../shared/data/pems-bay-16 is absent")


def test_hdf5_round_trip(small_data, tmp_path):
    path = write_hdf5(small_data, tmp_path / "x.h5")
    back = read_hdf5(path)
    np.testing.assert_array_equal(back.features, small_data.features)  # NaN positions included
    assert back.vd_ids == small_data.vd_ids and back.feature_names == small_data.feature_names
    np.testing.assert_array_equal(back.timestamps, small_data.timestamps)
    np.testing.assert_allclose(back.latlon, small_data.latlon)
    assert back.vd_attributes == small_data.vd_attributes and back.vd_attributes["road"][0] == "N1"
    with h5py.File(path) as f:  # the schema as the README documents it
        assert f["data/features"].dtype == np.float32
        assert f["metadata/timestamps"][0].decode() == "2024-01-01T00:00:00"
        assert dict(f["metadata/vd_info"][small_data.vd_ids[0]].attrs).keys() == {
            "position_lat",
            "position_lon",
            "road",
            "direction",
        }


@pytest.mark.parametrize(
    ("missing", "message"),
    [("data/features", "missing dataset 'data/features'"), ("metadata/vdids", "missing dataset 'metadata/vdids'")],
)
def test_hdf5_missing_dataset_is_named(small_h5, tmp_path, missing, message):
    broken = tmp_path / "broken.h5"
    broken.write_bytes(small_h5.read_bytes())
    with h5py.File(broken, "a") as f:
        del f[missing]
    with pytest.raises(DataError, match=f"{broken}: {message}"):
        read_hdf5(broken)


def test_missing_and_non_hdf5_files(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        read_hdf5(tmp_path / "none.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(DataError, match="not a readable HDF5 file"):
        read_hdf5(tmp_path / "text.h5")


def test_vds_without_positions_read_as_nan(small_h5, tmp_path):
    path = tmp_path / "nopos.h5"
    path.write_bytes(small_h5.read_bytes())
    with h5py.File(path, "a") as f:
        del f["metadata/vd_info/VD-N1-03"]
    data = read_hdf5(path)
    assert np.isnan(data.latlon[3]).all() and np.isfinite(np.delete(data.latlon, 3, 0)).all()


def test_a_file_offers_positions_if_any_vd_has_one(small_h5, small_data, tmp_path):
    """Only the last VD located (and one with a NaN longitude, which counts as none): positions are offered to
    the recipe's checks, the others read as NaN; without any, none are."""
    path = tmp_path / "one.h5"
    path.write_bytes(small_h5.read_bytes())
    *others, last = small_data.vd_ids
    with h5py.File(path, "a") as f:
        for vd in others:
            del f[f"metadata/vd_info/{vd}"].attrs["position_lat"]
        f[f"metadata/vd_info/{others[0]}"].attrs["position_lat"] = 25.0
        f[f"metadata/vd_info/{others[0]}"].attrs["position_lon"] = np.nan
    assert "positions" in describe_hdf5(path)
    latlon = read_hdf5(path).latlon
    np.testing.assert_array_equal(latlon[-1], small_data.latlon[-1])
    assert np.isnan(latlon[:-1]).all()
    with h5py.File(path, "a") as f:
        del f[f"metadata/vd_info/{last}"].attrs["position_lon"]
    assert "positions" not in describe_hdf5(path) and read_hdf5(path).latlon is None


def test_data_checks_name_the_problem(small_data):
    f, ids, names, ts = small_data.features, small_data.vd_ids, small_data.feature_names, small_data.timestamps
    with pytest.raises(DataError, match="duplicate VD id"):
        TrafficData(f, (ids[0],) + ids[1:-1] + (ids[0],), names, ts)
    with pytest.raises(DataError, match="timestamps are not increasing at step 5"):
        TrafficData(f, ids, names, np.concatenate([ts[:5], ts[3:4], ts[6:]]))


@pytest.mark.parametrize("lat", [0.0, 25.0, 37.4, 60.0])
def test_projection_distances_are_true_metres(lat):
    rng = np.random.default_rng(1)
    latlon = np.stack([lat + rng.uniform(-0.2, 0.2, 50), -120 + rng.uniform(-0.3, 0.3, 50)], 1)
    xy = project_to_metres(latlon)
    i, j = np.triu_indices(50, 1)
    _, _, geod = Geod(ellps="WGS84").inv(latlon[i, 1], latlon[i, 0], latlon[j, 1], latlon[j, 0])
    planar = np.linalg.norm(xy[i] - xy[j], axis=1)
    assert np.max(np.abs(planar / geod - 1)) < 0.005


def test_windows_are_the_series_cut_by_index(small_data):
    prepared = prepare(small_data, DataConfig(history=12, horizon=12))
    raw = small_data.features
    mean, std = prepared.normaliser.mean, prepared.normaliser.std
    test = prepared.splits["test"]
    windows = test.__getitems__([0, 5, len(test) - 1])
    for b, i in enumerate([0, 5, len(test) - 1]):
        s = int(test.starts[i])
        past = raw[s : s + 12]
        expected = np.where(np.isnan(past), 0.0, (past - mean) / std)
        np.testing.assert_allclose(windows.values[b].numpy(), expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_array_equal(windows.observed[b].numpy(), ~np.isnan(past))
        future = raw[s + 12 : s + 24, :, 0]
        np.testing.assert_array_equal(windows.target_mask[b].numpy(), ~np.isnan(future))
        np.testing.assert_allclose(windows.target[b].numpy(), np.nan_to_num((future - mean[0]) / std[0]), atol=1e-5)
    assert windows.values.shape == (3, 12, 36, 3) and windows.covariates.shape == (3, 12, 2)


def test_calendar_covariates_follow_the_files_clock(small_data):
    days = np.datetime64("2012-03-01T17:00") + np.arange(7) * np.timedelta64(1, "D")  # Thursday .. Wednesday
    columns = calendar_columns(
        days.astype("datetime64[s]").astype(np.int64), time_of_day=True, weekend=True, day_of_week=True
    )
    assert list(columns) == ["time_of_day_sin", "time_of_day_cos", "weekend", "day_of_week"]
    np.testing.assert_array_equal(columns["weekend"], [0, 0, 1, 1, 0, 0, 0])  # Saturday and Sunday
    np.testing.assert_array_equal(
        columns["day_of_week"], [3, 4, 5, 6, 0, 1, 2]
    )  # 2012-03-01 was a Thursday (Monday = 0)
    np.testing.assert_allclose(columns["time_of_day_sin"][0], np.sin(2 * np.pi * 17 / 24), atol=1e-6)
    np.testing.assert_allclose(columns["time_of_day_cos"][0], np.cos(2 * np.pi * 17 / 24), atol=1e-6)
    assert calendar_columns(days.astype(np.int64), time_of_day=False) == {}

    friday = int(np.datetime64("2012-03-02T00:00", "s").astype(np.int64))
    data = attrs.evolve(small_data, timestamps=small_data.timestamps - small_data.timestamps[0] + friday)  # Fri .. Mon
    prepared = prepare(data, DataConfig(weekend=True))
    weekday = np.array([datetime.datetime.fromtimestamp(int(t), datetime.UTC).weekday() for t in data.timestamps])
    np.testing.assert_array_equal(prepared.series.covariates[:, 2].numpy(), weekday >= 5)
    assert 0 < (weekday >= 5).mean() < 1 and prepared.spec().num_covariates == 3
    assert prepared.spec().covariate_names == ("time_of_day_sin", "time_of_day_cos", "weekend")
    assert prepare(data, DataConfig(time_of_day=False)).series.covariates.shape == (data.num_steps, 0)
    window = prepared.splits["train"].__getitems__([7])
    np.testing.assert_array_equal(window.covariates[0].numpy(), prepared.series.covariates[7:19].numpy())


def test_holidays_are_the_regions_public_holidays_on_the_files_local_date(small_data):
    # 2022-01-17 was Martin Luther King Jr. Day (federal); 2022-03-31 Cesar Chavez Day (California only)
    steps = np.datetime64("2022-01-16T23:45") + np.arange(12) * np.timedelta64(15, "m")  # Sunday 23:45 .. Monday 02:30
    columns = calendar_columns(steps.astype("datetime64[s]").astype(np.int64), time_of_day=False, holidays="US-CA")
    assert list(columns) == ["holiday"]
    np.testing.assert_array_equal(columns["holiday"], [0] + [1] * 11)  # from midnight on, the local date is the 17th
    chavez = np.array(["2022-03-30T12:00", "2022-03-31T00:00", "2022-03-31T23:55", "2022-04-01T00:00"], "datetime64[s]")
    np.testing.assert_array_equal(
        calendar_columns(chavez.astype(np.int64), False, holidays="US-CA")["holiday"], [0, 1, 1, 0]
    )
    np.testing.assert_array_equal(
        calendar_columns(chavez.astype(np.int64), False, holidays="US")["holiday"], [0, 0, 0, 0]
    )

    christmas = int(np.datetime64("2023-12-25T00:00", "s").astype(np.int64))  # the synthetic network starts 2024-01-01
    data = attrs.evolve(small_data, timestamps=small_data.timestamps - small_data.timestamps[0] + christmas)
    prepared = prepare(data, DataConfig(holidays="US", day_of_week=True))
    assert prepared.spec().covariate_names == ("time_of_day_sin", "time_of_day_cos", "day_of_week", "holiday")
    on_holiday = prepared.series.covariates[:, 3].numpy()
    np.testing.assert_array_equal(on_holiday, (data.timestamps - christmas) // 86400 == 0)  # the 25th, not the 26th
    window = prepared.series.cut(torch.tensor([272]))  # inputs on the 25th, targets across midnight
    np.testing.assert_array_equal(window.future_covariates[0, :, 3].numpy(), on_holiday[284:296])
    assert window.future_covariates[0, :, 3].tolist() == [1.0] * 4 + [0.0] * 8


def test_splits_are_chronological_and_normaliser_uses_train_only(small_data):
    prepared = prepare(small_data, DataConfig(split=(0.7, 0.1, 0.2)))
    steps = small_data.num_steps
    val_start, test_start = prepared.boundaries
    assert (val_start, test_start) == (round(0.7 * steps), round(0.8 * steps))
    for part, (lo, hi) in {
        "train": (0, val_start),
        "val": (val_start, test_start),
        "test": (test_start, steps),
    }.items():
        starts = prepared.splits[part].starts
        assert starts.min() == lo and starts.max() + 24 == hi  # every window lies inside its part
    np.testing.assert_allclose(prepared.normaliser.mean, np.nanmean(small_data.features[:val_start], (0, 1)), rtol=1e-5)
    # the windows share one normalised series: no copy per split
    assert prepared.splits["train"].series is prepared.splits["test"].series


def test_too_short_and_all_nan_target_are_errors(small_data):
    short = TrafficData(
        small_data.features[:100],
        small_data.vd_ids,
        small_data.feature_names,
        small_data.timestamps[:100],
        source="short.h5",
    )
    with pytest.raises(
        DataError,
        match="short.h5: fewer time steps than one window: the val part has 10 of 100 steps, a window needs 24",
    ):
        prepare(short)
    features = small_data.features.copy()
    features[..., 0] = np.nan
    blank = TrafficData(features, small_data.vd_ids, small_data.feature_names, small_data.timestamps, source="blank.h5")
    with pytest.raises(DataError, match="blank.h5: feature.*speed are NaN everywhere in the training part"):
        prepare(blank)
    with pytest.raises(
        DataError, match="data.target 'flow' is not a feature of the data; features: speed, occupancy, volume"
    ):
        prepare(small_data, DataConfig(target="flow"))


def test_synthetic_is_deterministic_and_congestion_travels_upstream():
    a, b = generate(seed=3, days=7), generate(seed=3, days=7)
    np.testing.assert_array_equal(a.features, b.features)
    assert not np.array_equal(a.features, generate(seed=4, days=7).features)
    speed = np.nan_to_num(a.features[..., 0], nan=np.nanmean(a.features[..., 0]))
    change = np.diff(speed, axis=0)  # step changes, free of the shared daily profile's level
    up, down = change[:, 4], change[:, 5]  # VD-N1-04 is just upstream of VD-N1-05
    lags = list(range(-6, 7))
    corr = [np.corrcoef(up[6:-6], np.roll(down, lag)[6:-6])[0, 1] for lag in lags]
    assert lags[int(np.argmax(corr))] == 3  # the queue reaches the upstream VD 3 steps (15 min) later


@needs_metr
def test_import_wide_csv_metr_la_week(tmp_path):
    data = import_wide_csv(
        METR / "los_speed.csv", METR / "graph_sensor_locations.csv", start="2012-03-01T00:00", feature="speed"
    )
    assert data.features.shape == (2016, 207, 1)
    assert data.vd_ids[:2] == ("773869", "767541")
    assert np.datetime64(int(data.timestamps[-1]), "s") == np.datetime64("2012-03-07T23:55")
    np.testing.assert_allclose(data.latlon[0], (34.15497, -118.31829))
    assert np.nanmin(data.features) >= 1.0 and np.nanmax(data.features) <= 70.0
    back = read_hdf5(write_hdf5(data, tmp_path / "metr.h5"))
    np.testing.assert_array_equal(back.features, data.features)


@needs_pems
def test_import_per_detector_pems_bay_16():
    files = sorted(PEMS.glob("speed-*.csv"))
    data = import_per_detector(files, PEMS / "graph_sensor_locations_bay.csv")
    assert len(data.vd_ids) == 16 and data.vd_ids[0] == "400001"
    assert data.interval == 300 and data.num_steps == 43488  # Jan 1 to May 31 on a regular grid
    dst_gap = np.isnan(data.features[:, 0, 0]).sum()
    assert dst_gap >= 12  # the hour lost at the March DST change (and zeros) are missing
    np.testing.assert_allclose(data.latlon[0], (37.364085, -121.901149))


def test_import_errors_name_the_culprit(tmp_path):
    values, locations = tmp_path / "v.csv", tmp_path / "loc.csv"
    locations.write_text("sensor_id,latitude,longitude\n1,34.0,-118.0\n2,34.1,-118.1\n")
    values.write_text("1,2\n50,60\n55\n")
    with pytest.raises(DataError, match="v.csv: line 3 has 1 values, the header has 2 detector ids"):
        import_wide_csv(values, locations, start="2012-03-01T00:00", feature="speed")
    values.write_text("1,3\n50,60\n")
    with pytest.raises(DataError, match="loc.csv: no location for 1 sensor id.*: 3"):
        import_wide_csv(values, locations, start="2012-03-01T00:00", feature="speed")


def test_import_pandas_h5_layout(tmp_path):
    """metr-la.h5 as pandas writes it (fixed format, key df); the feature is named, zeros of speed are missing."""
    path, locations = tmp_path / "metr-la.h5", tmp_path / "loc.csv"
    locations.write_text("index,sensor_id,latitude,longitude\n0,773869,34.15,-118.31\n1,767541,34.11,-118.23\n")
    times = pd.date_range("2012-03-01", periods=4, freq="5min")
    values = [[64.4, 67.6], [0.0, 68.1], [61.2, 67.0], [62.0, 0.0]]
    pd.DataFrame(values, index=times, columns=["773869", "767541"]).to_hdf(path, key="df", mode="w")
    data = import_pandas_h5(path, locations, feature="speed")
    assert data.vd_ids == ("773869", "767541") and data.interval == 300 and data.feature_names == ("speed",)
    assert np.datetime64(int(data.timestamps[1]), "s") == np.datetime64("2012-03-01T00:05")
    assert np.isnan(data.features[1, 0, 0]) and np.isnan(data.features[3, 1, 0])  # zeros are missing
    assert data.features[0, 0, 0] == pytest.approx(64.4) and data.features[2, 1, 0] == pytest.approx(67.0)
    flow = import_pandas_h5(path, locations, feature="flow")  # a 0 flow is a reading
    assert flow.features[1, 0, 0] == 0.0 and np.isnan(flow.features).sum() == 0


def test_import_pandas_h5_reads_older_pandas_index_and_integer_ids(tmp_path):
    """pandas < 2 wrote the index as nanoseconds of kind "datetime64" (DCRNN's files); integer column names are
    int64; a frame of several dtypes has several blocks."""
    path = tmp_path / "old.h5"
    frame = pd.DataFrame(
        {773869: [64.4, 0.0, 61.2], 767541: [67, 68, 67]}, index=pd.date_range("2012-03-01", periods=3, freq="5min")
    )
    frame.to_hdf(path, key="df", mode="w")
    with h5py.File(path, "r+") as f:
        axis = f["df/axis1"]
        ns = frame.index.values.astype("datetime64[ns]").astype(np.int64)
        attrs = dict(axis.attrs)
        del f["df/axis1"]
        f["df/axis1"] = ns
        for key, value in attrs.items():
            f["df/axis1"].attrs[key] = value
        f["df/axis1"].attrs["kind"] = np.bytes_(b"datetime64")
        assert f["df"].attrs["nblocks"] == 2
    data = import_pandas_h5(path, None, feature="speed")
    assert data.vd_ids == ("773869", "767541")
    assert np.datetime64(int(data.timestamps[2]), "s") == np.datetime64("2012-03-01T00:10")
    np.testing.assert_allclose(data.features[:, :, 0], [[64.4, 67], [np.nan, 68], [61.2, 67]], rtol=1e-6)


def test_a_flow_file_is_imported_as_flow_or_refused(tmp_path, capsys):
    """The import never guesses the feature, and says which zeros it took as missing (issue: a flow file
    imported as speed came out 50% missing, silently)."""
    flow = tmp_path / "flow.csv"
    flow.write_text("a,b\n0,12\n7,0\n0,9\n4,0\n")
    argv = ["import-wide", str(flow), "--start", "2012-03-01T00:00", "--out", str(tmp_path / "flow.h5")]
    assert data_cli(argv) == 2  # bad input
    assert capsys.readouterr().err.strip() == (
        f"error: {flow}: the file does not say what its readings are: give --feature (e.g. --feature speed, "
        "--feature flow)"
    )
    assert not (tmp_path / "flow.h5").exists()
    assert data_cli([*argv, "--feature", "flow"]) == 0
    assert (
        "  flow: 0.0% missing; a 0 counts as a reading (4 of them; --zero-missing flow would count them as "
        "missing)" in capsys.readouterr().out
    )
    assert read_hdf5(tmp_path / "flow.h5").features[:, :, 0].tolist() == [[0, 12], [7, 0], [0, 9], [4, 0]]
    assert data_cli([*argv, "--feature", "speed"]) == 0  # a speed file: its zeros are no reading
    assert "  speed: 50.0% missing; a 0 counts as missing (--zero-missing speed)" in capsys.readouterr().out


def test_per_detector_files_name_their_feature_in_the_header(tmp_path):
    for vd, header in (("1", "Stamp,Speed(m/h)"), ("2", "Stamp,Speed (m/h)")):
        (tmp_path / f"d{vd}.csv").write_text(f"{header}\n2012-03-01T00:00,60\n2012-03-01T00:05,0\n")
    files = sorted(tmp_path.glob("d*.csv"))
    speed = import_per_detector(files, None)
    assert speed.feature_names == ("speed",) and np.isnan(speed.features[1]).all()
    flow = import_per_detector(files, None, feature="flow")  # --feature names it when the header says otherwise
    assert flow.feature_names == ("flow",) and (flow.features[1] == 0).all()


def test_vd_attributes_csv(tmp_path):
    path = tmp_path / "attrs.csv"
    path.write_text("sensor_id,road,direction\nb,I-5,N\na,I-5,S\n")
    assert read_vd_attributes(path, ["a", "b", "c"]) == {"road": ("I-5", "I-5", ""), "direction": ("S", "N", "")}
    path.write_text("sensor_id,direction\nzz,N\n")
    with pytest.raises(DataError, match=r"attrs.csv: 1 sensor id\(s\) are not in the data: zz"):
        read_vd_attributes(path, ["a"])


def test_a_stray_time_stamp_is_refused_before_a_grid_of_millions_of_steps(tmp_path):
    rows = "".join(f"2012-03-01T00:{5 * k:02d}:00,{50 + k}\n" for k in range(10))
    (tmp_path / "speed-1.csv").write_text("Stamp,Speed\n" + rows)
    (tmp_path / "speed-2.csv").write_text("Stamp,Speed\n1970-01-01T00:00:00,40\n" + rows)
    with pytest.raises(DataError, match=r"detector 2: time stamps from 1970-01-01T00:00:00 to 2012-03-01T00:45:00"):
        import_per_detector(sorted(tmp_path.glob("speed-*.csv")), None)


def test_resample_sums_flow_and_averages_the_rest_over_the_readings_it_has(small_data, tmp_path, capsys):
    start = int(np.datetime64("2024-01-01T00:05", "s").astype(np.int64))  # mid-way into the first 15 minutes
    flow = np.array([[10.0, 1.0], [20.0, np.nan], [30.0, 3.0], [40.0, np.nan], [np.nan, np.nan], [60.0, np.nan]])
    speed = np.array([[50.0, 60.0], [52.0, 62.0], [np.nan, 64.0], [56.0, 66.0], [58.0, 68.0], [60.0, 70.0]])
    data = TrafficData(
        np.stack([flow, speed], -1).astype(np.float32),
        ("a", "b"),
        ("flow", "speed"),
        start + 300 * np.arange(6, dtype=np.int64),
        latlon=np.array([[33.7, -117.9], [33.8, -117.8]]),
    )
    quarters = resample(data, 900, {"flow": "sum"})
    assert quarters.interval == 900
    np.testing.assert_array_equal(quarters.timestamps, start - 300 + 900 * np.arange(3))  # 00:00, 00:15, 00:30
    expected_flow = [  # the mean of the readings it has, times the three readings a 15-minute step holds
        [(10 + 20) / 2 * 3, 1.0 * 3],  # 00:05, 00:10 (00:00 is before the file)
        [(30 + 40) / 2 * 3, 3.0 * 3],  # 00:15 .. 00:25 (a has no flow at 00:25)
        [60.0 * 3, np.nan],  # 00:30: b has no flow at all
    ]
    np.testing.assert_allclose(quarters.features[..., 0], expected_flow, rtol=1e-6)
    np.testing.assert_allclose(quarters.features[..., 1], [[51, 61], [57, 66], [60, 70]], rtol=1e-6)
    np.testing.assert_array_equal(quarters.latlon, data.latlon)
    full = resample(small_data, 900, {"volume": "sum"})  # no gap within a step: the plain sum and mean
    features = small_data.features.reshape(-1, 3, *small_data.features.shape[1:])
    complete = np.isfinite(features).all(1)
    np.testing.assert_allclose(
        full.features[..., 2][complete[..., 2]], features[..., 2].sum(1)[complete[..., 2]], rtol=1e-5
    )
    np.testing.assert_allclose(
        full.features[..., 0][complete[..., 0]], features[..., 0].mean(1)[complete[..., 0]], rtol=1e-5
    )

    with pytest.raises(DataError, match="--interval 1000 s is not a multiple of the data's step \\(300 s\\)"):
        resample(data, 1000)
    with pytest.raises(
        DataError, match="--how names feature\\(s\\) volume the data does not have; features: flow, speed"
    ):
        resample(data, 900, {"volume": "sum"})
    with pytest.raises(DataError, match="--how flow=max: unknown aggregation 'max'; use one of: mean, sum"):
        resample(data, 900, parse_how("flow=max"))

    source = write_hdf5(data, tmp_path / "five.h5")
    out = tmp_path / "quarters.h5"
    assert (
        data_cli(["resample", str(source), "--interval", "900", "--how", "flow=sum,speed=mean", "--out", str(out)]) == 0
    )
    assert "3 steps from 2024-01-01T00:00:00 to 2024-01-01T00:30:00 every 900 s" in capsys.readouterr().out
    np.testing.assert_array_equal(read_hdf5(out).features, quarters.features)
