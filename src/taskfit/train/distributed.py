"""Data-parallel training across processes started by ``torchrun`` (``taskfit train --nproc N``).

Every process builds the same model and the same global batch order (a pure function of seed and epoch);
each one runs forward/backward on its own slice of every global batch and DDP averages the gradients. The
loss of a slice is scaled by ``its share of the batch's loss units × world size`` (rows; target tokens for
token-mean losses such as NER and generation: ``Task.loss_units``), so the averaged gradient equals the
single-process gradient of the same global batch.
Only rank 0 writes files (checkpoints, metrics, the model, the report); every rank evaluates the same
validation split, so early-stopping decisions agree without communication.

With ``train.strategy: fsdp`` the model is sharded instead of replicated (FSDP2 ``fully_shard`` on every
block of each ``nn.ModuleList`` and on the root): each rank keeps 1/N of the weights, gradients and AdamW
state. Checkpoints then hold *full* (unsharded) state dicts keyed by parameter name, gathered
collectively, so a run resumes under any number of processes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, TypeVar

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


def shard(idx: np.ndarray, info: DistInfo, units: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """This rank's rows of a global batch and the factor its mean loss is multiplied by.

    ``units[i]`` is how many items row ``idx[i]`` adds to the loss's mean (1 for row-mean losses, target
    tokens for token-mean ones; see ``Task.loss_units``): the slice's weight is its share of the batch's
    units × world size, so the ranks' averaged gradient equals the one-process gradient. A batch with fewer
    rows than processes still gives every rank a row (DDP needs every rank's backward); the surplus ranks
    get weight 0.
    """
    if not info.enabled:
        return idx, 1.0
    mine = idx[info.rank :: info.world]
    if len(mine) == 0:
        return idx[:1], 0.0
    if units is None:
        return mine, len(mine) / len(idx) * info.world
    total = float(np.sum(units))
    return mine, float(np.sum(units[info.rank :: info.world])) / total * info.world if total else 0.0


def wrap(model: torch.nn.Module, info: DistInfo, device: torch.device, strategy: str = "ddp") -> torch.nn.Module:
    """DDP around ``model`` when running distributed (the unwrapped model keeps its parameter names), or,
    with ``strategy="fsdp"``, ``model`` itself sharded in place (returned as is)."""
    if not info.enabled:
        return model
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        # Blocks of every ModuleList (transformer layers) are the units gathered one at a time in forward.
        blocks = [child for module in model.modules() if isinstance(module, torch.nn.ModuleList)
                  for child in module if any(True for _ in child.parameters())]
        for block in blocks:
            fully_shard(block)
        fully_shard(model)
        return model
    from torch.nn.parallel import DistributedDataParallel

    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=False)


def is_sharded(model: torch.nn.Module) -> bool:
    """True when ``model``'s parameters are FSDP shards (DTensors)."""
    from torch.distributed.tensor import DTensor

    return any(isinstance(p, DTensor) for p in model.parameters())


def _full_options(**kw: Any) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_state(model: torch.nn.Module, keys: set[str] | None = None) -> dict[str, torch.Tensor]:
    """The unsharded state dict (only ``keys`` if given) on rank 0, on the CPU; ``{}`` on the other ranks.
    Collective: every rank must call it."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    state: dict[str, Any] = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    return {k: v for k, v in state.items() if keys is None or k in keys}


def load_full_state(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load a full (possibly partial: trainable-only) state dict into a sharded model. Collective."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    set_model_state_dict(model, dict(state), options=_full_options(strict=False))  # type: ignore[arg-type]


def optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer state keyed by parameter name, unsharded, on rank 0. Collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))


def load_optimizer_state(model: torch.nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load a name-keyed full optimizer state (from :func:`optimizer_state`) into a plain or sharded model."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, state, options=_full_options())
