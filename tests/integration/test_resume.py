"""Exact resume: an interrupted run continued with --resume ends where an uninterrupted one does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import interrupt_at, tiny_recipe
from taskfit.config import parse_recipe
from taskfit.pipeline import train_recipe


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "model" / "model.safetensors")


def _assert_same_run(a: Path, b: Path) -> None:
    ra = json.loads((a / "results.json").read_text())
    rb = json.loads((b / "results.json").read_text())
    assert abs(ra["test"]["accuracy"] - rb["test"]["accuracy"]) <= 1e-6
    assert abs(ra["test"]["loss"] - rb["test"]["loss"]) <= 1e-6
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=1e-6, rtol=0, msg=k)
    steps_a = [r for r in map(json.loads, (a / "metrics.jsonl").read_text().splitlines())]
    steps_b = [r for r in map(json.loads, (b / "metrics.jsonl").read_text().splitlines())]
    assert [r["step"] for r in steps_a] == [r["step"] for r in steps_b]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_interrupt_and_resume_matches_uninterrupted(tmp_path, bbc_csv, tiny_model_dir, grad_accum):
    kw = {"epochs": 2, "grad_accum": grad_accum, "checkpoint_every": 4, "eval_every": 5}
    full = train_recipe(parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, tmp_path / "a", **kw)))

    recipe = parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, tmp_path / "b", **kw))
    with pytest.raises(KeyboardInterrupt):
        train_recipe(recipe, progress=interrupt_at(7))
    run_dir = tmp_path / "b" / "run"
    assert not (run_dir / "model").exists()
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == "step-00000004.pt"
    train_recipe(resume_dir=run_dir)
    _assert_same_run(full.run_dir, run_dir)


@pytest.mark.slow
def test_kill_9_mid_training_then_resume(tmp_path, bbc_csv, minilm_dir):
    """A real process on the real MiniLM, killed with SIGKILL right after its first checkpoint (step 3); the
    resumed process crosses the epoch boundary (120 rows: 96 train rows, 6 steps of 16 per epoch)."""
    kw = {"epochs": 2, "checkpoint_every": 3, "lr": 1e-4, "batch_size": 16}

    def recipe(out: Path) -> dict:
        tree = tiny_recipe(bbc_csv, minilm_dir, out, **kw)
        tree["data"]["limit"] = 120
        return tree

    ref = train_recipe(parse_recipe(recipe(tmp_path / "ref")))

    recipe_path = tmp_path / "recipe.yaml"
    recipe_path.write_text(yaml.safe_dump(recipe(tmp_path / "killed")))
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "taskfit", "train", str(recipe_path)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = tmp_path / "killed" / "run" / "checkpoints" / "latest"
    deadline = time.monotonic() + 300
    while not latest.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "training finished before it could be killed"
    run_dir = tmp_path / "killed" / "run"
    assert not (run_dir / "model").exists()

    done = subprocess.run([sys.executable, "-m", "taskfit", "train", "--resume", str(run_dir)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    _assert_same_run(ref.run_dir, run_dir)
