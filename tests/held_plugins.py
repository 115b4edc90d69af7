"""A plugin that lets a test catch runs in the middle: ``held_gru`` trains its first epoch, then, while the file
named by ``$HOLD_FILE`` exists, waits before each training batch (signals are still recorded meanwhile)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from social_xlstm import hookimpl
from tests.kit_plugins import GruEncoder


class HeldGruEncoder(GruEncoder):
    name = "held_gru"

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.validated = False  # a validation has run in this process: the first epoch is over

    def forward(self, inputs):
        if not self.training:
            self.validated = True
        elif self.validated:
            while Path(os.environ.get("HOLD_FILE", "")).is_file():
                time.sleep(0.05)
        return super().forward(inputs)


@hookimpl
def register_plugins(register):
    register(HeldGruEncoder)
