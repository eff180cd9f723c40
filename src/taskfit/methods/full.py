"""Full fine-tuning: every weight of the backbone and the head is trained."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from taskfit.errors import ConfigError
from taskfit.methods.base import METHODS, Method, MethodConfig

if TYPE_CHECKING:
    import torch


class FullConfig(MethodConfig):
    """Train all parameters. Best accuracy, largest optimiser state (about 3× the weights in memory)."""

    name: Literal["full"] = Field("full", description="The method's registry name.")
    freeze_embeddings: bool = Field(
        False,
        description="Keep the input token embeddings fixed. Multilingual vocabularies make them most of the "
        "model (multilingual-e5-small: 96M of 118M parameters), so freezing them halves a CPU step and cuts "
        "about 3x their size of gradient and optimiser memory; a tied output layer (causal LMs) stays fixed too.",
    )


def _apply(model: torch.nn.Module, cfg: FullConfig, head_names: list[str]) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    if cfg.freeze_embeddings:
        getter = getattr(model, "get_input_embeddings", None)
        embeddings = getter() if callable(getter) else None
        if embeddings is None:
            raise ConfigError(f"method.freeze_embeddings: {type(model).__name__} has no input embeddings to freeze")
        embeddings.weight.requires_grad_(False)
    return model


def _finalize(model: torch.nn.Module, cfg: FullConfig) -> torch.nn.Module:
    return model


METHODS.register("full")(Method(FullConfig, _apply, _finalize, "full fine-tuning: all weights train"))
