"""Where and in which precision a model runs: ``[trainer] device`` and ``precision``."""

from __future__ import annotations

import torch

from core.errors import TrainingError

# [trainer] precision -> the autocast dtype (None: full float32)
AUTOCAST = {"32": None, "bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}


def resolve_device(name: str) -> torch.device:
    """``auto`` (the GPU if there is one), ``cpu``, ``cuda`` or ``cuda:K``; CUDA where there is none is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise TrainingError(
            f"[trainer] device = '{name}' but CUDA is not available on this machine; use 'auto' or 'cpu'"
        )
    return torch.device(name)
