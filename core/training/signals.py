"""SIGINT/SIGTERM during a run: deferred to a batch boundary while training, at once during the final test."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from core.errors import Interrupted


@contextmanager
def deferred(record: Callable[[int], None]):
    """SIGINT/SIGTERM only call ``record(signum)``: the loop then saves ``last.pt`` at the next batch boundary and
    stops (``interrupted``). A second signal gets the previous handler (e.g. KeyboardInterrupt at once)."""

    def handler(signum, frame):
        record(signum)
        signal.signal(signum, previous[signum])

    with handling_signals(handler) as previous:
        yield


@contextmanager
def at_once(run_dir: Path):
    """During the final test a signal stops at once, saying what is saved and how to finish the run."""

    def handler(signum, frame):
        raise Interrupted(
            signum,
            f"during the final test; the training is finished and saved in {run_dir / 'last.pt'}; "
            f"resume with: python -m core.run --resume {run_dir} (it repeats the test)",
        )

    with handling_signals(handler):
        yield


def interrupted(signum: int, where: str, run_dir: Path) -> Interrupted:
    """The error a deferred signal ends the run with, once ``last.pt`` is saved."""
    return Interrupted(
        signum, f"{where}; saved {run_dir / 'last.pt'}; resume with: python -m core.run --resume {run_dir}"
    )


@contextmanager
def handling_signals(handler):
    """``handler`` for SIGINT and SIGTERM inside the block (main thread only), the previous handlers after it;
    yields the previous handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield {}
        return
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield previous
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
