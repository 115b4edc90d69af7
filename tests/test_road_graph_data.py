"""Road graphs as the field ships them: the PEMS0X layout (npz + distance.csv), DCRNN's adj_mx.pkl, link lists by
index or by id, stored in the HDF5 schema; flow zeros kept; poolings that need what a file lacks refused at load."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from core.data import read_hdf5
from core.data.__main__ import main as data_cli
from core.data.road_graph import read_adjacency, read_edges
from core.errors import DataError, RecipeError
from core.graph import RoadGraph
from core.recipe import load_recipe
from tests.helpers import short_run

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
T, N = 600, 5


def write_npz(folder: Path, zeros: bool = True) -> Path:
    """[T, 5, 3] flow, occupancy, speed; VD 0's flow and speed are 0 at step 3 (a night with no car, a lost speed)."""
    rng = np.random.default_rng(0)
    data = np.stack([rng.uniform(50, 300, (T, N)), rng.uniform(0, 0.3, (T, N)), rng.uniform(20, 70, (T, N))], -1)
    if zeros:
        data[3, 0, 0] = data[3, 0, 2] = 0.0
    path = folder / "pems.npz"
    np.savez(path, data=data.astype(np.float32))
    return path


def write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text)
    return folder / name


def import_npz(tmp_path, *extra: str) -> Path:
    out = tmp_path / "pems.h5"
    code = data_cli(
        ["import-npz", str(write_npz(tmp_path)), "--features", "flow,occupancy,speed", "--start", "2018-01-01T00:00"]
        + [*extra, "--out", str(out)]
    )
    assert code == 0
    return out


def test_npz_with_links_by_index_round_trips_and_info_reports_the_graph(tmp_path, capsys):
    edges = write(tmp_path, "distance.csv", "from,to,cost\n0,1,300.5\n1,2,250\n3,4,1000\n")
    out = import_npz(tmp_path, "--edges", str(edges))
    assert "kept 3 of 3 links" in capsys.readouterr().out
    data = read_hdf5(out)
    assert data.vd_ids == ("0", "1", "2", "3", "4") and data.feature_names == ("flow", "occupancy", "speed")
    assert data.latlon is None
    graph = data.road_graph
    assert graph.source.tolist() == [0, 1, 3] and graph.target.tolist() == [1, 2, 4] and graph.directed
    np.testing.assert_array_equal(graph.cost, [300.5, 250.0, 1000.0])
    assert graph.weight is None
    assert data_cli(["info", str(out)]) == 0
    info = capsys.readouterr().out
    assert "positions: none" in info
    assert (
        "road graph: 3 directed links (cost), 2 connected component(s), links per VD 1..2, 0 VD(s) with no link" in info
    )


def test_zeros_are_missing_for_speed_and_real_for_flow(tmp_path):
    data = read_hdf5(import_npz(tmp_path))
    flow, speed = data.features[3, 0, 0], data.features[3, 0, 2]
    assert flow == 0.0 and np.isnan(speed)
    kept = read_hdf5(import_npz(tmp_path, "--zero-missing", ""))
    assert kept.features[3, 0, 2] == 0.0
    assert np.isfinite(kept.features).all()


def test_links_by_id_without_header_are_cut_to_the_files_vds_and_costs_converted(tmp_path, capsys):
    ids = write(tmp_path, "ids.txt", "717\n718\n719\n720\n721\n")
    edges = write(tmp_path, "d.csv", "717,718,0.5\n718,719,0.25\n719,999,1.0\n998,999,2\n717,717,0\n")
    data = read_hdf5(import_npz(tmp_path, "--ids", str(ids), "--edges", str(edges), "--cost-unit", "mi"))
    assert data.vd_ids[:2] == ("717", "718")
    assert "kept 2 of 4 links (2 name ids that are not VDs of the data)" in capsys.readouterr().out
    np.testing.assert_allclose(data.road_graph.cost, [0.5 * 1609.344, 0.25 * 1609.344])
    assert "3 VD(s) with no link (720, 721, ...)" not in data.road_graph.summary(data.vd_ids)
    assert "2 VD(s) with no link (720, 721)" in data.road_graph.summary(data.vd_ids)


