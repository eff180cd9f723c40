"""Pruning a run's model: structured (attention heads, FFN neurons) and unstructured (weight magnitude).

Structured pruning removes whole heads and feed-forward neurons and *physically* shrinks the Linear layers,
so the saved model is smaller and runs faster on ordinary dense kernels:

- Importance (``importance: taylor``, the default) is first-order Taylor importance (Michel et al. 2019,
  Molchanov et al. 2017): a gate of 1.0 multiplies each head's output and each FFN neuron's activation;
  over a few batches of the run's own *training* rows, ``|∂loss/∂gate|`` is summed per batch. A gate
  with a small gradient can be removed with little change of the loss. ``importance: magnitude`` needs no
  data: a head scores the squared norm of its query/key/value rows and output columns, a neuron the
  product of its input-row and output-column norms.
- Heads are ranked globally (scores normalised per layer, at least one head kept per layer), so layers
  keep different numbers of heads; transformers 5 cannot rebuild that from its config, so these models
  are saved with ``backend: pruned`` and loaded by :func:`taskfit.models.pruned.load_pruned`.
- FFN neurons are pruned by the same fraction in every layer, so ``config.intermediate_size`` describes
  the model and plain ``AutoModelForSequenceClassification.from_pretrained`` loads it.

Unstructured pruning (``prune-magnitude``) zeroes the smallest weights of the encoder's Linear layers
(global or per-layer L1 ranking with ``torch.nn.utils.prune``, then made permanent). The real fraction of
zeros is reported. Dense kernels do the same work with zeros as without, so this does **not** make the model
faster or smaller on disk; the report gives the zlib-compressed size of the weights as the only size gain.

An optional short recovery fine-tune (:mod:`taskfit.compress.recovery`) follows.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskfit.errors import ConfigError, IncompatibleError
from taskfit.tasks.base import Encoded, Task

#: Model types whose encoder layers have BERT's layout (attention.self.query/key/value, attention.output.dense,
#: intermediate.dense, output.dense), which the surgery below edits.
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "electra")
IMPORTANCE = ("taylor", "magnitude")
SCOPES = ("global", "layer")


def check_model(model_dir: Path, method: str) -> None:
    """Raise IncompatibleError unless ``model_dir`` holds a BERT-layout encoder (read from config.json)."""
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    model_type = cfg.get("model_type")
    if model_type not in ENCODER_TYPES:
        raise IncompatibleError(f"compress --method {method} edits BERT-style encoder layers (model types "
                                f"{', '.join(ENCODER_TYPES)}); this model is {model_type!r} ({model_dir}). Use "
                                "onnx-int8 or torch-int8 instead.")


def encoder_layers(model: Any) -> list[Any]:
    """The encoder's transformer layers (``model.<base>.encoder.layer``)."""
    base = getattr(model, str(getattr(model, "base_model_prefix", "")), model)
    layers = getattr(getattr(base, "encoder", None), "layer", None)
    if layers is None or not all(hasattr(lay, "attention") and hasattr(lay, "intermediate") for lay in layers):
        raise IncompatibleError(f"{type(model).__name__} has no BERT-style encoder layers to prune.")
    return list(layers)


def head_size(layer: Any) -> int:
    return int(layer.attention.self.attention_head_size)


# ---- importance ---------------------------------------------------------------------------------------------

