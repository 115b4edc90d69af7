"""The conformance kit: a plugin checked against its contract (``social_xlstm``'s docstrings) on small generated
data, in a few seconds on a CPU.

In a plugin package's tests, one call per plugin raises an ``AssertionError`` listing the checks it fails::

    from social_xlstm.testing import check_plugin

    def test_gru_passes_the_kit():
        check_plugin("encoder", "gru")

``run_checks`` returns every check with the number it measured; ``python -m core.plugins check NAME`` prints
them. Forecasts must agree within ``TOLERANCE`` (float32); padding must get exactly zero gradient. A check that
does not apply (e.g. padding the plugin does not declare it honours) is skipped, saying why.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from core.host.options import build_config
from core.host.registry import PluginChoice, Registry
from social_xlstm.testing.collator import CollatorChecks
from social_xlstm.testing.data import kit_spec
from social_xlstm.testing.encoder import EncoderChecks
from social_xlstm.testing.head import HeadChecks
from social_xlstm.testing.pooling import PoolingChecks
from social_xlstm.testing.result import TOLERANCE, CheckResult

__all__ = [
    "TOLERANCE",
    "CheckResult",
    "check_collator",
    "check_encoder",
    "check_head",
    "check_plugin",
    "check_pooling",
    "run_checks",
]

KITS = {"encoder": EncoderChecks, "pooling": PoolingChecks, "collator": CollatorChecks, "head": HeadChecks}


def run_checks(
    kind: str, name: str, config: Mapping[str, Any] | None = None, modules: Iterable[str] = ()
) -> list[CheckResult]:
    """Every check of the ``kind`` plugin ``name`` (registered by a built-in, an installed package's entry point
    or one of ``modules``), built with ``config`` (its recipe table without ``name``; default: its defaults)."""
    registry = Registry.default(modules, origin="kit")
    info = registry.get(kind, name)
    choice = PluginChoice(name, build_config(info.cls.Config, dict(config or {}), f"kit: [{kind}] ({name})"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give, and one thread is reproducible
    try:
        with torch.random.fork_rng(devices=[]):
            try:
                checks = KITS[kind](registry, choice, kit_spec()).checks()
            except Exception as error:  # noqa: BLE001 - the plugin cannot even be built: that is the one result
                return [CheckResult("build", False, note=_raised(error))]
            return [_run(check_name, check) for check_name, check in checks]
    finally:
        torch.set_num_threads(threads)


def check_plugin(
    kind: str, name: str, config: Mapping[str, Any] | None = None, modules: Iterable[str] = ()
) -> list[CheckResult]:
    """``run_checks``, raising an ``AssertionError`` that lists the failed checks; returns the results."""
    results = run_checks(kind, name, config, modules)
    failed = [result.line() for result in results if result.passed is False]
    if failed:
        raise AssertionError(
            f"{kind} '{name}' fails {len(failed)} of {len(results)} conformance checks:\n" + "\n".join(failed)
        )
    return results


check_encoder = functools.partial(check_plugin, "encoder")
check_pooling = functools.partial(check_plugin, "pooling")
check_collator = functools.partial(check_plugin, "collator")
check_head = functools.partial(check_plugin, "head")


def _run(name: str, check: Callable[[], CheckResult]) -> CheckResult:
    try:
        result = check()
    except Exception as error:  # noqa: BLE001 - a plugin that raises fails the check, the others still run
        return CheckResult(name, False, note=_raised(error))
    return CheckResult(name, result.passed, result.measure, result.value, result.limit, result.note)


def _raised(error: Exception) -> str:
    return f"raised {type(error).__name__}: {' '.join(str(error).split())}"
