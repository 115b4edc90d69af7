"""Encoder ``stid``: STID (Shao et al., CIKM 2022, "Spatial-Temporal Identity: A Simple yet Effective Baseline").

Each VD's whole input window (values and observed flags over the ``history`` steps) is flattened into one
linear embedding, concatenated with learned embeddings of the VD, of the time-of-day slot and of the day of
week of the window's last input step, then passed through residual MLP layers (Linear-ReLU-Dropout-Linear +
input). The output is one state per VD, ``[B, M, E]`` with E the sum of the embedding sizes; the forecaster's
shared head maps it to the horizon. Layer-wise (its states ``[B, M, 1, E]``, one step): with ``[model] social``
a pooling acts on the embeddings (``every_step``) or between the MLP layers (``interleaved``). No recurrence: a few
matrix products per VD, whatever the history.

The calendar comes from the covariates (``DatasetSpec.covariate_names``): the time-of-day slot is recovered
from the sin/cos pair (``[data] time_of_day``; ``time_slots`` a day, by default the data's: 288 at 5 minutes, 96
at 15), the day from ``day_of_week`` (``[data] day_of_week``), a public holiday from ``holiday`` (``[data]
holidays``, with ``holiday_dim``); ``weekday_weekend`` keeps two day vectors instead of seven, for data too
short to hold every day of the week in its training part (METR-LA's first week: the test days' own vectors
would never be trained). ``calendar = "last_input"`` (STID's) embeds the calendar of the last input step;
``"target"`` embeds each of the H target steps' (known ahead: ``EncoderInput.future_covariates``) and maps the
H vectors, flattened, linearly to one of the same size, so that the state keeps its width and the forecaster's
shared head sees when each forecast step falls (a day or a holiday that starts within the horizon). Time
padding (``step_mask``) is zeroed and the window left-padded to ``history`` steps, so a short history is the
same input however the batch is padded.
"""

from __future__ import annotations

import math
from typing import Literal

import attrs
import torch
import torch.nn.functional as F
from attrs.validators import ge, gt, lt
from torch import nn

from social_xlstm import DatasetSpec, EncoderInput, LayerwiseEncoder, RecipeError, hookimpl

# embedding size key -> (covariates it reads, the [data] setting that adds them)
CALENDAR = {
    "time_of_day_dim": (("time_of_day_sin", "time_of_day_cos"), "time_of_day = true"),
    "day_of_week_dim": (("day_of_week",), "day_of_week = true"),
    "holiday_dim": (("holiday",), 'holidays = "<region>", e.g. "US-CA"'),
}


@attrs.frozen
class STIDConfig:
    embedding_dim: int = attrs.field(default=32, validator=gt(0))  # the flattened input window's embedding
    vd_embedding_dim: int = attrs.field(default=32, validator=ge(0))  # a learned vector per VD; 0 = none
    time_of_day_dim: int = attrs.field(default=32, validator=ge(0))  # a learned vector per time-of-day slot; 0 = none
    day_of_week_dim: int = attrs.field(default=32, validator=ge(0))  # a learned vector per day of week; 0 = none
    holiday_dim: int = attrs.field(default=0, validator=ge(0))  # a learned vector for holidays, one for other days
    calendar: Literal["last_input", "target"] = "last_input"  # whose calendar: the last input step's, the targets'
    weekday_weekend: bool = False  # two day vectors (Monday-Friday, Saturday-Sunday) instead of seven
    time_slots: int = attrs.field(default=0, validator=ge(0))  # per day; 0 = the data's (288 at 5 minutes, 96 at 15)
    num_layers: int = attrs.field(default=3, validator=ge(0))  # residual MLP layers
    dropout: float = attrs.field(default=0.15, validator=[ge(0.0), lt(1.0)])


