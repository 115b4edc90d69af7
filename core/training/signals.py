"""SIGINT/SIGTERM during a run or a study: deferred to a batch boundary while training, recorded between a study's
runs, at once during the final test. The first signal asks to stop; a second stops at once."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

from core.errors import Interrupted, stop_at_once

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: list[int] = []  # the signals a `recorded` block received: this process is stopping


@contextmanager
def deferred(record: Callable[[int], None]):
    """SIGINT/SIGTERM only call ``record(signum)``: the loop then saves ``last.pt`` at the next batch boundary and
    stops (``interrupted``); a second signal stops at once (KeyboardInterrupt). A process already asked to stop
    (``received()``: a study's worker signalled between runs) stops here, before training."""
    if stop := received():
        raise Interrupted(stop, "before the run trained (it is as it was)")
    with handling_signals(first_then_at_once(record)):
        yield


@contextmanager
def recorded():
    """SIGINT/SIGTERM inside the block only recorded (``received()``), for a study's worker to stop between runs and
    take no new one; a second signal stops at once. Forgotten when the block ends."""
    try:
        with handling_signals(first_then_at_once(_received.append)):
            yield
    finally:
        _received.clear()


def received() -> int:
    """The first signal a ``recorded`` block received (0: none)."""
    return _received[0] if _received else 0


def first_then_at_once(record: Callable[[int], None]):
    """A handler that passes the first SIGINT/SIGTERM to ``record`` and lets the next one stop at once."""

    def handler(signum, frame):
        record(signum)
        for s in STOP_SIGNALS:
            signal.signal(s, stop_at_once)

    return handler


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
    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield previous
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
