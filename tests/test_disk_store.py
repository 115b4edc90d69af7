"""Readings left on disk (``[data] store = "disk"``): the same windows, baselines, training and forecasts as in
memory, from a file laid out for it; a file that is not is refused with the command that lays it out."""

from __future__ import annotations

import json
import pickle

import attrs
import h5py
import numpy as np
import pytest
import torch

from core.data import read_hdf5, write_hdf5
from core.data.__main__ import main as data_main
from core.data.config import DataConfig
from core.data.disk import DiskReadings
from core.data.windows import SPLITS, prepare
from core.errors import DataError
from core.experiments.predict import main as predict_main
from core.run import main as run_main
from core.training.baselines import Baselines
from tests.helpers import short_run


@pytest.fixture(scope="module")
def contiguous_h5(small_data, tmp_path_factory):
    return write_hdf5(small_data, tmp_path_factory.mktemp("disk") / "contiguous.h5", contiguous=True)


def test_readings_on_disk_read_as_in_memory(small_data, contiguous_h5):
    readings = read_hdf5(contiguous_h5, store="disk").features
    assert isinstance(readings, DiskReadings) and readings.shape == small_data.features.shape
    np.testing.assert_array_equal(readings[5:40], small_data.features[5:40])
    steps = np.array([[7, 3, 3], [len(readings) - 1, 0, 8]])  # repeated, unordered, any shape
    np.testing.assert_array_equal(readings[steps], small_data.features[steps])
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(readings))[steps], small_data.features[steps])
    with pytest.raises(IndexError, match=rf"steps must be integers in \[0, {len(readings)}\)"):
        readings[np.array([len(readings)])]


def test_windows_and_baselines_from_disk_equal_those_from_memory(contiguous_h5):
    cfg = DataConfig(target="volume", profile_input=True, min_history=3, gap_steps=4)
    memory, disk = (prepare(read_hdf5(contiguous_h5, store), cfg) for store in ("memory", "disk"))
    assert isinstance(disk.series.readings, DiskReadings) and isinstance(memory.series.readings, np.ndarray)
    np.testing.assert_array_equal(disk.normaliser.mean, memory.normaliser.mean)
    np.testing.assert_array_equal(disk.profile.table, memory.profile.table)
    for part in SPLITS:
        assert torch.equal(disk.splits[part].starts, memory.splits[part].starts)
        every = list(range(len(memory.splits[part])))
        on_disk, in_memory = disk.splits[part].__getitems__(every), memory.splits[part].__getitems__(every)
        for name, value in attrs.asdict(in_memory, recurse=False).items():
            assert torch.equal(getattr(on_disk, name), value), (part, name)
    starts = memory.splits["test"].starts
    expected = Baselines(memory, (0.1, 0.5, 0.9))
    baselines = Baselines(disk, (0.1, 0.5, 0.9))
    points = baselines.predict(starts)
    for name, forecast in expected.predict(starts).items():
        assert torch.equal(points[name], forecast), name
    for name, spread in expected.quantiles(starts, expected.predict(starts)).items():
        assert torch.equal(baselines.quantiles(starts, points)[name], spread), name


def test_a_run_on_disk_trains_and_forecasts_as_in_memory(contiguous_h5, write_recipe, tmp_path, one_thread):
    results = {}
    for store in ("memory", "disk"):
        tables = {"data": {"store": store, "target": "volume"}, "pooling": {"name": "none"}}
        recipe = write_recipe(short_run(store, tmp_path / store, contiguous_h5, **tables), f"{store}.toml")
        assert run_main([str(recipe)]) == 0
        (run_dir,) = (tmp_path / store).iterdir()
        out = tmp_path / f"{store}.forecast.h5"
        assert predict_main([str(run_dir), "--data", str(contiguous_h5), "--out", str(out)]) == 0
        with h5py.File(out) as forecast:
            results[store] = json.loads((run_dir / "metrics.json").read_text()), forecast["forecast"][()]
    (memory_metrics, memory_forecast), (disk_metrics, disk_forecast) = results["memory"], results["disk"]
    assert disk_metrics["test"] == pytest.approx(memory_metrics["test"], rel=1e-5)
    assert disk_metrics["baselines"] == memory_metrics["baselines"]  # no model in them: the same to the bit
    np.testing.assert_allclose(disk_forecast, memory_forecast, rtol=1e-5, atol=1e-4)


def test_a_compressed_file_is_refused_with_the_command_that_lays_it_out(small_data, small_h5, tmp_path, capsys):
    with pytest.raises(DataError, match=rf"{small_h5}: \[data\] store = \"disk\" .* chunked, gzip.* repack"):
        read_hdf5(small_h5, store="disk")
    out = tmp_path / "repacked.h5"
    assert data_main(["repack", str(small_h5), "--contiguous", "--out", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    repacked, original = read_hdf5(out, store="disk"), read_hdf5(small_h5)
    np.testing.assert_array_equal(repacked.features[0 : len(small_data.features)], original.features)
    assert repacked.vd_ids == original.vd_ids and repacked.feature_names == original.feature_names
    np.testing.assert_array_equal(repacked.timestamps, original.timestamps)
    np.testing.assert_array_equal(repacked.latlon, original.latlon)
    assert repacked.vd_attributes == original.vd_attributes
    np.testing.assert_array_equal(repacked.road_graph.source, original.road_graph.source)
    assert data_main(["repack", str(out), "--out", str(tmp_path / "compressed.h5")]) == 0  # and back
    with h5py.File(tmp_path / "compressed.h5") as f:
        assert f["data/features"].compression == "gzip"
