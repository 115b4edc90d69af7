"""User-facing errors: each says what is wrong and where (file, table, key, dataset or VD)."""

from __future__ import annotations

import difflib
import signal
import sys
import threading
from collections.abc import Callable


class SocialXLSTMError(Exception):
    """Base of every error caused by the user's input; the CLI prints it as one line, exit code 2."""

    exit_code = 2


class RecipeError(SocialXLSTMError):
    """A recipe (or a --set override) is malformed, unknown or out of range."""


class PluginError(SocialXLSTMError):
    """A plugin cannot be found, loaded, registered or built."""


class DataError(SocialXLSTMError):
    """A data file is missing, unreadable or does not follow the schema."""


class TrainingError(SocialXLSTMError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not match)."""


class CompareError(SocialXLSTMError):
    """A folder given to compare is not a finished run directory (or its files are unreadable)."""


class Stop(KeyboardInterrupt):
    """SIGINT or SIGTERM stopping a command at once: a KeyboardInterrupt for either (``stop_at_once``)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def stop_at_once(signum: int, frame) -> None:
    """A signal handler: SIGTERM (or SIGINT) raises ``Stop`` where the program is, as SIGINT's KeyboardInterrupt."""
    raise Stop(signum)


class Interrupted(SocialXLSTMError):
    """SIGINT or SIGTERM stopped training after a resumable checkpoint; exit code 128 + the signal number."""

    def __init__(self, signum: int, message: str):
        super().__init__(f"interrupted by {signal.Signals(signum).name} {message}")
        self.exit_code = 128 + signum


def run_cli(body: Callable[[], int], debug: bool = False) -> int:
    """Run a command; an error becomes one ``error: ...`` line on stderr (the traceback only with ``debug``).

    Exit codes: 2 for bad input, 1 for anything unforeseen, 128 + N after signal N. SIGTERM stops the command as
    SIGINT does (where SIGTERM has its default action).
    """
    main = threading.current_thread() is threading.main_thread()
    term = signal.getsignal(signal.SIGTERM) if main else None
    if term == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, stop_at_once)
    try:
        return body()
    except Interrupted as stop:
        print(stop, file=sys.stderr)
        return stop.exit_code
    except SocialXLSTMError as error:
        if debug:
            raise
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as stop:
        signum = getattr(stop, "signum", signal.SIGINT)
        print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum
    except Exception as error:  # noqa: BLE001 - a bug or an unforeseen failure: still one line
        if debug:
            raise
        print(
            f"error: {type(error).__name__}: {_one_line(error)} (unexpected; rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        if term == signal.SIG_DFL:
            signal.signal(signal.SIGTERM, term)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def closest(name: str, choices) -> str:
    """' (did you mean 'x'?)' when a choice is close to `name`, else ''."""
    choices = list(choices)
    match = [c for c in choices if name and c.startswith(name)] or difflib.get_close_matches(
        name, choices, n=1, cutoff=0.6
    )
    return f" (did you mean '{match[0]}'?)" if match else ""
