"""The loop's step-hook protocol (what DP-SGD and adversarial training plug into), and that a run's
train.threads does not leak into the caller's process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import interrupt_at, tiny_recipe
from taskfit.config import parse_recipe
from taskfit.train import StepHook


class Recording(StepHook):
    name = "recording"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.losses: list[float] = []

    def setup(self, model: Any, fwd: Any, optimizer: Any, batcher: Any, device: Any) -> tuple[Any, Any, Any]:
        self.calls.append("setup")
        return fwd, optimizer, batcher

    def backward(self, compute_loss: Any, loss: torch.Tensor, scale: float) -> None:
        self.calls.append("backward")
        again = compute_loss()  # a second forward pass, as adversarial training makes, on the same batch
        assert again.requires_grad  # built with autograd on, ready for a second backward
        self.losses.append(abs(float(again.detach()) - float(loss.detach())) / float(loss.detach()))
        (loss * scale).backward()

    def after_step(self, step: int) -> None:
        self.calls.append(f"step{step}")

    def state_dict(self) -> dict[str, Any]:
        return {"seen": len(self.calls)}

    def teardown(self) -> None:
        self.calls.append("teardown")

    def summary(self) -> dict[str, Any]:
        self.calls.append("summary")
        return {"backward_calls": self.calls.count("backward")}


def _recipe(tmp: Path, data: Path, model: Path, **kw: Any) -> Any:
    return parse_recipe(tiny_recipe(data, model, tmp, max_steps=3, threads=1, **kw))


def test_hook_calls_in_order_and_threads_restored(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import taskfit.pipeline as pipeline

    hook = Recording()
    monkeypatch.setattr(pipeline, "step_hooks", lambda recipe, task, n: [hook])
    before = torch.get_num_threads()
    summary = pipeline.train_recipe(_recipe(tmp_path / "a", bbc_csv, tiny_model_dir, grad_accum=2))
    assert torch.get_num_threads() == before  # train.threads=1 applied to the run only
    assert hook.calls[0] == "setup" and hook.calls[-2:] == ["teardown", "summary"]
    steps = [c for c in hook.calls if c.startswith("step")]
    assert steps == ["step1", "step2", "step3"]
    assert hook.calls.count("backward") == 6  # two accumulated batches per optimiser step
    # compute_loss() re-runs the same batch: the loss differs only by the tiny model's dropout.
    assert max(hook.losses) < 0.05
    assert summary.train.extra == {"recording": {"backward_calls": 6}}
    ckpt = torch.load(summary.run_dir / "checkpoints" / "step-00000003.pt", weights_only=False)
    assert ckpt["hooks"]["recording"]["seen"] > 0


def test_teardown_runs_when_training_is_interrupted(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import taskfit.pipeline as pipeline

    hook = Recording()
    monkeypatch.setattr(pipeline, "step_hooks", lambda recipe, task, n: [hook])
    with pytest.raises(KeyboardInterrupt):
        pipeline.train_recipe(_recipe(tmp_path / "b", bbc_csv, tiny_model_dir), progress=interrupt_at(2))
    assert hook.calls[-1] == "teardown" and "summary" not in hook.calls
