"""The memory estimate's state part against the bytes a real model and AdamW hold after one step."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from taskfit.methods import METHODS
from taskfit.methods.lora import LoraConfigBlock
from taskfit.tasks import TASKS
from taskfit.train.memory import ModelShape, estimate, shape_of


def _bytes(tensors: list[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def _built(tiny_model_dir: Path, method: str) -> torch.nn.Module:
    from taskfit.config import DataConfig, TextClassificationOptions

    task = TASKS.get("text_classification").from_config(TextClassificationOptions(), DataConfig(train=Path("x")))
    model, heads = task.build_model(tiny_model_dir, ["a", "b", "c"], "eager")
    cfg = LoraConfigBlock(r=4) if method == "lora" else None
    return METHODS.get(method).apply(model, cfg, heads) if cfg else model


@pytest.mark.parametrize("method", ["full", "lora"])
def test_state_bytes_match_a_real_step(tiny_model_dir: Path, method: str) -> None:
    model = _built(tiny_model_dir, method)
    shape = shape_of(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert shape.trainable == sum(p.numel() for p in trainable)
    assert (shape.trainable == shape.params) == (method == "full")
    opt = torch.optim.AdamW(trainable, lr=1e-3)
    ids = torch.randint(5, 100, (4, 16))
    model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits.sum().backward()
    opt.step()
    est = estimate(shape, "single", batch=4, length=16)
    assert est.weights == _bytes(list(model.parameters()))
    assert est.gradients == _bytes([p.grad for p in trainable if p.grad is not None])
    moments = [v for s in opt.state.values() for k, v in s.items() if k in ("exp_avg", "exp_avg_sq")]
    assert est.optimizer == _bytes(moments)
    assert est.activations > 0 and est.total > est.weights


def test_strategies_divide_what_they_should() -> None:
    shape = ModelShape(params=1_000_000, trainable=1_000_000, layers=4, hidden=64, heads=4, largest_block=100_000)
    single = estimate(shape, "single", batch=32, length=64)
    ddp = estimate(shape, "ddp", world=4, batch=32, length=64)
    fsdp = estimate(shape, "fsdp", world=4, batch=32, length=64)
    # DDP keeps full replicas (plus gradient buckets) and a quarter of the activations.
    assert (ddp.weights, ddp.optimizer, ddp.buffers) == (single.weights, single.optimizer, 4e6)
    assert ddp.activations == pytest.approx(single.activations / 4)
    # FSDP shards weights, gradients and AdamW state, plus two gathered blocks.
    assert fsdp.weights == pytest.approx(4e6 / 4 + 2 * 4 * 100_000)
    assert (fsdp.gradients, fsdp.optimizer) == (pytest.approx(1e6), pytest.approx(2e6))
    assert fsdp.total < ddp.total < single.total + ddp.buffers
