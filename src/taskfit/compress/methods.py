"""Compression methods: each turns a saved model directory into a smaller / faster one.

A method is registered in :data:`COMPRESSORS` and has ``build(src, dest, meta) -> dict``: it writes the
artefact into ``dest`` (a fresh directory that already holds the tokenizer and config) and returns the
``taskfit.json`` fields that tell :mod:`taskfit.models.exported` how to load it.

- ``onnx``: ONNX export with dynamic batch and sequence axes, then ONNX Runtime's transformer graph
  optimisation (attention, LayerNorm and GELU fusion).
- ``onnx-int8``: ``onnx`` plus ONNX Runtime dynamic int8 quantisation of the MatMul weights.
- ``torch-int8``: PyTorch dynamic int8 quantisation of Linear layers (no ONNX needed).
- ``prune-heads``, ``prune-ffn``, ``prune-structured``, ``prune-magnitude``: see :mod:`taskfit.compress.prune`.
- ``merge``: a plain model rebuilt from the run's saved LoRA adapter; see :mod:`taskfit.compress.merge`.
- ``distill``: the model cut to fewer layers and distilled from itself; see :mod:`taskfit.compress.distill_method`.

Methods chain (``taskfit compress RUN --method distill,prune-ffn,onnx-int8``): see
:func:`taskfit.compress.run.parse_methods` for which steps can feed another.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from taskfit.errors import IncompatibleError
from taskfit.registry import Registry

#: Tasks whose model is a transformers sequence classifier (one logits row per input).
SUPPORTED_TASKS = ("text_classification", "multi_label", "regression")
ONNX_FILE = "model.onnx"


@dataclass(frozen=True)
class BuildContext:
    """What a method that takes options gets besides ``(src, dest, meta)``.

    Attributes:
        options: the method's options, checked by its ``check`` (e.g. ``sparsity``, ``recovery_steps``).
        source_run: the run directory that holds ``src`` (its recipe.yaml names the training rows).
        work_dir: a directory kept across an interruption (checkpoints of a recovery fine-tune); the method
            removes it when done.
        note: prints one line of progress.
        progress: training progress callbacks (:class:`taskfit.train.Progress`) for methods that train.
    """

    options: dict[str, Any]
    source_run: Path
    work_dir: Path
    note: Callable[[str], None]
    progress: Any = None


@dataclass(frozen=True)
class Compressor:
    """A registered method. ``build(src, dest, meta)`` for methods without options; a method with ``options``
    (names it accepts) or ``context`` gets ``build(src, dest, meta, ctx: BuildContext)``, and its ``check(
    source_run, src, meta, options) -> options`` validates and completes the options before any work."""

    name: str
    description: str
    build: Callable[..., dict[str, Any]]
    options: tuple[str, ...] = ()
    check: Callable[[Path, Path, dict[str, Any], dict[str, Any]], dict[str, Any]] | None = None
    context: bool = False


COMPRESSORS: Registry[Compressor] = Registry("compression method")


def check_task(task_name: str, method: str) -> None:
    if task_name not in SUPPORTED_TASKS:
        raise IncompatibleError(f"compress --method {method} supports the tasks {', '.join(SUPPORTED_TASKS)}; this "
                                f"run is {task_name!r}.")


def _load_eager(src: Path, meta: dict[str, Any]) -> torch.nn.Module:
    """The model of ``src`` (whose ``taskfit.json`` is ``meta``) with eager attention: plain transformers
    weights, or a head-pruned model."""
    from transformers import AutoModelForSequenceClassification

    # Eager attention exports to plain MatMul/Softmax nodes, which ORT's optimiser fuses into Attention.
    if meta.get("backend") == "pruned":  # layers keep different numbers of heads
        from taskfit.models.pruned import load_pruned

        return load_pruned(src, attn_implementation="eager")
    model = AutoModelForSequenceClassification.from_pretrained(src, attn_implementation="eager")
    return model.eval()  # type: ignore[no-any-return]


def export_onnx(model: torch.nn.Module, dest: Path) -> list[str]:
    """Export ``model`` to ``dest`` (opset 17) with dynamic batch and sequence axes; returns the input names."""
    names = ["input_ids", "attention_mask"]
    config: Any = model.config
    if getattr(config, "type_vocab_size", 0) and config.model_type == "bert":
        names.append("token_type_ids")
    example = {n: torch.ones(2, 8, dtype=torch.long) if n != "token_type_ids" else torch.zeros(2, 8, dtype=torch.long)
               for n in names}
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"logits": {0: "batch"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, tuple(example[n] for n in names), str(dest), input_names=names,
                          output_names=["logits"], dynamic_axes=axes, opset_version=17, dynamo=False)
    return names


def optimize_onnx(path: Path, model: torch.nn.Module) -> dict[str, int]:
    """Fuse attention / LayerNorm / GELU with ONNX Runtime's transformer optimiser, in place; the fused counts.

    The optimiser gives every fused Attention node the config's head count; a head-pruned model keeps
    different numbers of heads per layer, so each node's count is then set from its own Q/K/V width.
    """
    from onnxruntime.transformers import optimizer

    cfg: Any = model.config
    opt = optimizer.optimize_model(str(path), model_type="bert", num_heads=int(cfg.num_attention_heads),
                                   hidden_size=int(cfg.hidden_size), opt_level=1)
    _set_attention_heads(opt, int(cfg.hidden_size) // int(cfg.num_attention_heads))
    tmp = path.with_suffix(".opt.onnx")
    opt.save_model_to_file(str(tmp))
    tmp.replace(path)
    return {k: int(v) for k, v in opt.get_fused_operator_statistics().items() if v}


def _set_attention_heads(graph_model: Any, head_size: int) -> None:
    """Each fused Attention node's ``num_heads`` = its packed Q/K/V weight's width / 3 / ``head_size``."""
    for node in graph_model.model.graph.node:
        if node.op_type != "Attention" or len(node.input) < 2:
            continue
        weight = graph_model.get_initializer(node.input[1])
        if weight is None or len(weight.dims) != 2 or weight.dims[1] % (3 * head_size):
            raise RuntimeError(f"fused attention node {node.name}: cannot read its head count from the Q/K/V "
                               f"weight {node.input[1]} (head size {head_size})")
        for attr in node.attribute:
            if attr.name == "num_heads":
                attr.i = int(weight.dims[1]) // (3 * head_size)


def quantize_onnx(path: Path) -> None:
    """ONNX Runtime dynamic int8 quantisation of the weights, in place."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_suffix(".int8.onnx")
    # Fused (com.microsoft) nodes defeat shape inference; their outputs are float32.
    quantize_dynamic(str(path), str(tmp), weight_type=QuantType.QInt8,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    tmp.replace(path)


def _onnx(src: Path, dest: Path, meta: dict[str, Any], int8: bool) -> dict[str, Any]:
    model = _load_eager(src, meta)
    inputs = export_onnx(model, dest / ONNX_FILE)
    fused = optimize_onnx(dest / ONNX_FILE, model)
    if int8:
        quantize_onnx(dest / ONNX_FILE)
    return {"backend": "onnx", "onnx_file": ONNX_FILE, "onnx_inputs": inputs, "fused_operators": fused,
            "quantization": "int8-dynamic" if int8 else None}


def _torch_int8(src: Path, dest: Path, meta: dict[str, Any]) -> dict[str, Any]:
    from taskfit.models.quantize import quantize_linear

    q = quantize_linear(_load_eager(src, meta))
    from taskfit.utils.io import atomic_save

    atomic_save(dest / "model_int8.pt", lambda p: torch.save(q.state_dict(), p))
    return {"backend": "torch-int8", "quantization": "int8-dynamic-linear"}


COMPRESSORS.register("onnx")(Compressor("onnx", "ONNX export + ONNX Runtime graph optimisation (fp32)",
                                        lambda s, d, m: _onnx(s, d, m, int8=False)))
COMPRESSORS.register("onnx-int8")(Compressor("onnx-int8", "ONNX export, graph optimisation and dynamic int8 "
                                             "quantisation (ONNX Runtime)", lambda s, d, m: _onnx(s, d, m, int8=True)))
COMPRESSORS.register("torch-int8")(Compressor("torch-int8", "PyTorch dynamic int8 quantisation of Linear layers",
                                              _torch_int8))

# Methods with options register themselves beside their own code (imported last: they use the names above).
from taskfit.compress import distill_method as _distill_method  # noqa: E402,F401
from taskfit.compress import merge as _merge  # noqa: E402,F401
from taskfit.compress import prune_methods as _prune_methods  # noqa: E402,F401
