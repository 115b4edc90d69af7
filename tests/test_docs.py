"""The README and the docs say what the code does: every ``python -m`` command they show answers ``--help``, every
repository path they name exists, every link into the docs finds its page and heading, the recipe on the Recipes
page is the file itself, and every plugin example (theirs and the tests') imports only ``social_xlstm``.
(``mkdocs build --strict`` in CI checks the links between the docs pages.)"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import runpy
import shlex
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from markdown.extensions.toc import slugify

from core.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
TEXT = {page: page.read_text(encoding="utf-8") for page in PAGES}
OUR_MODULES = ("core.", "bench.")  # run in this process; any other module (pytest, torch's) in a subprocess


def commands() -> set[tuple[str, ...]]:
    """``(module, subcommand?)`` of every ``python -m MODULE [SUBCOMMAND] ...`` in the pages (a subcommand: a
    lower-case word right after the module, e.g. ``core.data import-wide``)."""
    found = set()
    for text in TEXT.values():
        for module, rest in re.findall(r"python -m ([a-zA-Z_][\w.]*)((?: [^\s`|]+)*)", text.replace("\n", " ")):
            words = rest.split()
            sub = words[0] if words and re.fullmatch(r"[a-z][a-z-]*", words[0]) else None
            found.add((module, sub) if sub else (module,))
    return found


COMMANDS = sorted(commands())


def test_the_pages_show_the_commands_a_user_runs():
    assert {("core.run",), ("core.compare",), ("core.predict",), ("core.plugins", "new"), ("core.data", "info")} <= set(
        COMMANDS
    )


@pytest.mark.parametrize(
    "command",
    [pytest.param(c, marks=[] if c[0].startswith(OUR_MODULES) else [pytest.mark.slow]) for c in COMMANDS],
    ids=" ".join,
)
def test_every_command_answers_help(command, monkeypatch):
    module, *sub = command
    argv = [*sub, "--help"]
    if not module.startswith(OUR_MODULES):
        done = subprocess.run([sys.executable, "-m", module, *argv], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0 and "usage" in done.stdout.lower(), done.stderr
        return
    monkeypatch.setattr(sys, "argv", [module, *argv])
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_, warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # runpy: the module is already imported
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    assert exit_.value.code in (0, None) and "usage:" in out.getvalue(), out.getvalue()


def import_commands() -> list[tuple[str, str]]:
    """``(where, command line)`` of every ``python -m core.data import-...`` shown in full (with ``--out``) in the
    pages and in the recipes' and suites' comments; a line ending in a backslash goes on on the next."""
    texts = {page.name: text for page, text in TEXT.items()}
    texts |= {
        f"{p.parent.name}/{p.name}": p.read_text() for d in ("recipes", "suites") for p in (ROOT / d).glob("*.toml")
    }
    found = []
    for where, text in texts.items():
        for line in re.findall(r"python -m core\.data (import-[^\n`]*)", re.sub(r"\\\n\s*", " ", text)):
            if "--out" in line:
                found.append((where, line.strip()))
    return found


@pytest.mark.parametrize("where, line", import_commands(), ids=lambda x: x if "/" in x or x.endswith("md") else "")
def test_every_import_command_shown_parses_and_names_its_feature(where, line):
    """The commands users copy run as shown: the options exist, and none lacks the --feature its file needs."""
    from core.data.__main__ import check_feature, parser

    args = parser().parse_args(shlex.split(line))
    check_feature(args)


PATH = re.compile(r"(?<![\w./-])((?:recipes|suites|plugins|core|bench|tests|docs|social_xlstm|\.ci)/[\w./-]*[\w/])")
NOT_HERE = re.compile(r"/[xy]\.\w+$|^tests/test_social_xlstm_")  # an error message's example file; the scaffold's test


def test_every_repository_path_named_exists():
    missing = []
    for page, text in TEXT.items():
        for path in set(PATH.findall(text)):
            if not NOT_HERE.search(path) and not (ROOT / path).exists():
                missing.append(f"{page.name}: {path}")
    assert not missing


def test_every_link_into_the_docs_finds_its_page_and_heading():
    """Links from the README into docs/, and anchors of links between the pages (mkdocs checks them too)."""
    broken = []
    for page, text in TEXT.items():
        for target, anchor in re.findall(r"\]\(((?:docs/)?[\w-]+\.md)(?:#([\w-]+))?\)", text):
            if page.name == "README.md" and not target.startswith("docs/"):
                continue
            linked = (ROOT / target) if target.startswith("docs/") else page.parent / target
            if not linked.is_file():
                broken.append(f"{page.name}: {target}")
            elif anchor and anchor not in headings(linked):
                broken.append(f"{page.name}: {target}#{anchor}")
    assert not broken


def headings(page: Path) -> set[str]:
    return {slugify(re.sub(r"`", "", h), "-") for h in re.findall(r"^#+ (.+)$", page.read_text(), re.M)}


def test_the_recipe_on_the_recipes_page_is_the_file_itself():
    page = TEXT[ROOT / "docs" / "recipes.md"]
    assert '```toml\n--8<-- "recipes/shared_radius.toml"\n```' in page
    assert "pymdownx.snippets" in (ROOT / "mkdocs.yml").read_text()
    recipe, _ = load_recipe(ROOT / "recipes" / "shared_radius.toml")  # and the file is a valid recipe
    assert recipe.encoder.name == "xlstm_shared"


def plugin_sources() -> list[tuple[str, str]]:
    """``(where, source)`` of every plugin example: the pages' Python blocks with a ``register_plugins`` hook,
    and the tests' plugin modules (files, and modules written from strings)."""
    sources = []
    for page, text in TEXT.items():
        for block in re.findall(r"```python\n(.*?)```", text, re.S):
            if "register_plugins" in block:
                sources.append((page.name, block))
    for path in sorted((ROOT / "tests").glob("*.py")):
        source = path.read_text()
        tree = ast.parse(source)
        if any(is_hook(node) for node in tree.body):
            sources.append((path.name, source))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.search("^@hookimpl", node.value, re.M)
            ):
                sources.append((f"{path.name}, line {node.lineno}", node.value))
    return sources