class _Gates:
    """Multiplicative gates (all 1.0) on every head's output and every FFN neuron's activation, via forward hooks.

    Their gradients are the Taylor importance; the forward result is unchanged because the gates are 1.
    """

    def __init__(self, layers: list[Any]) -> None:
        self.heads = [torch.ones(lay.attention.self.query.out_features // head_size(lay), requires_grad=True)
                      for lay in layers]
        self.neurons = [torch.ones(lay.intermediate.dense.out_features, requires_grad=True) for lay in layers]
        self.handles = []
        for lay, hg, ng in zip(layers, self.heads, self.neurons, strict=True):
            self.handles.append(lay.attention.self.register_forward_hook(self._head_hook(hg, head_size(lay))))
            self.handles.append(lay.intermediate.register_forward_hook(lambda _m, _i, out, g=ng: out * g))

    @staticmethod
    def _head_hook(gate: torch.Tensor, size: int) -> Any:
        def hook(_m: torch.nn.Module, _i: Any, out: Any) -> Any:
            ctx = out[0] if isinstance(out, tuple) else out  # [B, T, H·d]
            gated = (ctx.unflatten(-1, (-1, size)) * gate[:, None]).flatten(-2)
            return (gated, *out[1:]) if isinstance(out, tuple) else gated
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def taylor_importance(model: torch.nn.Module, task: Task, enc: Encoded, batches: int = 8,
                      batch_size: int = 16, seed: int = 0) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-layer head scores [H_l] and neuron scores [I_l]: Σ over batches of |∂loss/∂gate|."""
    layers = encoder_layers(model)
    gates = _Gates(layers)
    order = np.random.default_rng(seed).permutation(len(enc))[: batches * batch_size]
    head_acc = [torch.zeros_like(g) for g in gates.heads]
    neuron_acc = [torch.zeros_like(g) for g in gates.neurons]
    was_training = model.training
    model.eval()  # no dropout: the gradient should describe the model as it predicts
    flags = [p.requires_grad for p in model.parameters()]
    for p in model.parameters():
        p.requires_grad_(False)  # only the gates need gradients
    try:
        for start in range(0, len(order), batch_size):
            batch = task.collate(enc, order[start:start + batch_size])
            task.loss(model, batch).backward()
            for acc, g in zip(head_acc + neuron_acc, gates.heads + gates.neurons, strict=True):
                acc += g.grad.abs()  # type: ignore[union-attr]
                g.grad = None
    finally:
        gates.remove()
        for p, f in zip(model.parameters(), flags, strict=True):
            p.requires_grad_(f)
        model.train(was_training)
    return head_acc, neuron_acc


def magnitude_importance(model: torch.nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Data-free scores: per head, the squared norm of its Q/K/V rows and output columns; per neuron, the
    product of the norms of its input row and output column."""
    heads, neurons = [], []
    with torch.no_grad():
        for lay in encoder_layers(model):
            att, d = lay.attention, head_size(lay)
            sq = sum(m.weight.unflatten(0, (-1, d)).pow(2).sum((1, 2)) for m in (att.self.query, att.self.key,
                                                                               att.self.value))
            sq = sq + att.output.dense.weight.unflatten(1, (-1, d)).pow(2).sum((0, 2))
            heads.append(sq)
            neurons.append(lay.intermediate.dense.weight.norm(dim=1) * lay.output.dense.weight.norm(dim=0))
    return heads, neurons


# ---- choosing what to keep ----------------------------------------------------------------------------------

def choose_heads(scores: list[torch.Tensor], fraction: float) -> list[list[int]]:
    """Heads to keep per layer: the globally lowest ``fraction`` of all heads go (scores normalised by their
    layer's L2 norm so layers compare), but every layer keeps at least its best head."""
    normed = [s / s.norm().clamp_min(1e-12) for s in scores]
    flat = sorted(((float(v), li, hi) for li, s in enumerate(normed) for hi, v in enumerate(s)))
    n_remove = round(fraction * len(flat))
    kept = [set(range(len(s))) for s in scores]
    for _v, li, hi in flat:
        if n_remove == 0:
            break
        if len(kept[li]) > 1:
            kept[li].discard(hi)
            n_remove -= 1
    return [sorted(k) for k in kept]


def choose_neurons(scores: list[torch.Tensor], fraction: float) -> list[list[int]]:
    """Neurons to keep: the same number in every layer (so ``config.intermediate_size`` still describes the
    model), the highest-scoring ones of each layer; at least one."""
    keep = max(1, round(len(scores[0]) * (1 - fraction)))
    return [sorted(torch.topk(s, min(keep, len(s))).indices.tolist()) for s in scores]


# ---- surgery ------------------------------------------------------------------------------------------------

def _sliced(linear: torch.nn.Linear, index: torch.Tensor, dim: int) -> torch.nn.Linear:
    """A new Linear keeping output rows (dim 0) or input columns (dim 1) ``index`` of ``linear``."""
    w = linear.weight.detach().index_select(dim, index).clone()
    bias = linear.bias is not None
    new = torch.nn.Linear(w.shape[1], w.shape[0], bias=bias, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        new.weight.copy_(w)
        if bias:  # the output layer's bias is per output row, which column slicing keeps whole
            new.bias.copy_(linear.bias.detach().index_select(0, index) if dim == 0 else linear.bias.detach())
    new.train(linear.training)
    return new


def remove_heads(model: Any, keep: list[list[int]]) -> list[int]:
    """Physically remove the heads not in ``keep[layer]``; returns the head count per layer."""
    from taskfit.models.pruned import HEADS_KEY, set_head_counts

    counts = []
    for lay, kept in zip(encoder_layers(model), keep, strict=True):
        sa, d = lay.attention.self, head_size(lay)
        idx = torch.tensor([h * d + j for h in kept for j in range(d)], dtype=torch.long)
        if len(idx) < sa.query.out_features:
            sa.query, sa.key, sa.value = (_sliced(m, idx, 0) for m in (sa.query, sa.key, sa.value))
            lay.attention.output.dense = _sliced(lay.attention.output.dense, idx, 1)
        counts.append(len(kept))
    set_head_counts(model)
    setattr(model.config, HEADS_KEY, counts)
    return counts


def remove_neurons(model: Any, keep: list[list[int]]) -> int:
    """Physically remove the FFN neurons not in ``keep[layer]`` (same count per layer); returns that count."""
    sizes = {len(k) for k in keep}
    if len(sizes) != 1:
        raise ValueError(f"every layer must keep the same number of neurons, got {sorted(sizes)}")
    for lay, kept in zip(encoder_layers(model), keep, strict=True):
        idx = torch.tensor(kept, dtype=torch.long)
        lay.intermediate.dense = _sliced(lay.intermediate.dense, idx, 0)
        lay.output.dense = _sliced(lay.output.dense, idx, 1)
    model.config.intermediate_size = sizes.pop()
    return int(model.config.intermediate_size)


# ---- unstructured -------------------------------------------------------------------------------------------

def prunable_linears(model: torch.nn.Module) -> list[tuple[str, torch.nn.Linear]]:
    """The encoder's Linear layers (embeddings, pooler and the task head are left dense)."""
    layers = encoder_layers(model)
    return [(f"layer{i}.{n}", m) for i, lay in enumerate(layers) for n, m in lay.named_modules()
            if isinstance(m, torch.nn.Linear)]


def magnitude_prune(model: torch.nn.Module, sparsity: float, scope: str = "global") -> dict[str, Any]:
    """Zero the ``sparsity`` fraction of smallest-|w| encoder Linear weights, permanently (no masks left).

    ``scope``: ``global`` ranks all those weights together (layers lose different fractions); ``layer`` takes
    the same fraction from each Linear. Returns the achieved sparsity, overall and per Linear.
    """
    from torch.nn.utils import prune

    linears = prunable_linears(model)
    params = [(m, "weight") for _n, m in linears]
    if sparsity > 0:
        if scope == "global":
            prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
        else:
            for m, name in params:
                prune.l1_unstructured(m, name, amount=sparsity)
        for m, name in params:
            prune.remove(m, name)  # weight = weight_orig * mask, the mask and hook dropped
    return sparsity_report(model)


def sparsity_report(model: torch.nn.Module) -> dict[str, Any]:
    """Exact fraction of zero weights in the encoder's Linear layers (all, and per Linear)."""
    per, zeros, total = {}, 0, 0
    for name, m in prunable_linears(model):
        z, n = int((m.weight == 0).sum()), m.weight.numel()
        per[name] = round(z / n, 4)
        zeros, total = zeros + z, total + n
    return {"sparsity": zeros / total, "zero_weights": zeros, "prunable_weights": total, "per_linear": per}


def zlib_mb(path: Path) -> float:
    """Size of a file after zlib (level 1) compression, in MB: what zeros save when weights are zipped."""
    comp, size = zlib.compressobj(1), 0
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            size += len(comp.compress(chunk))
    return round((size + len(comp.flush())) / 1e6, 2)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def check_fraction(value: Any, method: str) -> float:
    """``--sparsity`` as a float in [0, 1), or ConfigError naming the value."""
    try:
        f = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"--sparsity for {method} must be a number in [0, 1); got {value!r}.") from None
    if not 0 <= f < 1:
        raise ConfigError(f"--sparsity for {method} must be in [0, 1) (the fraction removed, e.g. 0.3); got {f:g}.")
    return f
