"""``python -m core.plugins new KIND NAME --out DIR``: an installable plugin package that passes the kit.

DIR gets ``setup.cfg`` (the ``social_xlstm`` entry point), ``pyproject.toml``, the module ``social_xlstm_NAME.py``
with a working plugin, ``tests/test_social_xlstm_NAME.py`` running the conformance kit on it, and a README.
"""

from __future__ import annotations

import re
from pathlib import Path
from string import Template

from core.api import PLUGIN_KINDS
from core.errors import PluginError
from core.host.registry import Registry

PLUGINS = {
    "encoder": '''"""Encoder ``$name``: a GRU shared by every VD (VDs folded into the batch), exact under left time
padding."""

import attrs
from attrs.validators import gt
from torch import nn

from social_xlstm import Encoder, EncoderInput, causal_over_padding, hookimpl


@attrs.frozen
class ${Class}Config:
    hidden_size: int = attrs.field(default=32, validator=gt(0))  # E, the size of the states


class ${Class}Encoder(Encoder):
    name = "$name"
    Config = ${Class}Config  # validates the recipe's [encoder] table
    honours_time_padding = True  # causal_over_padding: left padding changes nothing
    honours_vd_slots = True  # no per-VD weights: any VD may sit in any slot

    def __init__(self, config, spec):
        super().__init__(config, spec)
        self.out_dim = config.hidden_size  # required: the size E of the states
        self.gru = nn.GRU(EncoderInput.num_features(spec), config.hidden_size, batch_first=True)

    def forward(self, inputs: EncoderInput):  # M VD slots -> states [B, M, T, E]
        x = inputs.features()  # [B, M, T, 2F + K]: values, observed flags, covariates
        b, m, t, f = x.shape
        step_mask = None if inputs.step_mask is None else inputs.step_mask.reshape(b * m, t)
        states = causal_over_padding(lambda s: self.gru(s)[0], x.reshape(b * m, t, f), step_mask)
        return states.reshape(b, m, t, -1)


@hookimpl
def register_plugins(register):
    register(${Class}Encoder)
''',
    "pooling": '''"""Pooling ``$name``: the mean state of every other present VD (no positions needed)."""

import attrs
import torch

from social_xlstm import Pooling, hookimpl


@attrs.frozen
class ${Class}Config:
    scale: float = 1.0


class ${Class}Pooling(Pooling):
    name = "$name"
    Config = ${Class}Config  # validates the recipe's [pooling] table
    uses_positions = False  # True: the data must give every VD a position (spec.positions_xy)

    def forward(self, hidden: torch.Tensor, node_mask: torch.Tensor) -> torch.Tensor:  # [B, N, E], [B, N] -> [B, N, E]
        w = node_mask.to(hidden.dtype)[..., None]  # an absent VD counts for nothing and gets no gradient
        others = (w.sum(1, keepdim=True) - w).clamp_min(1.0)  # no other VD present: zeros, not NaN
        return self.config.scale * ((hidden * w).sum(1, keepdim=True) - hidden * w) / others


@hookimpl
def register_plugins(register):
    register(${Class}Pooling)
''',
    "collator": '''"""Collator ``$name``: each sample's active VDs first, padded to the batch's largest active set;
time kept whole."""

import torch

from social_xlstm import Batch, Collator, Windows, hookimpl


class ${Class}Collator(Collator):
    name = "$name"  # no options: the default Config
    layout = "centralized"  # its batches are Batch objects
    uses_vd_slots = True  # M <= N VD slots, vd_index names the VD in each; pads_time stays False

    def __call__(self, windows: Windows) -> Batch:
        active = windows.active  # [B, N]: the VD has a history in the window
        b, slots = active.shape[0], max(int(active.sum(1).max()), 1)
        vd_index = torch.argsort((~active).to(torch.uint8), dim=1, stable=True)[:, :slots]  # active VDs first

        def take(x: torch.Tensor) -> torch.Tensor:  # [B, T, N, ...] -> [B, T, M, ...]
            index = vd_index.view(b, 1, slots, *[1] * (x.dim() - 3))
            return x.gather(2, index.expand(b, x.shape[1], slots, *x.shape[3:]))

        step_mask = windows.step_mask()  # None for fixed-length windows
        return Batch(
            values=take(windows.values),
            observed=take(windows.observed),
            covariates=windows.covariates,
            target=windows.target,  # targets and forecasts keep all N VDs
            target_mask=windows.target_mask,
            node_mask=active.gather(1, vd_index),
            start=windows.start,
            positions_xy=self.spec.positions_xy,
            step_mask=None if step_mask is None else take(step_mask),
            vd_index=vd_index,
            future_covariates=windows.future_covariates,  # the calendar of the target steps, passed on unchanged
            target_profile=windows.target_profile,
        )


@hookimpl
def register_plugins(register):
    register(${Class}Collator)
''',
    "head": '''"""Head ``$name``: a Gaussian per VD and horizon step (a mean and a scale), trained by its negative
log-likelihood; its quantiles are the Gaussian's, its point forecast the mean."""

import math

import torch
from torch import nn

from social_xlstm import DistributionHead, hookimpl


class ${Class}Head(DistributionHead):  # Config: [head] levels and calibrate (DistributionConfig)
    name = "$name"

    def __init__(self, config, spec, dim):
        super().__init__(config, spec, dim)  # self.horizon, self.levels, the calibration offsets
        self.linear = nn.Linear(dim, 2 * spec.horizon)

    def forward(self, features: torch.Tensor) -> torch.Tensor:  # [B, N, D] -> [B, H, N, 2]
        b, n, _ = features.shape
        mean, raw = self.linear(features).reshape(b, n, self.horizon, 2).transpose(1, 2).unbind(-1)
        return torch.stack([mean, nn.functional.softplus(raw) + 1e-3], -1)  # a scale that never reaches 0

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # elementwise [B, H, N]
        mean, scale = output.unbind(-1)
        return scale.log() + 0.5 * ((target - mean) / scale) ** 2 + 0.5 * math.log(2 * math.pi)

    def raw_quantiles(self, output: torch.Tensor) -> torch.Tensor:  # [B, H, N, L], ascending
        z = math.sqrt(2) * torch.erfinv(2 * self.level_values.to(output.dtype) - 1)  # standard normal quantiles
        return output[..., :1] + output[..., 1:] * z


@hookimpl
def register_plugins(register):
    register(${Class}Head)
''',
}

