"""User-facing errors: each says what is wrong and where (file, table, key, dataset or VD)."""

from __future__ import annotations

import difflib


class SocialXLSTMError(Exception):
    """Base of every error caused by the user's input; the CLI prints it as one line, exit code 2."""


class RecipeError(SocialXLSTMError):
    """A recipe (or a --set override) is malformed, unknown or out of range."""


class PluginError(SocialXLSTMError):
    """A plugin cannot be found, loaded, registered or built."""


class DataError(SocialXLSTMError):
    """A data file is missing, unreadable or does not follow the schema."""


class TrainingError(SocialXLSTMError):
    """Training cannot go on (a non-finite loss, a checkpoint that does not match)."""


def closest(name: str, choices) -> str:
    """' (did you mean 'x'?)' when a choice is close to `name`, else ''."""
    choices = list(choices)
    match = [c for c in choices if name and c.startswith(name)] or difflib.get_close_matches(name, choices, n=1, cutoff=0.6)
    return f" (did you mean '{match[0]}'?)" if match else ""
