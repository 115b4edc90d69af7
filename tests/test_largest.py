"""``import-largest``: LargeST's readings, meta and road network as LargeST writes them (pandas ``to_hdf(key="t")``,
``to_csv``, ``np.save``), tiny, checked by hand: values, ids, positions, attributes, links and the resampling."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest

from bench.largest_file import write_his
from core.data import read_hdf5
from core.data.__main__ import main as data_cli
from core.data.dataset import Layout
from core.data.hdf5 import write_hdf5_stream
from core.data.largest import import_largest, read_rn_adjacency
from core.data.pandas_store import PandasFrame
from core.errors import DataError

IDS = ["1118348", "400001", "400017", "715898"]  # columns of the readings, in the meta's order
META = pd.DataFrame(
    {
        "ID": [int(vd) for vd in IDS],
        "Lat": [37.3, 32.71, 32.76, 34.05],
        "Lng": [-121.9, -117.16, -117.11, -118.24],
        "District": [4, 11, 11, 7],
        "County": ["Santa Clara", "San Diego", "San Diego", "Los Angeles"],
        "Fwy": ["US-101", "I-5", "I-805", "I-10"],
        "Lanes": [5, 4, 3, 6],
        "Type": ["Mainline"] * 4,
        "Direction": ["N", "S", "N", "E"],
        "ID2": [0, 1, 2, 3],
    }
)


@pytest.fixture
def largest(tmp_path):
    """``ca_his_raw_2019.h5``: 5-minute flow from 2018-12-31 23:00 to 2019-01-02 00:55 (NaN where missing),
    ``ca_meta.csv`` and ``ca_rn_adj.npy`` (ones on the diagonal, three links)."""
    times = pd.date_range("2018-12-31 23:00", "2019-01-02 00:55", freq="5min")
    values = np.arange(len(times) * 4, dtype=np.float64).reshape(-1, 4) % 97 + 1
    values[np.random.default_rng(0).random(values.shape) < 0.1] = np.nan
    at = {t: i for i, t in enumerate(times)}
    first = at[pd.Timestamp("2019-01-01 00:00")]
    values[first : first + 3, 1] = [10, 11, np.nan]  # mean 10.5: rounds to 10 (half to even, as pandas)
    values[first : first + 3, 2] = [np.nan, np.nan, np.nan]  # no reading in the period: missing
    values[first + 3 : first + 6, 1] = [0, 0, 1]  # mean 1/3: rounds to 0, a masked label in LargeST
    values[first + 3 : first + 6, 2] = [11, 12, 12]  # 11.67: 12
    pd.DataFrame(values, index=times, columns=IDS).to_hdf(tmp_path / "ca_his_raw_2019.h5", key="t", mode="w")
    META.to_csv(tmp_path / "ca_meta.csv", index=False)
    adjacency = np.eye(4)
    adjacency[1, 2], adjacency[2, 1], adjacency[0, 3] = 0.8, 0.3, 0.5
    np.save(tmp_path / "ca_rn_adj.npy", adjacency)
    return tmp_path


def run(folder, out="out.h5", *extra, network="sd"):
    return import_largest(
        folder / "ca_his_raw_2019.h5",
        folder / "ca_meta.csv",
        folder / out,
        folder / "ca_rn_adj.npy",
        network,
        *extra,
    )


def test_a_sub_network_resampled_as_largest_does(largest):
    layout, counts = run(largest, "sd.h5", "2019-01-01", "2019-01-02", 900)
    data = read_hdf5(largest / "sd.h5")
    assert data.vd_ids == ("400001", "400017") and data.feature_names == ("flow",)  # SD: district 11
    np.testing.assert_allclose(data.latlon, [[32.71, -117.16], [32.76, -117.11]])
    assert data.vd_attributes["fwy"] == ("I-5", "I-805") and data.vd_attributes["county"] == ("San Diego",) * 2
    assert set(data.vd_attributes) == {"district", "county", "fwy", "lanes", "type", "direction"}
    assert data.num_steps == 96 and data.interval == 900  # one day of 15 minutes, from midnight
    assert np.datetime64(int(data.timestamps[0]), "s") == np.datetime64("2019-01-01T00:00")
    assert np.datetime64(int(data.timestamps[-1]), "s") == np.datetime64("2019-01-01T23:45")
    assert data.features[0, 0, 0] == 10 and np.isnan(data.features[0, 1, 0])
    assert np.isnan(data.features[1, 0, 0]) and data.features[1, 1, 0] == 12  # a 0 mean is missing
    graph = data.road_graph  # SD's rows 1, 2 of the CA matrix: 400001 -> 400017 (0.8) and back (0.3)
    assert sorted(zip(graph.source.tolist(), graph.target.tolist(), graph.weight.tolist())) == [
        (0, 1, 0.8),
        (1, 0, 0.3),
    ]
    assert counts.readings == 192 and counts.missing[0] == np.isnan(data.features).sum() and counts.zeros[0] == 0


def test_every_period_is_pandas_resample_mean_rounded(largest):
    """The whole import against LargeST's own recipe (``resample('15T').mean().round(0)``), read a few rows at a
    time: the chunking changes nothing."""
    run(largest, "ca.h5", None, None, 900, (), network="ca")
    run(largest, "ca_chunked.h5", None, None, 900, (), 8 * 4 * 3 * 2, network="ca")  # two periods per read
    frame = pd.read_hdf(largest / "ca_his_raw_2019.h5", key="t").resample("15min").mean().round(0)
    for name in ("ca.h5", "ca_chunked.h5"):
        data = read_hdf5(largest / name)
        assert data.vd_ids == tuple(IDS)
        np.testing.assert_array_equal(data.features[:, :, 0], frame.to_numpy(np.float32))  # zeros kept: ()
        np.testing.assert_array_equal(data.timestamps, frame.index.values.astype("datetime64[s]").astype(np.int64))


def test_without_resampling_the_rows_are_as_in_the_file(largest):
    """LargeST's own ``{name}_his_{year}.h5`` (already 15 minutes, NaN filled with 0): zeros are missing unless
    ``zero_missing`` leaves them; the date range keeps [since, until)."""
    times = pd.date_range("2019-01-01", periods=8, freq="15min")
    frame = pd.DataFrame({"400001": [5, 0, 7, 8, 9, 0, 1, 2.0], "400017": [1, 2, 0, 4, 5, 6, 7, 8.0]}, index=times)
    frame.to_hdf(largest / "sd_his_2019.h5", key="t", mode="w")
    META[META.District == 11].to_csv(largest / "sd_meta.csv", index=False)
    import_largest(largest / "sd_his_2019.h5", largest / "sd_meta.csv", largest / "a.h5", since="2019-01-01T00:15")
    kept = import_largest(largest / "sd_his_2019.h5", largest / "sd_meta.csv", largest / "b.h5", zero_missing=())[1]
    masked, plain = read_hdf5(largest / "a.h5"), read_hdf5(largest / "b.h5")
    assert masked.num_steps == 7 and masked.vd_ids == ("400001", "400017") and masked.road_graph is None
    np.testing.assert_array_equal(masked.features[:3, :, 0], [[np.nan, 2], [7, np.nan], [8, 4]])
    np.testing.assert_array_equal(plain.features[:, :, 0], frame.to_numpy(np.float32))
    assert kept.zeros[0] == 3 and kept.missing[0] == 0


def test_reads_stay_within_the_budget(largest, monkeypatch):
    """Memory holds ``read_bytes`` of readings at most: every read asks for at most that many rows."""
    asked = []
    rows = PandasFrame.rows
    monkeypatch.setattr(PandasFrame, "rows", lambda self, a, b, c: asked.append(b - a) or rows(self, a, b, c))
    run(largest, "small.h5", None, None, None, ("flow",), 8 * 4 * 5, network="ca")  # 5 rows of 4 columns
    assert max(asked) == 5 and sum(asked) == 312


def test_the_command_says_what_it_kept_and_how_it_took_zeros(largest, capsys):
    files = [str(largest / name) for name in ("ca_his_raw_2019.h5", "ca_meta.csv", "ca_rn_adj.npy")]
    argv = ["import-largest", files[0], "--meta", files[1], "--adjacency", files[2], "--network", "gla"]
    assert (
        data_cli(
            [
                *argv,
                "--resample",
                "900",
                "--since",
                "2019-01-01",
                "--until",
                "2019-01-02",
                "--out",
                str(largest / "gla.h5"),
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "96 steps from 2019-01-01T00:00:00 to 2019-01-01T23:45:00 every 900 s; 1 VDs; positions: 1 of 1 VDs" in out
    assert "flow: " in out and "% missing; a 0 counts as missing (--zero-missing flow)" in out
    assert "road graph: no links" in out  # GLA's one sensor: its link to SD's 400001 is cut
    assert data_cli([*argv, "--zero-missing", "", "--out", str(largest / "gla_zeros.h5")]) == 0
    assert (
        "; a 0 counts as a reading (0 of them; --zero-missing flow would count them as missing)"
        in capsys.readouterr().out
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"network": "sd", "meta": "no_district"}, "no_district.csv: no District column to select SD by"),
        ({"meta": "unknown_id"}, r"ca_his_raw_2019.h5: 1 sensor ID\(s\) of .*unknown_id.csv have no column, e.g. 999"),
        ({"adjacency": "wrong_shape"}, r"wrong_shape.npy: shape \(3, 3\); expected \[4, 4\], the meta's sensors"),
        ({"resample_s": 420}, "--resample 420 must be a multiple of the file's 300 s step and divide a day"),
        ({"since": "2020-01-01"}, "no row from 2020-01-01 to the end"),
        ({"since": "next year"}, "'next year' is not an ISO 8601 time"),
        ({"his": "table"}, "table.h5: 't' is a pandas 'table' format store"),
    ],
)
def test_bad_input_names_the_file(largest, change, message):
    META.drop(columns="District").to_csv(largest / "no_district.csv", index=False)
    META.assign(ID=[*META.ID[:3], 999]).to_csv(largest / "unknown_id.csv", index=False)
    np.save(largest / "wrong_shape.npy", np.eye(3))
    pd.read_hdf(largest / "ca_his_raw_2019.h5").to_hdf(largest / "table.h5", key="t", mode="w", format="table")
    args = {
        "his": largest / f"{change.pop('his', 'ca_his_raw_2019')}.h5",
        "meta": largest / f"{change.pop('meta', 'ca_meta')}.csv",
        "out": largest / "x.h5",
        "adjacency": largest / f"{change.pop('adjacency', 'ca_rn_adj')}.npy",
    }
    with pytest.raises(DataError, match=message):
        import_largest(**args, **change)
    assert not (largest / "x.h5").exists()


def test_the_benchmark_file_is_the_layout_pandas_writes(tmp_path):
    """bench/largest_file.py writes CA's size a day at a time; at any size its file is, node for node and
    attribute for attribute, what pandas writes for the frame it holds."""
    path = write_his(tmp_path / "ca_his_raw_2019.h5", ["400001", "400017", "1118348"], "2019-01-01", days=2)
    frame = pd.read_hdf(path, key="t")
    assert frame.shape == (576, 3) and list(frame.columns) == ["400001", "400017", "1118348"]
    assert frame.index[1] == pd.Timestamp("2019-01-01 00:05") and 0.03 < frame.isna().mean().mean() < 0.15
    frame.to_hdf(tmp_path / "pandas.h5", key="t", mode="w")
    assert tree(path) == tree(tmp_path / "pandas.h5")


def tree(path) -> dict:
    nodes = {}
    with h5py.File(path, "r") as f:
        f.visititems(
            lambda name, node: nodes.__setitem__(
                name,
                (
                    getattr(node, "shape", None),
                    str(getattr(node, "dtype", "")),
                    getattr(node, "chunks", None),
                    {key: repr(value) for key, value in node.attrs.items()},
                ),
            )
        )
    return nodes


def test_the_road_network_is_read_a_few_rows_at_a_time(largest):
    """Cut to a sub-network, read one row at a time or all at once: the same links."""
    for keep in (np.array([1, 2]), np.array([0, 3]), np.arange(4)):
        one, all_rows = (read_rn_adjacency(largest / "ca_rn_adj.npy", 4, keep, rows) for rows in (1, 256))
        assert one.source.tolist() == all_rows.source.tolist() and one.target.tolist() == all_rows.target.tolist()
        assert one.weight.tolist() == all_rows.weight.tolist()
    graph = read_rn_adjacency(largest / "ca_rn_adj.npy", 4, np.array([0, 3]), 1)
    assert (graph.source.tolist(), graph.target.tolist(), graph.weight.tolist()) == ([0], [1], [0.5])


def test_a_streamed_file_reads_back_as_the_data_written_at_once(small_data, tmp_path):
    layout = Layout(small_data.vd_ids, small_data.feature_names, small_data.timestamps, small_data.latlon, "s.h5")
    write_hdf5_stream(layout, np.array_split(small_data.features, 7), tmp_path / "streamed.h5")
    back = read_hdf5(tmp_path / "streamed.h5")
    np.testing.assert_array_equal(back.features, small_data.features)
    np.testing.assert_array_equal(back.timestamps, small_data.timestamps)
    assert back.vd_ids == small_data.vd_ids and np.allclose(back.latlon, small_data.latlon)


def test_a_stream_that_does_not_fit_its_layout_writes_nothing(small_data, tmp_path):
    layout = Layout(small_data.vd_ids, small_data.feature_names, small_data.timestamps, source="s.h5")
    half = len(small_data.timestamps) // 2
    with pytest.raises(DataError, match=f"s.h5: {half} steps of readings for {2 * half} timestamps"):
        write_hdf5_stream(layout, [small_data.features[:half]], tmp_path / "short.h5")
    infinite = small_data.features.copy()
    infinite[half + 3, 2, 1] = np.inf
    with pytest.raises(DataError, match=f"VD {small_data.vd_ids[2]}, {small_data.feature_names[1]} at step {half + 3}"):
        write_hdf5_stream(layout, np.array_split(infinite, 2), tmp_path / "inf.h5")
    assert not list(tmp_path.iterdir())
