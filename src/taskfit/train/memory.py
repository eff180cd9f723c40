"""Memory per process for a training run, by strategy (one process / DDP / FSDP) and method.

What is counted (bytes per process):

- weights: 4 B per parameter (fp32 master weights; bf16 autocast casts on the fly and keeps no second copy);
- gradients: 4 B per *trainable* parameter;
- AdamW state: 8 B per trainable parameter (two fp32 moments);
- DDP: every process holds all of the above plus gradient buckets (≈ another 4 B per trainable parameter);
- FSDP: every process holds 1/N of weights, gradients and AdamW state, plus the largest block gathered whole
  during its forward/backward (two blocks with prefetching);
- activations kept for backward, per transformer layer ≈ rows × length × hidden × (34 + 5 × heads × length /
  hidden) bytes in 16-bit (the estimate of Korthikanti et al., 2022, "Reducing Activation Recomputation in
  Large Transformer Models"), doubled for fp32; each process holds its slice of the global batch.

These are estimates: allocator caching, temporary buffers and the framework add 10–30 %. ``docs/scale.md``
tabulates them for the packaged models; ``tests/train/test_memory.py`` checks the state part against the
bytes a real model and optimizer hold after a step.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

Strategy = Literal["single", "ddp", "fsdp"]


@dataclass(frozen=True)
class ModelShape:
    """What the estimate needs to know about a model."""

    params: int  #: all parameters
    trainable: int  #: parameters the method trains (all for full fine-tuning; adapters + head for LoRA)
    layers: int
    hidden: int
    heads: int
    largest_block: int = 0  #: parameters of the biggest FSDP unit (a transformer layer; embeddings stay in the root)


@dataclass(frozen=True)
class MemoryEstimate:
    weights: float
    gradients: float
    optimizer: float
    buffers: float
    activations: float

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.buffers + self.activations

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "total": self.total}


def activation_bytes(shape: ModelShape, rows: int, length: int, half: bool = True) -> float:
    """Activations kept for backward by ``rows`` sequences of ``length`` tokens (see the module docstring)."""
    per_layer = rows * length * shape.hidden * (34 + 5 * shape.heads * length / shape.hidden)
    return per_layer * shape.layers * (1 if half else 2)


def estimate(shape: ModelShape, strategy: Strategy = "single", world: int = 1, batch: int = 32,
             length: int = 128, half: bool = True) -> MemoryEstimate:
    """Bytes per process for training ``shape`` with AdamW.

    Args:
        shape: the model's sizes.
        strategy: one process, DDP replicas or FSDP shards.
        world: number of processes (the global ``batch`` is split across them).
        batch: rows per global batch.
        length: tokens per row (padded length of a batch).
        half: bf16 autocast (activations in 16-bit) or fp32.
    """
    world = 1 if strategy == "single" else max(1, world)
    rows = -(-batch // world)  # this process's slice of the global batch
    acts = activation_bytes(shape, rows, length, half)
    weights, grads, adam = 4.0 * shape.params, 4.0 * shape.trainable, 8.0 * shape.trainable
    if strategy == "fsdp":
        gathered = 2 * 4.0 * shape.largest_block  # the unit being used and the one prefetched
        return MemoryEstimate(weights / world + gathered, grads / world, adam / world, 0.0, acts)
    buckets = 4.0 * shape.trainable if strategy == "ddp" and world > 1 else 0.0
    return MemoryEstimate(weights, grads, adam, buckets, acts)


def shape_of(model: Any) -> ModelShape:
    """Read a :class:`ModelShape` off a built (and method-applied) transformers model."""
    import torch

    cfg = getattr(model, "config", None)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    blocks = [sum(p.numel() for p in child.parameters()) for m in model.modules()
              if isinstance(m, torch.nn.ModuleList) for child in m]
    return ModelShape(params=params, trainable=trainable,
                      layers=int(getattr(cfg, "num_hidden_layers", 0) or len(blocks) or 1),
                      hidden=int(getattr(cfg, "hidden_size", 0) or 1),
                      heads=int(getattr(cfg, "num_attention_heads", 0) or 1),
                      largest_block=max(blocks, default=0))
