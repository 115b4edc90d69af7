"""CSV files as the importers read them: rows of strings, with errors naming the file."""

from __future__ import annotations

import csv
from pathlib import Path

from core.errors import DataError


def read_csv(path: str | Path) -> list[list[str]]:
    """The rows of a CSV file; blank lines at the end are dropped, blank lines inside are kept as ``[]`` (for a
    time series they would shift every later row, so the importers refuse them)."""
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
            while rows and not rows[-1]:
                rows.pop()
            return rows
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read: {error}") from None


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