FILES = {
    "setup.cfg": """[metadata]
name = $distribution
version = 0.1.0
description = The Social-xLSTM $kind '$name'

[options]
python_requires = >=3.11
py_modules = $module
install_requires =
    social-xlstm

[options.entry_points]
social_xlstm =
    $name = $module

[options.extras_require]
test =
    pytest>=7
""",
    "pyproject.toml": """[build-system]
requires = ["setuptools>=64", "wheel"]  # 64: editable installs (pip install -e) from setup.cfg alone
build-backend = "setuptools.build_meta"
""",
    "tests/test_$module.py": '''"""The Social-xLSTM conformance kit on this package's $kind '$name', found through its
entry point."""

from social_xlstm.testing import check_plugin


def test_${name}_passes_the_kit():
    check_plugin("$kind", "$name")
''',
    "README.md": """# $distribution

The Social-xLSTM $kind `$name` (`$module.py`), registered through the `social_xlstm` entry point.

    pip install -e .                      # then every recipe can use it:

```toml
[$kind]
name = "$name"
```

    python -m core.plugins                # lists it, with its source and options
    python -m core.plugins check $name    # the conformance kit, one line per check
    pytest tests                          # the same checks, in your CI

Edit `$module.py`; the contract is in the docstrings of `social_xlstm.$Base` and the "Writing a plugin"
page of Social-xLSTM's docs (`docs/writing-a-plugin.md`). Keep the capability flags true to what the code does: the kit
checks what they declare.
""",
}


def plugin_module(kind: str, name: str) -> str:
    """The source of the scaffold's ``kind`` plugin called ``name``."""
    return Template(PLUGINS[kind]).substitute(name=name, Class=name.title().replace("_", ""))


def write_package(kind: str, name: str, out: Path, registry: Registry) -> list[Path]:
    """Write the package for the ``kind`` plugin ``name`` into ``out`` (new or empty); returns the files."""
    if kind not in PLUGIN_KINDS:
        raise PluginError(f"new: unknown kind '{kind}'; one of: {', '.join(PLUGIN_KINDS)}")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise PluginError(
            f"new: plugin name '{name}' must be lower case letters, digits and '_', starting with a letter"
        )
    if name in registry.names(kind):
        raise PluginError(
            f"new: {kind} '{name}' is already registered by {registry.get(kind, name).source}; pick another name"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise PluginError(f"new: --out {out} exists and is not an empty directory")
    module = f"social_xlstm_{name}"
    values = {
        "name": name,
        "kind": kind,
        "module": module,
        "distribution": module.replace("_", "-"),
        "Base": PLUGIN_KINDS[kind].__name__,
    }
    files = {f"{module}.py": plugin_module(kind, name)} | {
        Template(path).substitute(values): Template(text).substitute(values) for path, text in FILES.items()
    }
    written = []
    for path, text in files.items():
        target = out / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        written.append(target)
    return written