def write_adjacency(folder: Path, ids: list[str], matrix: np.ndarray, protocol: int = 2) -> Path:
    path = folder / "adj_mx.pkl"
    path.write_bytes(pickle.dumps([ids, {vd: i for i, vd in enumerate(ids)}, matrix.astype(np.float32)], protocol))
    return path


def test_dcrnn_adjacency_of_a_larger_network_is_cut_by_id(tmp_path, capsys):
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    matrix = np.eye(7)
    matrix[0, 1], matrix[1, 0], matrix[2, 6], matrix[5, 3] = 0.9, 0.4, 0.7, 0.2
    files = write(tmp_path, "wide.csv", "c,a,b,f,d\n" + "\n".join(["50,51,52,53,54"] * 40) + "\n")
    out = tmp_path / "wide.h5"
    code = data_cli(
        ["import-wide", str(files), "--feature", "speed", "--start", "2012-03-01T00:00"]
        + ["--adjacency", str(write_adjacency(tmp_path, ids, matrix)), "--out", str(out)]
    )
    assert code == 0
    assert "kept 3 of 4 links" in capsys.readouterr().out
    graph = read_hdf5(out).road_graph  # data order c, a, b, f, d: a->b is 1->2, b->a 2->1, f->d 3->4
    assert sorted(zip(graph.source.tolist(), graph.target.tolist(), np.round(graph.weight, 3).tolist())) == [
        (1, 2, 0.9),
        (2, 1, 0.4),
        (3, 4, 0.2),
    ]


@pytest.mark.skipif(not (SHARED / "metr-la-week" / "adj_mx.pkl").exists(), reason="needs ../shared/data")
def test_metr_la_adjacency_as_published():
    ids = (SHARED / "metr-la-week" / "graph_sensor_ids.txt").read_text().strip().split(",")
    graph, note = read_adjacency(SHARED / "metr-la-week" / "adj_mx.pkl", ids)
    assert graph.num_links == 1722 - 207 and "kept 1515 of 1515 links" in note
    assert graph.weight.min() >= 0.1 and graph.weight.max() <= 1.0


def bad(tmp_path, name: str, text: str) -> str:
    with pytest.raises(DataError) as error:
        read_edges(write(tmp_path, name, text), [str(i) for i in range(N)])
    return str(error.value)


def test_bad_links_name_the_file_and_row(tmp_path):
    assert bad(tmp_path, "a.csv", "from,to,cost\n0,1,3\n0,9,2\n").endswith(
        "a.csv: row 3: node '9' is neither a VD id of the data nor an index 0..4"
    )
    assert "b.csv: row 2: cost '-4' is not a finite number >= 0" in bad(tmp_path, "b.csv", "0,1,1\n1,2,-4\n")
    assert "c.csv: row 1: cost 'nan' is not a finite number >= 0" in bad(tmp_path, "c.csv", "0,1,nan\n")
    assert "d.csv: row 2: expected from,to[,cost]" in bad(tmp_path, "d.csv", "0,1\n0,1,2,3\n")


def test_bad_adjacency_pickles_are_refused_in_one_line(tmp_path):
    vds = ["a", "b"]
    wrong_size = write_adjacency(tmp_path, ["a", "b", "c"], np.ones((2, 2)))
    with pytest.raises(DataError, match=r"adj_mx\.pkl: adj_mx has shape \(2, 2\) for 3 sensor ids"):
        read_adjacency(wrong_size, vds)
    with pytest.raises(DataError, match=r"1 VD\(s\) of the data are not among its 2 sensor ids, e.g. z"):
        read_adjacency(write_adjacency(tmp_path, ["a", "b"], np.eye(2)), ["a", "z"])
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"adj": np.eye(2)}))
    with pytest.raises(
        DataError, match=r"other\.pkl: expected DCRNN's layout \[sensor_ids, sensor_id_to_index, adj_mx\]"
    ):
        read_adjacency(other, vds)
    hostile = tmp_path / "hostile.pkl"
    hostile.write_bytes(pickle.dumps(Path("x")))
    with pytest.raises(DataError, match=r"hostile\.pkl: not DCRNN's adjacency pickle: it names pathlib"):
        read_adjacency(hostile, vds)