class STIDEncoder(LayerwiseEncoder):
    """STID: the flattened window plus learned VD, time-of-day and day-of-week embeddings, through a residual MLP.

    Layer-wise with a single time step (the window's last), so the social modes pool between its MLP layers."""

    name = "stid"
    Config = STIDConfig
    honours_time_padding = True
    honours_vd_slots = True

    def __init__(self, config: STIDConfig, spec: DatasetSpec):
        super().__init__(config, spec)
        self.columns = {key: covariate_columns(spec, key, getattr(config, key)) for key in CALENDAR}
        self.window = nn.Linear(spec.history * 2 * spec.num_features, config.embedding_dim)
        self.vd = embedding(spec.num_vds, config.vd_embedding_dim)
        self.slots = time_slots(spec, config.time_slots)
        self.time_of_day = embedding(self.slots, config.time_of_day_dim)
        self.day_of_week = embedding(2 if config.weekday_weekend else 7, config.day_of_week_dim)
        self.holiday = embedding(2, config.holiday_dim)
        calendar = config.time_of_day_dim + config.day_of_week_dim + config.holiday_dim
        self.target_calendar = (  # the H target steps' calendar vectors, flattened, to one of the same size
            nn.Linear(spec.horizon * calendar, calendar) if config.calendar == "target" and calendar else None
        )
        self.num_layers = config.num_layers
        e = self.out_dim = config.embedding_dim + config.vd_embedding_dim + calendar
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Linear(e, e), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(e, e))
            for _ in range(config.num_layers)
        )

    def embed(self, inputs: EncoderInput) -> torch.Tensor:
        """The concatenated embeddings ``[B, M, 1, E]``: one state per VD, at the last input step."""
        b, m, t, _ = inputs.values.shape
        window = torch.cat([inputs.values, inputs.observed.to(inputs.values.dtype)], -1)  # [B, M, T, 2F]
        if inputs.step_mask is not None:
            window = window.masked_fill(~inputs.step_mask[..., None], 0.0)
        window = F.pad(window, (0, 0, self.spec.history - t, 0))  # left padding up to the full history
        parts = [self.window(window.flatten(2))]
        if self.vd is not None:
            parts.append(self.vd(inputs.vd_ids()))
        if self.target_calendar is None:
            steps = self.calendar(inputs.covariates[:, -1:])  # [B, 1, C] the last input step (always real)
            calendar = steps[:, 0]
        else:
            calendar = self.target_calendar(self.calendar(target_covariates(inputs)).flatten(1))  # from [B, H, C]
        parts.append(calendar[:, None].expand(b, m, -1))
        return torch.cat(parts, -1)[:, :, None]

    def calendar(self, covariates: torch.Tensor) -> torch.Tensor:
        """The time-of-day, day and holiday vectors ``[B, S, C]`` of the steps whose covariates are ``[B, S, K]``."""
        parts = []
        if self.time_of_day is not None:
            sin, cos = self.columns["time_of_day_dim"]
            parts.append(self.time_of_day(time_of_day_slot(covariates[..., sin], covariates[..., cos], self.slots)))
        if self.day_of_week is not None:
            (day,) = self.columns["day_of_week_dim"]
            days = covariates[..., day].round().long()  # Monday = 0
            parts.append(self.day_of_week((days >= 5).long() if self.config.weekday_weekend else days))
        if self.holiday is not None:
            (holiday,) = self.columns["holiday_dim"]
            parts.append(self.holiday(covariates[..., holiday].round().long()))
        return torch.cat(parts, -1) if parts else covariates[..., :0]

    def layer(self, index: int, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        return x + self.layers[index](x)

    def finish(self, x: torch.Tensor, inputs: EncoderInput) -> torch.Tensor:
        return x[:, :, 0]  # [B, M, E]


def time_of_day_slot(sin: torch.Tensor, cos: torch.Tensor, slots: int) -> torch.Tensor:
    """The slot (0 .. ``slots`` - 1) whose start is nearest the time of day whose angle has this sine and cosine."""
    fraction = torch.atan2(sin, cos) / (2 * math.pi) % 1.0
    return (fraction * slots).round().long() % slots


def time_slots(spec: DatasetSpec, slots: int) -> int:
    """The time-of-day slots to embed: ``slots``, or the data's slots per day for 0; more slots than the data
    has steps a day are refused (the vectors of the slots no step falls in would never be trained)."""
    if slots > spec.slots_per_day:
        raise RecipeError(
            f"encoder 'stid': time_slots = {slots} is finer than the data's steps ({spec.interval} s: "
            f"{spec.slots_per_day} a day), so {slots - spec.slots_per_day} time-of-day vectors would never be trained; "
            f"leave time_slots out (0: the data's {spec.slots_per_day}) or give at most {spec.slots_per_day}"
        )
    return slots or spec.slots_per_day


def target_covariates(inputs: EncoderInput) -> torch.Tensor:
    """The covariates of the target steps ``[B, H, K]``, which ``calendar = "target"`` needs."""
    if inputs.future_covariates is None:
        raise RecipeError(
            "encoder 'stid' reads the calendar of the target steps (calendar = \"target\") but the batch has no "
            "future_covariates: its collator must pass its windows' future_covariates on"
        )
    return inputs.future_covariates


def covariate_columns(spec: DatasetSpec, key: str, dim: int) -> tuple[int, ...]:
    """Where the covariates that embedding ``key`` reads are (none when ``dim`` is 0); their absence is an error
    naming the recipe key that adds them."""
    names, setting = CALENDAR[key]
    if not dim:
        return ()
    missing = [name for name in names if name not in spec.covariate_names]
    if missing:
        what = key.removesuffix("_dim").replace("_", " ").replace("holiday", "holidays")
        raise RecipeError(
            f"encoder 'stid' embeds {what} ({key} = {dim}) but the data has no "
            f"{' / '.join(missing)} covariate; set [data] {setting} (or [encoder] {key} = 0)"
        )
    return tuple(spec.covariate_names.index(name) for name in names)


def embedding(count: int, dim: int) -> nn.Embedding | None:
    """``count`` learned vectors of size ``dim`` (Xavier-uniform, as in STID), or None for ``dim`` = 0."""
    if not dim:
        return None
    table = nn.Embedding(count, dim)
    nn.init.xavier_uniform_(table.weight)
    return table


@hookimpl
def register_plugins(register):
    register(STIDEncoder)
