"""Full fine-tuning: every weight of the backbone and the head is trained."""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field

from taskfit.methods.base import METHODS, Method, MethodConfig


class FullConfig(MethodConfig):
    """Train all parameters. Best accuracy, largest optimiser state (about 3× the weights in memory)."""

    name: Literal["full"] = Field("full", description="The method's registry name.")


def _apply(model: torch.nn.Module, cfg: FullConfig, head_names: list[str]) -> torch.nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _finalize(model: torch.nn.Module, cfg: FullConfig) -> torch.nn.Module:
    return model


METHODS.register("full")(Method(FullConfig, _apply, _finalize, "full fine-tuning: all weights train"))
