"""Property tests: whatever the recipe text, overrides or CSV content, the loaders return a valid object or
raise one of the project's errors (which the CLI prints as one line), never anything else.

The inputs are mostly valid files with a few random edits (a cell replaced, dropped or added), so that both
outcomes occur often.
"""

from __future__ import annotations

import attrs
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.data.importers import import_per_detector, import_wide_csv, read_locations
from core.errors import DataError, SocialXLSTMError
from core.host.registry import Registry
from core.recipe import Recipe, load_recipe
from core.recipe.load import ALL_TABLES, FIXED_TABLES

FUZZ = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------------ recipes
VALID = """
[encoder]
name = "lstm"
[pooling]
name = "radius"
radius_m = 800.0
"""
TOML_BITS = st.sampled_from(
    [
        "[",
        "]",
        "=",
        '"',
        "'",
        "\n",
        ".",
        ",",
        "#",
        " ",
        "{",
        "}",
        "true",
        "1e3",
        "-",
        "nan",
        "inf",
        *ALL_TABLES,
        "name",
        "epochs",
        "lstm",
    ]
)
SLOTS = [(table, f.name) for table, cls in FIXED_TABLES.items() for f in attrs.fields(cls)] + [
    ("encoder", "name"), ("encoder", "embedding_dim"), ("pooling", "name"), ("pooling", "radius_m"),
    ("pooling", "aggregation"), ("collator", "name"), ("trainer", "bogus"), ("bogus", "key"),
]  # fmt: skip
VALUES = st.one_of(
    st.integers(-3, 40).map(str),
    st.integers(-(2**70), 2**70).map(str),
    st.floats().map(repr),
    st.booleans().map(lambda b: str(b).lower()),
    st.sampled_from(
        [
            "lstm",
            "xlstm_shared",
            "attention",
            "none",
            "distributed",
            "'32'",
            "[1, 2]",
            "[0.7, 0.1, 0.2]",
            "{a = 1}",
            "[",
            '"open',
        ]
    ),
    st.text(max_size=12),
)


@pytest.fixture(scope="module")
def registry():
    return Registry.default()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def recipe_or_error(path, overrides, registry) -> None:
    try:
        recipe, _ = load_recipe(path, overrides, registry)
    except SocialXLSTMError:
        return
    assert isinstance(recipe, Recipe)
    recipe.to_toml()  # a valid recipe can always be written back


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.lists(TOML_BITS, max_size=40).map("".join)))
def test_any_recipe_text_gives_a_recipe_or_a_clear_error(text, folder, registry):
    path = folder / "fuzz.toml"
    path.write_text(VALID + text, encoding="utf-8")
    recipe_or_error(path, [], registry)


@FUZZ
@given(overrides=st.lists(st.tuples(st.sampled_from(SLOTS), VALUES), max_size=3))
def test_any_overrides_give_a_recipe_or_a_clear_error(overrides, folder, registry):
    path = folder / "valid.toml"
    path.write_text(VALID)
    recipe_or_error(path, [f"{table}.{key}={value}" for (table, key), value in overrides], registry)


# ---------------------------------------------------------------------------------------------- importers
NUMBER = st.one_of(st.integers(0, 120).map(str), st.floats(0, 120).map(repr), st.just("nan"))
JUNK = st.sampled_from(["", "x", "inf", "-1e40", "1e40", " 7 ", "2012-13-01", "yesterday", "95.5", "-200"])


@st.composite
def edited(draw, rows: list[list[str]]) -> str:
    """``rows`` as CSV text after 0 to 2 random edits: a cell replaced by junk, a cell dropped, a cell added."""
    rows = [list(row) for row in rows]
    for _ in range(draw(st.integers(0, 2))):
        row = draw(st.sampled_from(rows)) if rows else None
        if not row:
            continue
        i = draw(st.integers(0, len(row) - 1))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        if action == "replace":
            row[i] = draw(JUNK)
        elif action == "drop":
            del row[i]
        else:
            row.insert(i, draw(st.one_of(NUMBER, JUNK)))
    return "".join(",".join(row) + "\n" for row in rows)


def locations(ids: list[str]) -> list[list[str]]:
    return [[vd, "34.0", f"-118.{k}"] for k, vd in enumerate(ids)]


@st.composite
def wide_csv(draw) -> tuple[str, str]:
    ids = draw(st.lists(st.sampled_from(["1", "2", "3", "4", "x"]), min_size=1, max_size=4, unique=True))
    rows = draw(st.lists(st.lists(NUMBER, min_size=len(ids), max_size=len(ids)), min_size=1, max_size=5))
    listed = draw(
        st.lists(st.sampled_from(ids), unique=True, min_size=len(ids) - 1, max_size=len(ids))
    )  # maybe one id short
    return draw(edited([ids, *rows])), draw(edited(locations(listed)))


@FUZZ
@given(case=wide_csv())
def test_any_wide_csv_gives_data_or_a_data_error(case, folder):
    values_text, locations_text = case
    values, where = folder / "values.csv", folder / "loc.csv"
    values.write_text(values_text)
    where.write_text(locations_text)
    try:
        data = import_wide_csv(values, where, start="2012-03-01T00:00", feature="speed")
    except DataError:
        return
    header, *rows = values_text.rstrip("\n").split("\n")  # blank lines at the end do not count
    assert data.features.shape == (len(rows), len(header.split(",")), 1) and np.isfinite(data.latlon).all()
    assert not np.isinf(data.features).any() and (np.diff(data.timestamps) == 300).all()


@st.composite
def detector_files(draw) -> list[str]:
    files = []
    for _ in range(draw(st.integers(1, 3))):
        first, count = draw(st.integers(0, 4)), draw(st.integers(1, 5))
        stamps = [f"2012-03-01T{5 * k // 60:02d}:{5 * k % 60:02d}:00" for k in range(first, first + count)]
        rows = [[stamp, draw(NUMBER)] for stamp in stamps]
        files.append("Stamp,Speed\n" + draw(edited(rows)))
    return files


@FUZZ  # a drawn stamp such as "1" (1970) beside 2012 ones is refused (a grid of millions of steps), not built
@given(files=detector_files())
def test_any_per_detector_files_give_data_or_a_data_error(files, folder):
    paths = []
    for i, text in enumerate(files):
        paths.append(folder / f"speed-{i}.csv")
        paths[-1].write_text(text)
    where = folder / "loc_detectors.csv"
    where.write_text("".join(",".join(row) + "\n" for row in locations([str(i) for i in range(len(files))])))
    try:
        data = import_per_detector(paths, where)
    except DataError:
        return
    assert len(data.vd_ids) == len(files) and data.features.shape[:2] == (len(data.timestamps), len(files))
    assert (np.diff(data.timestamps) > 0).all() and not np.isinf(data.features).any()


@FUZZ
@given(text=st.lists(st.sampled_from(["1", "2", "x"]), max_size=4).flatmap(lambda ids: edited(locations(ids))))
def test_any_locations_csv_gives_positions_or_a_data_error(text, folder):
    path = folder / "loc_fuzz.csv"
    path.write_text(text)
    try:
        found = read_locations(path)
    except DataError:
        return
    assert all(abs(lat) <= 90 and abs(lon) <= 180 for lat, lon in found.values())
