"""Frozen backbone ("linear probe"): only the task head trains.

The cheapest method: the optimiser holds state for a few thousand parameters, and the backbone's
activations need no gradient. Use a larger learning rate (``train.lr: 1e-3`` or so).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from taskfit.methods.base import METHODS, Method, MethodConfig

if TYPE_CHECKING:
    import torch


class FrozenConfig(MethodConfig):
    """Freeze the pretrained backbone and train the task head only."""

    name: Literal["frozen"] = Field("frozen", description="The method's registry name.")
    train_layer_norm: bool = Field(
        False, description="Also train the backbone's LayerNorm weights (a few thousand parameters)."
    )


def _apply(model: torch.nn.Module, cfg: FrozenConfig, head_names: list[str]) -> torch.nn.Module:
    for name, p in model.named_parameters():
        is_head = any(name.startswith(h) for h in head_names)
        is_norm = cfg.train_layer_norm and "LayerNorm" in name
        p.requires_grad_(is_head or is_norm)
    return model


def _finalize(model: torch.nn.Module, cfg: FrozenConfig) -> torch.nn.Module:
    return model


METHODS.register("frozen")(Method(FrozenConfig, _apply, _finalize, "frozen backbone: only the head trains"))
