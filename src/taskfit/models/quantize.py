"""PyTorch dynamic int8 quantisation of Linear layers (the no-ONNX path of ``taskfit compress``).

Weights of every ``nn.Linear`` are stored as int8 with one scale per tensor; activations are quantised on
the fly per batch. Embeddings, LayerNorms and the rest stay fp32. CPU only (the quantised kernels are
fbgemm / qnnpack).
"""

from __future__ import annotations

import warnings

import torch


def quantize_linear(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with its Linear layers dynamically quantised to int8."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        # torch marks quantised tensor creation as deprecated (pytorch#184982); it still works in 2.13.
        warnings.simplefilter("ignore")
        return quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)
