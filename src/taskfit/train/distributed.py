"""Data-parallel training across processes started by ``torchrun`` (``taskfit train --nproc N``).

Every process builds the same model and the same global batch order (a pure function of seed and epoch);
each one runs forward/backward on its own slice of every global batch and DDP averages the gradients. The
loss of a slice is scaled by ``rows in slice / rows in global batch × world size``, so the averaged gradient
equals the single-process gradient of the same global batch for per-example-mean losses (classification,
regression, retrieval rows); token-mean losses (NER, generation) are weighted by rows, not tokens.
Only rank 0 writes files (checkpoints, metrics, the model, the report); every rank evaluates the same
validation split, so early-stopping decisions agree without communication.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup() -> DistInfo:
    """Join the process group when started by torchrun (``WORLD_SIZE`` > 1); a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def current() -> DistInfo:
    """The job layout of an initialised process group (single process when there is none)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return DistInfo()


def barrier(info: DistInfo) -> None:
    if info.enabled:
        import torch.distributed as dist

        dist.barrier()


def broadcast(value: T, info: DistInfo) -> T:
    """Rank 0's ``value`` on every rank (picklable objects)."""
    if not info.enabled:
        return value
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shard(idx: np.ndarray, info: DistInfo) -> tuple[np.ndarray, float]:
    """This rank's rows of a global batch and the factor its mean loss is multiplied by.

    A batch with fewer rows than processes still gives every rank a row (DDP needs every rank's
    backward); the surplus ranks get weight 0.
    """
    if not info.enabled:
        return idx, 1.0
    mine = idx[info.rank :: info.world]
    if len(mine) == 0:
        return idx[:1], 0.0
    return mine, len(mine) / len(idx) * info.world


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device) -> torch.nn.Module:
    """DDP around ``model`` when running distributed (the unwrapped model keeps its parameter names)."""
    if not info.enabled:
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)
