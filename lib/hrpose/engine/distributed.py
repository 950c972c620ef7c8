"""Runs launched by torchrun: the process group, per-process data shards, gathering results."""

from __future__ import annotations

import contextlib
import datetime
import itertools
import logging
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler, Sampler

logger = logging.getLogger(__name__)

# Rank 0 evaluates (COCO eval of a full val split can take minutes) while the other ranks wait
# in the next collective; the default 10-minute limit would kill a long evaluation.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=60)


def launched_by_torchrun() -> bool:
    """Whether torchrun (or torch.distributed.run) started this process: it sets RANK and
    WORLD_SIZE for env:// initialisation."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def world_size() -> int:
    """Processes in the run: the process group's size, else torchrun's WORLD_SIZE, else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", 1)) if launched_by_torchrun() else 1


def rank() -> int:
    """This process's rank: the process group's, else torchrun's RANK, else 0."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", 0)) if launched_by_torchrun() else 0


def local_rank() -> int:
    """This process's index on its node (torchrun's LOCAL_RANK; 0 without torchrun)."""
    return int(os.environ.get("LOCAL_RANK", 0)) if launched_by_torchrun() else 0


def is_main_process() -> bool:
    """Rank 0 logs to the console and files, writes checkpoints and evaluates."""
    return rank() == 0


def backend_for(device: torch.device) -> str:
    """NCCL between GPUs, Gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


@contextlib.contextmanager
def distributed_session(device: torch.device) -> Iterator[None]:
    """Join torchrun's process group (env://) for the body; a plain `python` run joins nothing.

    Re-entrant: inside a session that is already open (tools/train.py, then train()) it does
    nothing, and only the session that opened the group closes it.
    """
    opened = False
    if launched_by_torchrun() and not dist.is_initialized():
        dist.init_process_group(backend_for(device), init_method="env://",
                                timeout=COLLECTIVE_TIMEOUT)
        opened = True
        logger.info("process %d of %d (%s, %s)", dist.get_rank(), dist.get_world_size(),
                    backend_for(device), device)
    try:
        yield
    finally:
        if opened:
            dist.destroy_process_group()


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """The model in DistributedDataParallel when the run has several processes, else as it is.

    DDP averages gradients over the processes, so a step on B images per process equals a
    one-process step on the whole batch (up to BatchNorm, see MODEL.SYNC_BN).
    """
    if world_size() == 1:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The bare model inside a DDP wrapper: its state dict has no 'module.' prefix."""
    return model.module if isinstance(model, DistributedDataParallel) else model


class TrainSampler(DistributedSampler):
    """DistributedSampler that can start an epoch part-way through (a resumed run).

    One process gets the whole seeded shuffle; N processes get every N-th index of the same
    shuffle, so the i-th batches of all ranks together are the i-th batch of a one-process run
    with N times the batch. skip(n) drops this rank's first n indices of the current epoch.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, shuffle: bool, seed: int):
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle,
                         seed=seed, drop_last=False)
        self.skipped = 0

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.skipped = 0

    def skip(self, num_indices: int) -> None:
        """Start the current epoch after this rank's first num_indices indices."""
        self.skipped = min(num_indices, self.num_samples)

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skipped, None)

    def __len__(self) -> int:
        return self.num_samples - self.skipped


class ShardSampler(Sampler[int]):
    """Indices rank, rank + N, rank + 2N, ...: each test sample on exactly one process (no
    padding, unlike DistributedSampler, so gathered results hold every sample once)."""

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int):
        self.num_samples = len(dataset)
        self.num_replicas = num_replicas
        self.rank = rank

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.num_samples, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.num_samples, self.num_replicas))


def all_reduce_mean(values: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of values over all processes (values itself in a one-process run)."""
    if world_size() == 1:
        return values
    values = values.clone()
    # Gloo has no AVG reduction: sum, then divide.
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world_size()


def gather_to_main(obj) -> list | None:
    """Every process's obj, in rank order, on rank 0 (None on the others)."""
    if world_size() == 1:
        return [obj]
    gathered = [None] * world_size() if is_main_process() else None
    dist.gather_object(obj, gathered, dst=0)
    return gathered


def broadcast_from_main(obj):
    """Rank 0's obj on every process."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
