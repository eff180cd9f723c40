"""LoRA (low-rank adapters) through PEFT.

The backbone stays frozen; each targeted linear layer gets a trainable low-rank update B·A scaled by
alpha/r. The task head trains fully (it is new). On save the adapters are merged into the weights so
that plain ``transformers`` loads the model; the adapter alone is saved too when ``save_adapter``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from taskfit.methods.base import METHODS, Method, MethodConfig

if TYPE_CHECKING:
    import torch


class LoraConfigBlock(MethodConfig):
    """Low-rank adaptation of the attention (and optionally feed-forward) projections."""

    name: Literal["lora"] = Field("lora", description="The method's registry name.")
    r: int = Field(8, ge=1, le=1024, description="Rank of the update; 4–16 is typical.")
    alpha: int = Field(16, gt=0, description="Scaling numerator: the update is multiplied by alpha/r.")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["attention", "all-linear"] = Field(
        "attention",
        description="Which linear layers get adapters: 'attention' (query/key/value), 'all-linear', "
        "or a list of module-name suffixes such as [query, value].",
    )
    save_adapter: bool = Field(True, description="Also save the bare adapter (PEFT format) beside the model.")

    @field_validator("target_modules")
    @classmethod
    def _non_empty_targets(cls, v: list[str] | str) -> list[str] | str:
        if isinstance(v, list) and not v:
            raise ValueError("an empty list adapts nothing; name at least one layer, e.g. [query, value]")
        return v


_ATTENTION_SUFFIXES = ["query", "key", "value", "q_proj", "k_proj", "v_proj", "q_lin", "k_lin", "v_lin"]


def _targets(model: torch.nn.Module, cfg: LoraConfigBlock, head_names: list[str]) -> list[str] | str:
    if cfg.target_modules == "all-linear":
        return "all-linear"
    wanted = _ATTENTION_SUFFIXES if cfg.target_modules == "attention" else list(cfg.target_modules)
    import torch

    present = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    found = [w for w in wanted if w in present]
    if not found:
        from taskfit.errors import IncompatibleError

        raise IncompatibleError(
            f"method.target_modules {cfg.target_modules!r} matches no linear layer of this model. "
            f"Linear layer names present: {', '.join(sorted(present))}."
        )
    return found


def _apply(model: torch.nn.Module, cfg: LoraConfigBlock, head_names: list[str]) -> torch.nn.Module:
    from peft import LoraConfig, get_peft_model

    peft_cfg = LoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=_targets(model, cfg, head_names),
        # The head is new and must train in full; PEFT keeps a trainable copy and saves it.
        modules_to_save=head_names,
        bias="none",
    )
    return get_peft_model(model, peft_cfg)


def _finalize(model: torch.nn.Module, cfg: LoraConfigBlock) -> torch.nn.Module:
    # merge_and_unload folds B·A·alpha/r into the base weights and returns the plain transformers model.
    return model.merge_and_unload()  # type: ignore[operator]


METHODS.register("lora")(
    Method(LoraConfigBlock, _apply, _finalize, "LoRA adapters on the attention projections (PEFT)")
)
