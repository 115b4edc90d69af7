"""Every bad input ends with exit code != 0, one ``error: ...`` line naming the culprit, no traceback, and
nothing written: no run directory (``python -m core.run``), no output file (``python -m core.data``).

Each case builds its input in a fresh folder and returns the command line and the culprit the error must
name; ``{h5}``, ``{recipe}`` and ``{tmp}`` in the expected text stand for the case's paths.
"""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import attrs
import h5py
import numpy as np
import pytest
import torch

import core.data.__main__ as data_cli
import core.run as run_cli
from core.errors import DataError

RECIPE = """
[run]
name = "bad"
output_dir = "{runs}"
[data]
source = "{data}"
[encoder]
name = "lstm"
embedding_dim = 8
[pooling]
name = "radius"
[trainer]
epochs = 1
max_batches_per_epoch = 2
figure_vds = 0
"""

EXPLODING_PLUGIN = """
import attrs
from social_xlstm import Encoder, hookimpl

@attrs.frozen
class Config:
    size: int = 4

class Exploding(Encoder):
    name = "exploding"
    Config = Config

    def __init__(self, config, spec):
        raise RuntimeError("boom while building")

@hookimpl
def register_plugins(register):
    register(Exploding)
"""


@attrs.define
class Case:
    """Files for one case under ``tmp``: a copy of the small HDF5 file, a recipe and a locations CSV."""

    tmp: Path
    h5: Path

    def recipe(self, text: str = RECIPE, extra: str = "") -> Path:
        path = self.tmp / "recipe.toml"
        path.write_text(textwrap.dedent(text).format(runs=self.tmp / "runs", data=self.h5) + extra)
        return path

    def edit_h5(self, change: Callable[[h5py.File], None]) -> None:
        with h5py.File(self.h5, "a") as f:
            change(f)

    def csv(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(textwrap.dedent(text).lstrip())
        return str(path)

    def locations(self) -> str:
        return self.csv("loc.csv", "sensor_id,latitude,longitude\n1,34.0,-118.0\n2,34.1,-118.1\n")


def run(
    *overrides: str,
    text: str = RECIPE,
    extra: str = "",
    h5: Callable[[h5py.File], None] | None = None,
    raw: Callable[[bytes], bytes] | None = None,
):
    """A ``core.run`` case: the base recipe with TOML ``extra`` and ``--set`` overrides (``{tmp}`` = the case's
    folder); the HDF5 file edited by ``h5``, or its bytes changed by ``raw``."""

    def build(case: Case) -> list[str]:
        if h5:
            case.edit_h5(h5)
        if raw:
            case.h5.write_bytes(raw(case.h5.read_bytes()))
        return [
            "run",
            str(case.recipe(text, extra)),
            *[arg for o in overrides for arg in ("--set", o.format(tmp=case.tmp))],
        ]

    return build


def replace(key: str, value) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        new = value(f) if callable(value) else value
        del f[key]
        f[key] = new

    return change


def delete(*keys: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        for key in keys:
            del f[key]

    return change


def set_attr(vd_index: int, name: str, value: float) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        vd = f["metadata/vdids"][vd_index].decode()
        f[f"metadata/vd_info/{vd}"].attrs[name] = value

    return change


def set_reading(step: int, vd: int, value: float) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        f["data/features"][step, vd, 0] = value

    return change


def blank_vds(*indices: int) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        features = f["data/features"][()]
        features[:, list(indices)] = np.nan
        replace("data/features", features)(f)

    return change


def data(*args: str, files: dict[str, str] = {}):  # noqa: B006 - read only
    """A ``core.data`` case: ``files`` written first; ``{loc}`` in args is a good locations file."""

    def build(case: Case) -> list[str]:
        paths = {name: case.csv(name, text) for name, text in files.items()}
        paths["loc"] = paths.get("loc", None) or case.locations()
        return ["data", *(a.format(tmp=case.tmp, **paths) for a in args), "--out", str(case.tmp / "out.h5")]

    return build


def plugin_module(name: str, source: str, encoder: str = "lstm"):
    """A ``core.run`` case whose recipe loads the module ``name`` (written to the case's folder, on sys.path)."""

    def build(case: Case) -> list[str]:
        (case.tmp / f"{name}.py").write_text(source)
        text = RECIPE.replace('name = "lstm"\nembedding_dim = 8', f'name = "{encoder}"')
        return ["run", str(case.recipe(text, f'\n[plugins]\nmodules = ["{name}"]\n'))]

    return build


WIDE = ["import-wide", "{values}", "--feature", "speed", "--locations", "{loc}", "--start", "2012-03-01T00:00"]
CASES = [
    # recipes
    ("malformed TOML", run(text="[run\nname = 1\n"), "{recipe}: malformed TOML: "),
    (
        "unknown table",
        run(extra="[traner]\nepochs = 1\n"),
        "{recipe}: unknown table [traner] (did you mean 'trainer'?)",
    ),
    (
        "unknown key",
        run("trainer.epocs=1"),
        "--set trainer.epocs=1: [trainer]: unknown key 'epocs' (did you mean 'epochs'?)",
    ),
    (
        "wrong type",
        run("trainer.epochs='3'"),
        "--set trainer.epochs='3': [trainer] epochs = '3' has the wrong type, expected int",
    ),
    ("not a table", run(text="plugins = 3\n" + RECIPE), "{recipe}: 'plugins' must be a table ([plugins]), got 3"),
    (
        "negative radius",
        run("pooling.radius_m=-5"),
        "{recipe} (with --set pooling.radius_m=-5): [pooling] (radius): 'radius_m' must be > 0.0: -5.0",
    ),
    ("horizon 0", run("data.horizon=0"), "{recipe} (with --set data.horizon=0): [data]: 'horizon' must be > 0: 0"),
    (
        "batch 0",
        run("trainer.batch_size=0"),
        "{recipe} (with --set trainer.batch_size=0): [trainer]: 'batch_size' must be > 0: 0",
    ),
    (
        "infinite learning rate",
        run("trainer.lr=inf"),
        "--set trainer.lr=inf: [trainer] lr = inf is not a finite number",
    ),
    (
        "unknown on_nonfinite",
        run("trainer.on_nonfinite=ignore"),
        "[trainer] on_nonfinite = 'ignore' is not allowed; allowed: 'stop', 'skip'",
    ),
    (
        "unknown encoder",
        run("encoder.name=xlstm_shard"),
        "--set encoder.name=xlstm_shard: [encoder] unknown encoder 'xlstm_shard' (did you mean 'xlstm_shared'?); "
        "registered: ",
    ),
    (
        "unknown pooling",
        run("pooling.name=radial"),
        "--set pooling.name=radial: [pooling] unknown pooling 'radial' (did you mean 'radius'?)",
    ),
    ("bad --set", run("trainer.epochs"), "--set 'trainer.epochs': expected TABLE.KEY=VALUE"),
    ("missing recipe", lambda case: ["run", str(case.tmp / "nope.toml")], "{tmp}/nope.toml: recipe file not found"),
    (
        "resume a non-run folder",
        lambda case: ["run", "--resume", str(case.tmp)],
        "--resume {tmp}: not a run directory (no recipe.toml)",
    ),
    (
        "plugin module fails to import",
        plugin_module("broken_plugin", "import no_such_dependency_xyz\n"),
        "{recipe}: [plugins] modules: 'broken_plugin' failed to import: ModuleNotFoundError: No module named "
        "'no_such_dependency_xyz'",
    ),
    (
        "plugin raises at construction",
        plugin_module("exploding_plugin", EXPLODING_PLUGIN, encoder="exploding"),
        "encoder 'exploding' ({recipe} module exploding_plugin) failed to build: RuntimeError: boom while building",
    ),
    (
        "output_dir is a file",
        run(text=RECIPE.replace('output_dir = "{runs}"', 'output_dir = "{data}"')),
        "{recipe}: [run] output_dir = '{h5}': cannot create a run directory there: File exists",
    ),
    # data files
    ("missing data file", run("data.source={tmp}/missing.h5"), "{tmp}/missing.h5: data file not found"),
    ("data file is a folder", run("data.source={tmp}"), "{tmp}: is a folder, not an HDF5 data file"),
    ("not HDF5", run(raw=lambda _: b"speed,occupancy\n1,2\n"), "{h5}: not a readable HDF5 file: "),
    ("truncated HDF5", run(raw=lambda content: content[:4000]), "{h5}: not a readable HDF5 file: "),
    (
        "missing data/features",
        run(h5=delete("data/features")),
        "{h5}: missing dataset 'data/features' (expected float32 [T, N, F])",
    ),
    (
        "missing metadata/vdids",
        run(h5=delete("metadata/vdids")),
        "{h5}: missing dataset 'metadata/vdids' (expected str [N])",
    ),
    (
        "missing timestamps",
        run(h5=delete("metadata/timestamps", "metadata/timestamps_epoch")),
        "{h5}: missing dataset 'metadata/timestamps_epoch' or 'metadata/timestamps'",
    ),
    (
        "features not 3-D",
        run(h5=replace("data/features", lambda f: f["data/features"][:, :, 0])),
        "{h5}: data/features must be [T, N, F], got shape (1152, 36)",
    ),
    (
        "vdids of another length",
        run(h5=replace("metadata/vdids", lambda f: f["metadata/vdids"][:-1])),
        "{h5}: metadata/vdids has 35 ids but data/features has 36 VDs",
    ),
    (
        "missing metadata/vd_info",
        run(h5=delete("metadata/vd_info")),
        "{recipe}: [pooling] 'radius' needs VD positions (metadata/vd_info lat/lon), which {h5} does not have; "
        "poolings that need nothing more: learned_graph, none, road_graph",
    ),
    (
        "missing position_lon attr",
        run(h5=lambda f: f["metadata/vd_info/VD-N1-02"].attrs.__delitem__("position_lon")),
        "{h5}: Social pooling is enabled but 'positions_xy' is NaN or infinite for 1 VD(s), e.g. VD-N1-02",
    ),
    (
        "NaN position",
        run(h5=set_attr(4, "position_lat", np.nan)),
        "{h5}: Social pooling is enabled but 'positions_xy' is NaN or infinite for 1 VD(s), e.g. VD-N1-04",
    ),
    (
        "infinite position",
        run(h5=set_attr(5, "position_lon", np.inf)),
        "{h5}: Social pooling is enabled but 'positions_xy' is NaN or infinite for 1 VD(s), e.g. VD-N1-05",
    ),
    (
        "positions for some VDs only",
        run(h5=delete("metadata/vd_info/VD-N1-00", "metadata/vd_info/VD-N1-01")),
        "{h5}: Social pooling is enabled but 'positions_xy' is NaN or infinite for 2 VD(s), e.g. VD-N1-00, VD-N1-01",
    ),
    (
        "duplicate VD ids",
        run(
            h5=replace(
                "metadata/vdids",
                lambda f: np.array(
                    [f["metadata/vdids"][0]] + list(f["metadata/vdids"][1:-1]) + [f["metadata/vdids"][0]]
                ),
            )
        ),
        "{h5}: duplicate VD id(s): VD-N1-00",
    ),
    (
        "non-monotonic timestamps",
        run(
            h5=replace(
                "metadata/timestamps_epoch",
                lambda f: f["metadata/timestamps_epoch"][()][
                    [0, 1, 2, 1] + list(range(4, f["data/features"].shape[0]))
                ],
            )
        ),
        "{h5}: timestamps are not increasing at step 3",
    ),
    ("all-NaN VDs", run(h5=blank_vds(3, 7)), "{h5}: VD(s) VD-N1-03, VD-N1-07 have no reading at all"),
    (
        "infinite reading",
        run(h5=set_reading(10, 2, np.inf)),
        "{h5}: 1 infinite reading(s), e.g. VD VD-N1-02, speed at step 10",
    ),
    (
        "fewer steps than one window",
        run("data.history=400"),
        "{h5}: fewer time steps than one window: the val part has 116 of 1152 steps, a window needs 412",
    ),
    (
        "unknown target feature",
        run("data.target=flow"),
        "{h5}: data.target 'flow' is not a feature of the data; features: speed, occupancy, volume",
    ),
    # importers
    (
        "CSV ragged row",
        data(*WIDE, files={"values": "1,2\n50,60\n55\n"}),
        "{tmp}/values: line 3 has 1 values, the header has 2 detector ids (ragged row)",
    ),
    (
        "CSV unknown sensor id",
        data(*WIDE, files={"values": "1,3\n50,60\n"}),
        "{tmp}/loc.csv: no location for 1 sensor id(s) of {tmp}/values: 3",
    ),
    (
        "CSV reading not a number",
        data(*WIDE, files={"values": "1,2\n50,fast\n"}),
        "{tmp}/values: line 2: a reading is not a number: 'fast'",
    ),
    (
        "CSV blank line inside",
        data(*WIDE, files={"values": "1,2\n50,60\n\n55,65\n"}),
        "{tmp}/values: line 3 has 0 values, the header has 2 detector ids",
    ),
    (
        "CSV infinite reading",
        data(*WIDE, files={"values": "1,2\n50,1e40\n"}),
        "{tmp}/values: 1 infinite reading(s), e.g. VD 2, speed at step 0",
    ),
    ("CSV duplicate sensor id", data(*WIDE, files={"values": "1,1\n50,60\n"}), "{tmp}/values: duplicate VD id(s): 1"),
    (
        "locations out of range",
        data(*WIDE, files={"values": "1,2\n50,60\n", "loc": "1,34.0,-118.0\n2,134.1,-118.1\n"}),
        "{tmp}/loc: row 2: latitude 134.1 or longitude -118.1 out of range",
    ),
    (
        "missing locations file",
        data(
            "import-wide",
            "{values}",
            "--feature",
            "speed",
            "--locations",
            "{tmp}/none.csv",
            "--start",
            "2012-03-01",
            files={"values": "1,2\n50,60\n"},
        ),
        "{tmp}/none.csv: file not found",
    ),
    (
        "per-detector bad line",
        data(
            "import-per-detector",
            "{d1}",
            "--locations",
            "{loc}",
            files={"d1": "Stamp,Speed\n2012-03-01T00:00,60\n2012-03-01T00:05\n"},
        ),
        "{tmp}/d1: line 3 does not have two columns (Stamp,value)",
    ),
    (
        "wide CSV without --feature",
        data("import-wide", "{values}", "--start", "2012-03-01T00:00", files={"values": "1,2\n50,60\n"}),
        "{tmp}/values: the file does not say what its readings are: give --feature (e.g. --feature speed, "
        "--feature flow)",
    ),
    (
        "per-detector header naming no feature",
        data("import-per-detector", "{d1}", files={"d1": "Stamp,12\n2012-03-01T00:00,60\n2012-03-01T00:05,61\n"}),
        "{tmp}/d1: the header does not name the readings' feature ('12'); give --feature, e.g. --feature speed",
    ),
    (
        "per-detector headers naming two features",
        data(
            "import-per-detector",
            "{d1}",
            "{d2}",
            files={
                "d1": "Stamp,Speed(m/h)\n2012-03-01T00:00,60\n2012-03-01T00:05,61\n",
                "d2": "Stamp,Flow\n2012-03-01T00:00,60\n2012-03-01T00:05,61\n",
            },
        ),
        "the files' headers name different features: speed ({tmp}/d1), flow ({tmp}/d2); give --feature",
    ),
    (
        "per-detector empty file",
        data("import-per-detector", "{d1}", "--locations", "{loc}", files={"d1": "Stamp,Speed\n"}),
        "{tmp}/d1: no readings after the header (expected Stamp,value rows)",
    ),
    (
        "per-detector single reading",
        data("import-per-detector", "{d1}", "--locations", "{loc}", files={"d1": "Stamp,Speed\n2012-03-01T00:00,60\n"}),
        "1 detector files: cannot tell the time step, no file has two different time stamps",
    ),
    (
        "vd-attributes unknown id",
        data(
            *WIDE, "--vd-attributes", "{attrs}", files={"values": "1,2\n50,60\n", "attrs": "sensor_id,road\nzz,I-5\n"}
        ),
        "{tmp}/attrs: 1 sensor id(s) are not in the data: zz",
    ),
]


@pytest.mark.parametrize(("build", "culprit"), [pytest.param(b, c, id=i) for i, b, c in CASES])
def test_bad_input_is_one_clear_line_and_leaves_nothing(build, culprit, small_h5, tmp_path, monkeypatch, capsys):
    h5 = tmp_path / "data.h5"
    h5.write_bytes(small_h5.read_bytes())
    monkeypatch.syspath_prepend(str(tmp_path))
    tool, *argv = build(Case(tmp_path, h5))
    before = set(tmp_path.rglob("*"))
    try:
        code = (run_cli if tool == "run" else data_cli).main(argv)
    finally:
        for name in ("broken_plugin", "exploding_plugin"):
            sys.modules.pop(name, None)
    err = capsys.readouterr().err
    assert code != 0
    expected = culprit.format(h5=h5, recipe=tmp_path / "recipe.toml", tmp=tmp_path)
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert expected in err, err
    assert set(tmp_path.rglob("*")) <= before | {
        tmp_path / "__pycache__",
        *tmp_path.glob("__pycache__/*"),
    }  # nothing written


def test_unavailable_device_leaves_no_run_directory(small_h5, write_recipe, tmp_path, capsys):
    """This error comes after the run directory exists: the directory is removed again."""
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    recipe = write_recipe(RECIPE.format(runs=tmp_path / "runs", data=small_h5))
    assert run_cli.main([str(recipe), "--set", "trainer.device=cuda"]) == 2
    assert (
        capsys.readouterr().err
        == "error: [trainer] device = 'cuda' but CUDA is not available on this machine; use 'auto' or 'cpu'\n"
    )
    assert list((tmp_path / "runs").iterdir()) == []


def test_debug_shows_the_traceback(write_recipe, tmp_path):
    recipe = write_recipe(RECIPE.format(runs=tmp_path / "runs", data=tmp_path / "missing.h5"))
    with pytest.raises(DataError, match="data file not found"):
        run_cli.main([str(recipe), "--debug"])
