"""Loading compressed models (written by ``taskfit compress``) behind the same call as a transformers model.

A task's scoring code calls ``model(input_ids=..., attention_mask=...).logits``; :class:`OnnxModel` answers
that call from an ONNX Runtime session and :func:`load_torch_int8` rebuilds a dynamically quantised
PyTorch model, so ``taskfit predict``, ``taskfit eval`` and the compression report use the tasks' own code
unchanged. ``taskfit.json`` says which backend a model directory holds (``backend``: ``onnx`` or
``torch-int8``; absent for plain transformers weights).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from taskfit.errors import ModelNotFoundError

BACKENDS = ("transformers", "onnx", "torch-int8", "pruned")


class OnnxModel(torch.nn.Module):
    """An ONNX Runtime session that looks like a sequence-classification model (CPU execution provider).

    Args:
        path: the .onnx file.
        threads: intra-op threads (default: ONNX Runtime's choice, all cores).
    """

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        super().__init__()
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        opts.log_severity_level = 3  # warnings about unused initialisers are noise for users
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.path = Path(path)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
                token_type_ids: torch.Tensor | None = None, **_: Any) -> SimpleNamespace:
        """Returns an object with ``.logits`` [B, C] (float32, CPU)."""
        given = {"input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}
        feed: dict[str, np.ndarray] = {}
        for name in self.inputs:
            value = given.get(name)
            if value is None:  # BERT-style graphs take token types; single texts are all type 0
                value = torch.zeros_like(input_ids)
            feed[name] = value.detach().cpu().numpy().astype(np.int64)
        (logits,) = self.session.run(["logits"], feed)
        return SimpleNamespace(logits=torch.from_numpy(logits))


def load_torch_int8(model_dir: Path) -> torch.nn.Module:
    """A sequence-classification model whose Linear layers hold int8 weights (PyTorch dynamic quantisation)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from taskfit.models.quantize import quantize_linear

    state_path = model_dir / "model_int8.pt"
    if not state_path.is_file():
        raise ModelNotFoundError(f"{str(model_dir)!r} says backend torch-int8 but has no model_int8.pt.")
    config = AutoConfig.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_config(config, attn_implementation="eager")
    model = quantize_linear(model.eval())
    model.load_state_dict(torch.load(state_path, weights_only=False))
    return model.eval()


def load_exported(model_dir: Path, meta: dict[str, Any]) -> torch.nn.Module | None:
    """The model of a compressed model directory, or None when it holds plain transformers weights."""
    backend = meta.get("backend", "transformers")
    if backend == "onnx":
        path = model_dir / meta.get("onnx_file", "model.onnx")
        if not path.is_file():
            raise ModelNotFoundError(f"{str(model_dir)!r} says backend onnx but {path.name} is missing.")
        return OnnxModel(path)
    if backend == "torch-int8":
        return load_torch_int8(model_dir)
    if backend == "pruned":  # attention heads pruned per layer: plain from_pretrained cannot rebuild them
        from taskfit.models.pruned import load_pruned

        return load_pruned(model_dir)
    if backend != "transformers":
        raise ModelNotFoundError(f"{str(model_dir)!r} has unknown backend {backend!r}; known: {', '.join(BACKENDS)}.")
    return None