def is_hook(node: ast.stmt) -> bool:
    """A module-level function decorated with ``@hookimpl``."""
    return isinstance(node, ast.FunctionDef) and any(getattr(d, "id", "") == "hookimpl" for d in node.decorator_list)


def test_every_plugin_example_imports_only_social_xlstm():
    wrong = []
    for where, source in plugin_sources():
        for node in ast.walk(ast.parse(re.sub(r"^\s*\.\.\.\s*$", "pass", source, flags=re.M))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            wrong += [f"{where}: {name}" for name in names if name.split(".")[0] in ("core", "plugins", "tests")]
    assert len(plugin_sources()) >= 6 and not wrong


REFERENCE = runpy.run_path(str(ROOT / "docs_reference.py"))


def test_the_reference_lists_on_the_pages_are_the_codes():
    """The lists rendered from the code (every recipe key, every plugin) are on the pages as the code renders them
    (mkdocs renders them afresh too; ``python docs_reference.py`` rewrites the pages)."""
    blocks = {match[1] for text in TEXT.values() for match in REFERENCE["BLOCK"].findall(text)}
    assert blocks == set(REFERENCE["RENDER"])
    stale = [page.name for page, text in TEXT.items() if REFERENCE["render"](text) != text]
    assert not stale, f"{stale}: run python docs_reference.py"


def test_the_reference_lists_name_every_key_and_plugin():
    from core.host.options import describe_fields
    from core.host.registry import Registry
    from core.recipe.load import FIXED_TABLES, PLUGIN_TABLES

    keys, plugins = REFERENCE["recipe_keys"](), REFERENCE["plugins"]()
    for table, cls in FIXED_TABLES.items():
        rows = keys[keys.index(f"`[{table}]`") :]
        assert all(f"| `{key}` |" in rows for key, _, _ in describe_fields(cls)), table
    assert all(f"| `[{table}]` | `name`" in keys for table in PLUGIN_TABLES)
    assert '| `[run]` | `name` | `"run"` |' in keys and "| `lr` | `0.001` |" in keys  # values as a recipe writes them
    registry = Registry()
    registry.load_builtins()
    for info in registry:
        row = next(line for line in plugins.splitlines() if line.startswith(f"| `{info.name}` |"))
        assert all(f"`{name}` (" in row for name, _, _ in describe_fields(info.cls.Config)), info.name
    assert "| `spin_lite` |" in plugins and "`max_neighbours` (`16`)" in plugins


def test_every_tensorboard_tag_the_code_writes_is_on_the_tensorboard_page():
    tag = re.compile(r"(train|val|test|pooling|forecast|reliability|hparam)/[a-z_]+")
    written = {
        node.value
        for path in [*(ROOT / "core").rglob("*.py"), *(ROOT / "plugins").rglob("*.py")]
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and tag.fullmatch(node.value)
    }
    assert {"train/loss_step", "pooling/link_factor_mean", "reliability/test"} <= written
    page = TEXT[ROOT / "docs" / "tensorboard.md"]
    assert not [t for t in sorted(written) if f"`{t}`" not in page]


def test_every_capability_flag_is_in_the_flags_table():
    from core.api import PLUGIN_KINDS, capabilities

    table = TEXT[ROOT / "docs" / "writing-a-plugin.md"].split("## Capability flags")[1].split("\n## ")[0]
    flags = {flag for base in PLUGIN_KINDS.values() for flag in capabilities(base)}
    assert "uses_road_graph" in flags
    named = {flag: "`LayerwiseEncoder`" if flag == "layerwise" else f"`{flag}`" for flag in flags}
    assert not [flag for flag, text in named.items() if text not in table]


@pytest.mark.parametrize("folder, page", [("recipes", "recipes.md"), ("suites", "experiments.md")])
def test_every_shipped_recipe_and_suite_is_listed(folder, page):
    text = TEXT[ROOT / "docs" / page]
    assert not [p.name for p in sorted((ROOT / folder).glob("*.toml")) if f"`{folder}/{p.name}`" not in text]


def test_the_file_layouts_on_the_data_page_import_as_shown(tmp_path):
    """The example files of "What each importer reads" (wide CSV, per-detector CSV, locations) import as the page
    says: ids from the header or the file name, rows --interval apart, nan missing, positions per id."""
    import numpy as np

    from core.data.importers import import_per_detector, import_wide_csv

    section = TEXT[ROOT / "docs" / "data.md"].split("### What each importer reads")[1].split("\n### ")[0]
    wide, per_detector, locations = (block + "\n" for block in re.findall(r"```text\n(.*?)\n```", section, re.S))
    (tmp_path / "wide.csv").write_text(wide)
    (tmp_path / "speed-400001.csv").write_text(per_detector)
    (tmp_path / "locations.csv").write_text(locations)

    data = import_wide_csv(tmp_path / "wide.csv", tmp_path / "locations.csv", "2017-01-01T00:00", feature="speed")
    assert data.vd_ids == ("400001", "400017", "400030") and data.feature_names == ("speed",)
    assert np.diff(data.timestamps).tolist() == [300]
    np.testing.assert_array_equal(data.features[:, :, 0], np.array([[64.4, 62.1, np.nan], [63.9, 61.8, 58.0]], "f4"))
    np.testing.assert_allclose(data.latlon[2], [37.2470, -121.9520])

    single = import_per_detector([tmp_path / "speed-400001.csv"], tmp_path / "locations.csv")
    assert single.vd_ids == ("400001",) and single.feature_names == ("speed",)
    assert single.features[:, 0, 0].tolist() == pytest.approx([71.4, 71.1])


def test_every_class_and_function_of_the_api_reference_has_a_docstring():
    """docs/api.md renders social_xlstm and social_xlstm.testing from their docstrings."""
    import inspect

    import social_xlstm
    import social_xlstm.testing

    page = TEXT[ROOT / "docs" / "api.md"]
    modules = [social_xlstm, social_xlstm.testing]
    assert all(f"::: {module.__name__}\n" in page for module in modules)
    undocumented = [
        f"{module.__name__}.{name}"
        for module in modules
        for name in module.__all__
        if (inspect.isclass(obj := getattr(module, name)) or inspect.isfunction(obj))
        and not (obj.__doc__ or "").strip()
    ]
    assert not undocumented


def test_every_glossary_word_is_linked_from_a_page():
    """Each word of the glossary is linked where it is used, so a reader meets the explanation."""
    glossary = ROOT / "docs" / "glossary.md"
    linked = {
        anchor
        for page, text in TEXT.items()
        if page != glossary
        for anchor in re.findall(r"\]\((?:docs/)?glossary\.md#([\w-]+)\)", text)
    }
    assert headings(glossary) - {"glossary"} <= linked, headings(glossary) - {"glossary"} - linked
