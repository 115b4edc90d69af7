"""One conformance check's outcome, with the number it measured."""

from __future__ import annotations

import math

import attrs

TOLERANCE = 1e-5  # forecasts that must agree, float32
BF16_LIMIT = 0.5  # a bf16-autocast forecast against the float32 one (z-scored units)


@attrs.frozen
class CheckResult:
    """``passed`` is None when the check does not apply to the plugin (``note`` says why)."""

    name: str
    passed: bool | None
    measure: str = ""
    value: float = math.nan
    limit: float = math.nan
    note: str = ""

    @property
    def status(self) -> str:
        return "SKIP" if self.passed is None else "PASS" if self.passed else "FAIL"

    def line(self) -> str:
        """``PASS  padding.batched     max|diff| 2.4e-07 (limit 1e-05)  note``."""
        measured = f"{self.measure} {self.value:.3g} (limit {self.limit:g})" if self.measure else ""
        return f"{self.status}  {self.name:<18} {measured:<40} {self.note}".rstrip()


def at_most(measure: str, value: float, limit: float, note: str = "", also: bool = True) -> CheckResult:
    """Passed when ``value <= limit`` (NaN fails) and ``also``; the runner fills in the name."""
    value = float(value)
    return CheckResult("", value <= limit and bool(also), measure, value, float(limit), note)


def skipped(note: str) -> CheckResult:
    return CheckResult("", None, note=note)


def gap(a, b, where=None) -> float:
    """max |a - b| (over ``where``), 0 for nothing to compare; NaN anywhere gives NaN."""
    diff = (a.float() - b.float()).abs()
    diff = diff if where is None else diff[where]
    return float(diff.max()) if diff.numel() else 0.0
