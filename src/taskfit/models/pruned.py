"""Loading a model whose attention heads were pruned (written by ``taskfit compress --method prune-heads``).

transformers 5 has no ``prune_heads`` and derives every layer's width from one ``num_attention_heads``, so
``from_pretrained`` cannot rebuild layers that keep different numbers of heads. The saved weights say each
layer's real shape; :func:`load_pruned` builds the model from its config, shrinks every Linear layer whose
saved weight is smaller to that shape, and loads the weights strictly. This works because BERT-style
self-attention reshapes its projections with ``view(..., -1, head_size)``: the head count follows the
width of the query/key/value layers. ``config.json`` also lists the heads kept per layer
(``taskfit_heads_per_layer``) so the structure is readable without loading the weights.

The weights are stored as ``model_pruned.safetensors``, not ``model.safetensors``: transformers 5 meets a
checkpoint whose shapes differ from its config by *re-initialising* those layers at random with only a
warning, so a plain ``from_pretrained`` must fail loudly (no weights file) instead of serving noise.
"""

from __future__ import annotations

from pathlib import Path

import torch

from taskfit.errors import ModelNotFoundError

#: config.json key: heads kept in each encoder layer.
HEADS_KEY = "taskfit_heads_per_layer"
#: Weights file of a head-pruned model (see the module docstring for why not model.safetensors).
WEIGHTS = "model_pruned.safetensors"


def save_pruned(model: torch.nn.Module, dest: Path) -> None:
    """``save_pretrained`` (config + weights), the weights renamed to :data:`WEIGHTS`."""
    model.save_pretrained(dest)  # type: ignore[operator]
    (dest / "model.safetensors").replace(dest / WEIGHTS)


def _shrink_linears(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> int:
    """Replace each Linear whose saved weight has another shape by an empty Linear of that shape."""
    changed = 0
    for name, module in list(model.named_modules()):
        saved = state.get(f"{name}.weight")
        if not isinstance(module, torch.nn.Linear) or saved is None or saved.shape == module.weight.shape:
            continue
        out_f, in_f = saved.shape
        parent_name, _, attr = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, attr, torch.nn.Linear(in_f, out_f, bias=module.bias is not None))
        changed += 1
    return changed


def set_head_counts(model: torch.nn.Module) -> None:
    """Make each self-attention module's head count agree with the width of its query layer."""
    for module in model.modules():
        query = getattr(module, "query", None)
        size = getattr(module, "attention_head_size", None)
        if isinstance(query, torch.nn.Linear) and isinstance(size, int) and size > 0:
            module.num_attention_heads = query.out_features // size  # type: ignore[assignment]
            module.all_head_size = query.out_features  # type: ignore[assignment]


def load_pruned(model_dir: Path, attn_implementation: str | None = None) -> torch.nn.Module:
    """A sequence-classification model with per-layer pruned heads (and/or FFN neurons), in eval mode.

    ``attn_implementation`` (e.g. ``"eager"`` for ONNX export) is passed to transformers as given."""
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModelForSequenceClassification

    weights = model_dir / WEIGHTS
    if not weights.is_file():
        raise ModelNotFoundError(f"{str(model_dir)!r} says backend pruned but has no {WEIGHTS}.")
    config = AutoConfig.from_pretrained(model_dir)
    kwargs = {"attn_implementation": attn_implementation} if attn_implementation else {}
    model = AutoModelForSequenceClassification.from_config(config, **kwargs)
    state = load_file(str(weights))
    _shrink_linears(model, state)
    set_head_counts(model)
    missing, unexpected = model.load_state_dict(state, strict=False)
    persistent = {k for k, _ in model.named_parameters()} | {k for k, _ in model.named_buffers()
                                                             if k.split(".")[-1] != "position_ids"}
    lost = [k for k in missing if k in persistent]
    if lost or unexpected:
        raise ModelNotFoundError(f"{str(model_dir)!r}: the pruned weights do not fit the config (missing "
                                 f"{lost[:5]}, unexpected {list(unexpected)[:5]}).")
    return model.eval()
