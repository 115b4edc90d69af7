"""``python -m core.plugins new``: a package for each kind that passes the kit as written, installs with pip,
runs its own test and trains from a recipe; the examples in docs/writing-a-plugin.md are the scaffold's plugins."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import PluginError
from core.host.registry import Registry
from core.host.scaffold import plugin_module, write_package
from core.plugins import main
from social_xlstm.testing import check_plugin

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["encoder", "pooling", "collator", "head"])
def test_each_scaffold_writes_a_package_whose_plugin_passes_the_kit(kind, tmp_path, monkeypatch, capsys):
    name = f"kit_{kind}"
    assert main(["new", kind, name, "--out", str(tmp_path / "pkg")]) == 0
    assert f"wrote {tmp_path / 'pkg' / 'setup.cfg'}" in capsys.readouterr().out
    module = f"social_xlstm_{name}"
    files = sorted(str(p.relative_to(tmp_path / "pkg")) for p in (tmp_path / "pkg").rglob("*") if p.is_file())
    assert files == ["README.md", "pyproject.toml", "setup.cfg", f"{module}.py", f"tests/test_{module}.py"]
    setup = (tmp_path / "pkg" / "setup.cfg").read_text()
    assert f"social_xlstm =\n    {name} = {module}\n" in setup and f"py_modules = {module}\n" in setup
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    try:
        results = check_plugin(kind, name, modules=[module])
    finally:
        sys.modules.pop(module, None)
    assert sum(r.passed is True for r in results) >= 5


def test_the_docs_examples_are_the_scaffold_plugins():
    page = (ROOT / "docs" / "writing-a-plugin.md").read_text(encoding="utf-8")
    for kind, name in [("encoder", "gru"), ("pooling", "global_mean"), ("collator", "active_vds"), ("head", "normal")]:
        assert f"```python\n# my_pkg/{name}.py\n{plugin_module(kind, name)}```" in page, name


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        (
            "encoder",
            "lstm",
            "new: encoder 'lstm' is already registered by built-in plugins.encoders.lstm; pick another name",
        ),
        (
            "pooling",
            "Global-Mean",
            "new: plugin name 'Global-Mean' must be lower case letters, digits and '_', starting with a letter",
        ),
        ("collator", "fine", "exists and is not an empty directory"),
        (
            "head",
            "quantile",
            "new: head 'quantile' is already registered by built-in plugins.heads.quantile; pick another name",
        ),
    ],
)
def test_new_refuses_taken_or_bad_names_and_a_used_directory(kind, name, expected, tmp_path):
    (tmp_path / "old.txt").write_text("mine")
    with pytest.raises(PluginError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        write_package(kind, name, tmp_path, Registry.default())
    assert [p.name for p in tmp_path.iterdir()] == ["old.txt"]


@pytest.mark.slow
def test_a_scaffolded_package_installs_passes_its_own_test_and_trains_from_a_recipe(tmp_path, small_h5):
    """pip installs it (into a target directory on PYTHONPATH: the shared environment never sees it), its entry
    point registers it, its test runs the kit, and a recipe with variable histories and dynamic padding trains it."""
    package, site = tmp_path / "pkg", tmp_path / "site"
    write_package("encoder", "kit_gru", package, Registry.default())
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "--disable-pip-version-check",
    ]
    subprocess.run([*pip, "--target", str(site), str(package)], check=True, capture_output=True, cwd=tmp_path)
    assert (site / "social_xlstm_kit_gru-0.1.0.dist-info" / "entry_points.txt").read_text().split() == [
        "[social_xlstm]",
        "kit_gru",
        "=",
        "social_xlstm_kit_gru",
    ]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)])}

    def run(*args: str, cwd: Path = tmp_path) -> str:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=cwd, env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    assert "1 passed" in run("-m", "pytest", "-q", "-p", "no:cacheprovider", "tests", cwd=package)
    listing = run("-m", "core.plugins")
    assert (
        "encoder 'kit_gru'  [entry point 'kit_gru = social_xlstm_kit_gru' of package social-xlstm-kit-gru]" in listing
    )
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        f'[run]\nname = "gru"\noutput_dir = "{tmp_path / "runs"}"\n[data]\nsource = "{small_h5}"\nmin_history = '
        "3\ngap_steps = 3\n"
        '[encoder]\nname = "kit_gru"\nhidden_size = 8\n[pooling]\nname = "radius"\n[collator]\nname = '
        '"dynamic_padding"\n'
        "[trainer]\nepochs = 1\nbatch_size = 8\nmax_batches_per_epoch = 2\nfigure_vds = 0\n"
    )
    out = run("-m", "core.run", str(recipe))
    assert "kit_gru + radius pooling" in out and "best epoch 1" in out
    assert [p.name for p in (tmp_path / "runs").iterdir()][0].startswith("gru-")
