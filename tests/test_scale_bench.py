"""``bench/scale.py`` and ``bench/tax.py``: the tables and ratios they print are computed from what they measured
(tiny sizes: no timing is checked, only that every stage is measured and every ratio follows from the table)."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scale import STAGES, gpu_samples, gpu_table, growth, ratios

ROOT = Path(__file__).resolve().parents[1]


def rows_of(text: str, columns: int) -> list[list[str]]:
    """The data rows of the markdown tables in ``text`` with ``columns`` columns (not their header rows)."""
    lines = text.splitlines()
    cells = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line, below in zip(lines, [*lines[1:], ""])
        if line.startswith("|") and not line.startswith("|---") and not below.startswith("|---")
    ]
    return [row for row in cells if len(row) == columns]


def test_growth_is_the_per_vd_value_at_the_largest_size_over_the_smallest():
    rows = [
        {"vds": 100, "pooling": "none", "stage": "train", "seconds": 2.0, "peak_mb": 10.0},
        {"vds": 400, "pooling": "none", "stage": "train", "seconds": 8.0, "peak_mb": 80.0},
        {"vds": 200, "pooling": "none", "stage": "train", "seconds": 100.0, "peak_mb": 1.0},  # neither end
    ]
    (found,) = growth(rows, [100, 400, 200])
    assert found == {"pooling": "none", "stage": "train", "time": 1.0, "memory": 2.0}
    assert "| none | train | 1.00 | 2.00 | NO |" in ratios(rows, [100, 400, 200])
    assert "no growth ratios" in ratios(rows[:1], [100])


def test_gpu_table_averages_the_samples_taken_while_each_run_trained():
    log = "2026/12/07 10:00:00.000, 10\n2026/12/07 10:00:01.000, 90\n2026/12/07 10:00:02.000, 70\n"
    log += "2026/12/07 10:00:03.500, 0\n2026/12/07 10:00:05.000, 40\n"
    samples = gpu_samples(log)
    start = samples[0][0]
    assert [busy for _, busy in samples] == [10, 90, 70, 0, 40] and samples[3][0] - start == pytest.approx(3.5)
    rows = [  # training from 1 s to 3 s, then from 4.5 s to 6 s, after the clock of the first sample
        {"vds": 716, "pooling": "none", "stage": "train", "seconds": 2.0, "ended": start + 3, "cuda_peak_mb": 812.4},
        {"vds": 716, "pooling": "none", "stage": "validate", "seconds": 9.0, "ended": start + 9},
        {"vds": 8600, "pooling": "none", "stage": "train", "seconds": 1.5, "ended": start + 6},
    ]
    found = rows_of(gpu_table(rows, samples), 5)
    assert found == [["716", "none", "80", "2", "812"], ["8600", "none", "40", "1", "0"]]


@pytest.mark.slow
def test_scale_bench_measures_every_stage_and_its_ratios(tmp_path):
    command = [sys.executable, "bench/scale.py", "--sizes", "20,40", "--steps", "800", "--batches", "2"]
    command += ["--val-batches", "1", "--batch-size", "4", "--poolings", "none,road_graph", "--workdir", str(tmp_path)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    measured = rows_of(out, 8)
    assert [(int(r[0]), r[1], r[2]) for r in measured] == [
        (vds, pooling, stage) for vds in (20, 40) for pooling in ("none", "road_graph") for stage in STAGES
    ]
    at = {}
    for vds, pooling, stage, seconds, peak, rate, ms_per_vd, kb_per_vd in measured:
        assert float(seconds) > 0 and float(peak) >= 0
        assert (rate != "") == (stage == "train")  # windows per second: the training stage's
        rounding = 0.0005 * 1000 / int(vds) + 0.0005  # seconds printed to 3 decimals, ms per VD too
        assert float(ms_per_vd) == pytest.approx(float(seconds) * 1000 / int(vds), abs=rounding)
        assert float(kb_per_vd) == pytest.approx(float(peak) * 1024 / int(vds), abs=0.5 * 1024 / int(vds) + 0.05)
        at[int(vds), pooling, stage] = float(ms_per_vd)
    growths = rows_of(out.split("per VD, 40 VDs over 20 VDs")[1], 5)
    assert [(r[0], r[1]) for r in growths] == [(p, s) for p in ("none", "road_graph") for s in STAGES]
    for pooling, stage, time, memory, within in growths:
        assert float(time) == pytest.approx(at[40, pooling, stage] / at[20, pooling, stage], rel=0.01, abs=0.01)
        assert math.isfinite(float(time)) and within == ("yes" if max(float(time), float(memory)) <= 1.3 else "NO")
    assert not list(tmp_path.iterdir())  # the generated files are gone


@pytest.mark.slow
def test_tax_bench_prints_framework_over_bare(tmp_path):
    command = [sys.executable, "bench/tax.py", "--sizes", "20", "--steps", "800", "--batches", "2", "--rounds", "1"]
    command += ["--batch-size", "4", "--workdir", str(tmp_path)]
    out = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    ((vds, bare, framework, ratio, within),) = rows_of(out, 5)
    assert int(vds) == 20 and float(bare) > 0 and float(framework) > 0
    assert float(ratio) == pytest.approx(float(framework) / float(bare), rel=0.02)
    assert within == ("yes" if float(ratio) <= 1.10 else "NO")
    assert re.search(r"target: framework / bare <= 1\.1", out)


TENSOR_OF_4_MB = "import core, os, torch; print(os.environ['THP_MEM_ALLOC_ENABLE'], torch.empty(4 << 20).data_ptr())"


@pytest.mark.skipif(sys.platform != "linux", reason="PyTorch's huge pages are Linux's")
@pytest.mark.parametrize(("given", "seen"), [(None, "1"), ("1", "1"), ("0", "0")])
def test_importing_core_puts_large_cpu_tensors_on_huge_pages_unless_the_environment_says_no(given, seen):
    """``import core`` turns PyTorch's ``THP_MEM_ALLOC_ENABLE`` on, and a value in the environment wins; with it on,
    PyTorch places a tensor of 2 MB or more at the start of a page, to advise the kernel to back it with huge
    pages (glibc's own allocator puts it 64 bytes in)."""
    env = {name: value for name, value in os.environ.items() if name != "THP_MEM_ALLOC_ENABLE"}
    if given is not None:
        env["THP_MEM_ALLOC_ENABLE"] = given
    command = [sys.executable, "-c", TENSOR_OF_4_MB]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    value, address = done.stdout.split()
    assert value == seen
    if seen == "1":
        assert int(address) % os.sysconf("SC_PAGESIZE") == 0
