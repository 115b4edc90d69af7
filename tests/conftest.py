from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

from core.api import DatasetSpec
from core.data import write_hdf5
from core.data.synthetic import generate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def small_data():
    """Four days of the synthetic network (36 VDs, 3 features)."""
    return generate(seed=0, days=4)


@pytest.fixture(scope="session")
def small_h5(small_data, tmp_path_factory) -> Path:
    return write_hdf5(small_data, tmp_path_factory.mktemp("data") / "small.h5")


@pytest.fixture
def write_recipe(tmp_path):
    """Write a recipe from TOML text (dedented) and return its path."""

    def write(text: str, name: str = "recipe.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write


@pytest.fixture
def one_thread():
    """Torch on one thread for the test (bit-identical floats across runs, faster on a busy 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def float64():
    """Modules and tensors built in the test are float64: two computations of the same values in other batch shapes,
    chunks or orders (other kernels, other summation orders on every CPU) agree to ~1e-15 relative, so an equivalence
    test can ask for 1e-10 on any machine, where float32 differs by a CPU-dependent ~1e-6."""
    dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(dtype)


F64 = {"rtol": 1e-10, "atol": 1e-10}  # assert_close's tolerances for float64 equivalence tests


def make_spec(
    n: int = 5, features: int = 1, positions: torch.Tensor | None = None, history: int = 6, horizon: int = 3
) -> DatasetSpec:
    return DatasetSpec(
        vd_ids=tuple(f"vd{i}" for i in range(n)),
        feature_names=("speed",) + tuple(f"f{i}" for i in range(features - 1)),
        num_covariates=2,
        history=history,
        horizon=horizon,
        positions_xy=positions,
    )


def registry_with(*classes: type):
    """The default registry plus ``classes``, registered by a module-like object ``test module``."""
    from core.host.registry import Registry
    from social_xlstm import hookimpl

    class Module:
        @staticmethod
        @hookimpl
        def register_plugins(register):
            for cls in classes:
                register(cls)

    registry = Registry.default()
    registry.add_module(Module, "test module")
    return registry
