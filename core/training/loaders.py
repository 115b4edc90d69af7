"""The batches a run trains and evaluates on.

Training batches come in an order that depends on (seed, epoch) only, so a resumed epoch can leave out the
batches it has done and repeat exactly the rest; each process takes its part of every global batch
(``Distributed.shard``). The loaders' own generators keep the global RNG untouched.
"""

from __future__ import annotations

import math

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from core.api import Collator
from core.data.windows import Prepared
from core.recipe import TrainerConfig
from core.training.distributed import Distributed


class Loaders:
    def __init__(
        self,
        prepared: Prepared,
        collator: Collator,
        cfg: TrainerConfig,
        seed: int,
        device: torch.device,
        dist: Distributed = Distributed(),
    ):
        self.prepared, self.collator, self.cfg = prepared, collator, cfg
        self.seed, self.device, self.dist = seed, device, dist
        self.train_windows = len(prepared.splits["train"])

    def batches_per_epoch(self) -> int:
        full = math.ceil(self.train_windows / self.cfg.batch_size)
        return min(full, self.cfg.max_batches_per_epoch or full)

    def updates_per_epoch(self) -> int:
        return math.ceil(self.batches_per_epoch() / self.cfg.accumulate)

    def samples(self, batch: int) -> int:
        """The windows in training batch ``batch`` (1-based) of an epoch, all processes together: the last one
        may be short."""
        return min(self.cfg.batch_size, self.train_windows - (batch - 1) * self.cfg.batch_size)

    def train(self, epoch: int, skip: int = 0) -> DataLoader:
        """An epoch's training batches, the first ``skip`` left out (a resumed epoch)."""
        generator = torch.Generator().manual_seed(self.seed * 1000 + epoch)
        permutation = torch.randperm(self.train_windows, generator=generator)
        return self.loader(
            self.prepared.splits["train"],
            batch_sampler=self.dist.shard(permutation[skip * self.cfg.batch_size :], self.cfg.batch_size),
        )

    def evaluate(self, split: str, stride: int = 1) -> DataLoader:
        """A split's batches in order, of ``eval_batch_size``; with ``stride`` k, every k-th window only."""
        dataset = self.prepared.splits[split]
        return self.loader(
            dataset if stride == 1 else Subset(dataset, range(0, len(dataset), stride)),
            batch_size=self.cfg.eval_batch_size,
        )

    def loader(self, dataset: Dataset, **batching) -> DataLoader:
        return batches(dataset, self.collator, self.cfg, self.device, self.seed, **batching)


def batches(
    dataset: Dataset, collator: Collator, cfg: TrainerConfig, device: torch.device, seed: int = 0, **batching
) -> DataLoader:
    """``dataset``'s windows collated into batches by ``collator`` (``batching``: a ``batch_size`` or a
    ``batch_sampler``), with ``cfg.num_workers`` workers, pinned for a GPU."""
    return DataLoader(
        dataset,
        **batching,
        collate_fn=collator,
        num_workers=cfg.num_workers,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(seed),
    )
