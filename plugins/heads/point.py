"""Head ``point``: one number per VD and horizon step, trained by MAE; the default (``social_xlstm.PointHead``,
which every forecaster gets unless its recipe names another)."""

from __future__ import annotations

from social_xlstm import PointHead, hookimpl


@hookimpl
def register_plugins(register):
    register(PointHead)
