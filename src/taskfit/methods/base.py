"""What a tuning method is: a config block plus a function that prepares a model for training.

A method module defines a pydantic config whose ``name`` field is a ``Literal`` (the discriminator of
the recipe's ``method`` union) and registers a :class:`Method` in :data:`METHODS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict

from taskfit.registry import Registry

if TYPE_CHECKING:
    import torch


class MethodConfig(BaseModel):
    """Base of every method's config block: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")
    name: str


@dataclass(frozen=True)
class Method:
    """A registered tuning method.

    Attributes:
        config_cls: the pydantic model of its ``method:`` block.
        apply: ``apply(model, cfg, head_names) -> model`` returns the model ready to train, with exactly
            the parameters the method trains left with ``requires_grad=True``.
        finalize: ``finalize(model, cfg) -> model`` returns a plain transformers model to save in HF
            format (e.g. LoRA merged into the weights).
        supports_dp: whether per-sample gradients are available (used by the privacy stage).
    """

    config_cls: type[MethodConfig]
    apply: Any
    finalize: Any
    description: str
    supports_dp: bool = True


METHODS: Registry[Method] = Registry("tuning method")


def count_trainable(model: torch.nn.Module) -> tuple[int, int]:
    """Return (trainable, total) parameter counts."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    return trainable, total
