"""Data-parallel training under ``torchrun``: K processes that together take the same steps as one.

``setup`` reads torchrun's RANK / WORLD_SIZE / LOCAL_RANK and joins the process group (NCCL on CUDA, one GPU
per process; gloo on CPU); without torchrun, or with one process, it returns a ``Distributed`` that changes
nothing. ``trainer.batch_size`` is the global batch: rank r takes slice r of each one (``shard``) and the loss
is the masked mean over the whole global batch (``masked_mean``), so DDP's gradient average is exactly the
single-process gradient. Rank 0 alone prints, logs, writes files, validates and tests; the other ranks get
its results (``from_main``).
"""

from __future__ import annotations

import atexit
import os
import sys
from collections.abc import Callable
from typing import TypeVar

import attrs
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from core.errors import RecipeError, TrainingError
from core.recipe import Recipe
from core.training.metrics import masked_mean

T = TypeVar("T")


@attrs.frozen
class Distributed:
    """This process's place among ``world_size`` processes (1: a plain single-process run)."""

    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")  # where collectives run: this rank's GPU under NCCL

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def wrap(self, model: torch.nn.Module, compile: bool) -> torch.nn.Module:
        """``model`` in DistributedDataParallel (compiled after wrapping, if asked), for the training step."""
        ddp = DistributedDataParallel(model, device_ids=None if self.device.type == "cpu" else [self.device])
        return torch.compile(ddp) if compile else ddp

    def shard(self, order: torch.Tensor, batch_size: int) -> list[list[int]]:
        """This rank's part of each global batch of ``order``: slice ``rank`` of ``world_size`` equal slices.
        A short last batch goes whole to every rank (``masked_mean`` then counts it once)."""
        part = batch_size // self.world_size
        mine = slice(self.rank * part, (self.rank + 1) * part)
        return [(batch[mine] if len(batch) == batch_size else batch).tolist() for batch in order.split(batch_size)]

    def masked_mean(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``core.training.metrics.masked_mean`` of the global batch (e.g. the head's loss): the same value on every
        rank (so a non-finite loss is seen by all), and a gradient whose average over the ranks is the
        single-process gradient."""
        local = masked_mean(values, mask)
        if not self.enabled:
            return local
        count = mask.sum().to(local.dtype)
        sums = torch.stack([local.detach() * count.clamp_min(1.0), count])  # this rank's error sum, valid targets
        dist.all_reduce(sums)
        total = sums[1].clamp_min(1.0)
        scaled = local * count.clamp_min(1.0) * self.world_size / total
        return scaled + (sums[0] / total - scaled).detach()

    def any_signal(self, signum: int) -> int:
        """The stop signal any rank has received (0: none), so that all ranks stop at the same batch."""
        if not self.enabled:
            return signum
        flag = torch.tensor(signum, device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag)

    def finish(self) -> None:
        """Leave the process group together: a barrier, then each rank tears its group down (a rank that leaves
        while another still talks to it can abort that one's gloo threads)."""
        if self.enabled and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    def from_main(self, compute: Callable[[], T]) -> T:
        """``compute()`` run by rank 0 alone, its result handed to every rank."""
        if not self.enabled:
            return compute()
        box = [compute() if self.is_main else None]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]


class Silent:
    """What ranks other than 0 log to: any attribute, any call, nothing happens."""

    def __getattr__(self, name: str) -> Silent:
        return self

    def __call__(self, *args, **kwargs) -> None:
        return None


def setup(recipe: Recipe) -> Distributed:
    """Join torchrun's process group; a plain ``Distributed()`` without torchrun or with one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return Distributed()
    cfg = recipe.trainer
    if cfg.batch_size % world_size:
        raise RecipeError(
            f"{recipe.path}: [trainer] batch_size = {cfg.batch_size} is the global batch, split evenly over the "
            f"{world_size} processes (WORLD_SIZE): make it a multiple of {world_size}"
        )
    if not dist.is_available():
        raise TrainingError(f"torchrun started {world_size} processes, but this PyTorch build has no torch.distributed")
    device = torch.device("cpu")
    if cfg.device != "cpu" and torch.cuda.is_available():
        if ":" in cfg.device:
            raise RecipeError(
                f"{recipe.path}: [trainer] device = '{cfg.device}' under torchrun: use 'auto' or 'cuda' (each process "
                "takes the GPU of its LOCAL_RANK)"
            )
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        atexit.register(lambda: dist.is_initialized() and dist.destroy_process_group())  # after an error
    rank = dist.get_rank()
    if rank:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - only rank 0 prints; errors still reach stderr
    return Distributed(rank, world_size, device)