def test_road_graph_is_kept_with_the_selected_vds():
    graph = RoadGraph(4, np.array([0, 1, 2]), np.array([1, 2, 3]), cost=np.array([1.0, 2.0, 3.0]))
    kept = graph.select(np.array([3, 2, 1]))
    assert sorted(zip(kept.source.tolist(), kept.target.tolist(), kept.cost.tolist())) == [(1, 0, 3.0), (2, 1, 2.0)]
    with pytest.raises(DataError, match="a link's target is not a VD index 0..1"):
        RoadGraph(2, np.array([0]), np.array([2]))


def test_road_distances_follow_the_links_either_way():
    graph = RoadGraph(4, np.array([0, 1, 3]), np.array([1, 2, 2]), cost=np.array([100.0, 200.0, 50.0]))
    distance = graph.road_distances(limit_m=320.0).toarray()
    assert distance[0, 2] == 300.0 and distance[2, 0] == 300.0 and distance[0, 3] == 0.0  # 350 m: beyond the limit
    assert distance[1, 3] == 250.0


@pytest.mark.parametrize(
    ("pooling", "missing"),
    [
        ({"name": "radius"}, "VD positions"),
        ({"name": "attention"}, "VD positions"),
        ({"name": "learned_graph", "with_distance": True}, "VD positions"),
    ],
)
def test_a_pooling_needing_positions_is_refused_at_recipe_load(tmp_path, pooling, missing):
    out = import_npz(tmp_path)
    recipe = write(tmp_path, "r.toml", short_run("r", tmp_path, out, pooling=pooling))
    with pytest.raises(RecipeError) as error:
        load_recipe(recipe)
    message = str(error.value)
    assert f"[pooling] '{pooling['name']}' needs {missing}" in message and str(out) in message
    assert "learned_graph" in message.split("need nothing more:")[1] and "none" in message


def test_road_pooling_without_a_graph_is_refused_and_with_one_trains(tmp_path):
    out = import_npz(tmp_path)
    for pooling in ({"name": "road_graph"}, {"name": "radius", "metric": "road"}):
        recipe = write(tmp_path, "r.toml", short_run("r", tmp_path, out, pooling=pooling))
        with pytest.raises(RecipeError, match=r"needs a road graph \(metadata/road_graph\)"):
            load_recipe(recipe)
    edges = write(tmp_path, "distance.csv", "0,1,300\n1,2,250\n")
    linked = import_npz(tmp_path, "--edges", str(edges))
    recipe = write(tmp_path, "ok.toml", short_run("ok", tmp_path, linked, pooling={"name": "road_graph"}))
    load_recipe(recipe)  # accepted


def test_a_flow_recipe_trains_end_to_end_on_a_file_without_positions(tmp_path):
    """Flow from flow, occupancy and speed, pooled along the road links: its zeros are targets (MAE counts them,
    MAPE does not), the baselines are scored beside the model."""
    from core.run import main as run_cli

    edges = write(tmp_path, "distance.csv", "0,1,300\n1,2,250\n2,3,400\n")
    data = import_npz(tmp_path, "--edges", str(edges))
    tables = {
        "data": {"source": str(data), "target": "flow"},
        "pooling": {"name": "road_graph", "hops": 2},
        "trainer": {"epochs": 1, "batch_size": 16, "max_batches_per_epoch": 3, "figure_vds": 1},
    }
    recipe = write(tmp_path, "flow.toml", short_run("flow", tmp_path / "runs", data, **tables))
    assert run_cli([str(recipe)]) == 0
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert 0 < metrics["test"]["mae@12"] < 300 and metrics["test"]["mape@12"] > 0
    assert set(metrics["baselines"]) == {"last_value", "historical_average"}  # no seasonal_naive: under two weeks
    assert metrics["positions_xy"] is None
