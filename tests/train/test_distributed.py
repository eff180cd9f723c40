"""Data-parallel training: `taskfit train --nproc 2` (torchrun, DDP over gloo on CPU) against one process.

With the same global batch (train.batch_size rows, split across the ranks), no dropout and fp32, the two
runs compute the same averaged gradients, so they end with the same weights and the same scores (up to
float summation order). Only rank 0 writes the run directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from conftest import run_taskfit, tiny_recipe
from taskfit.train.distributed import DistInfo, shard


def test_shard_splits_every_global_batch_and_weights_the_slices() -> None:
    idx = np.arange(10, 17)  # 7 rows over 3 ranks: 3, 2, 2
    parts = [shard(idx, DistInfo(rank=r, world=3)) for r in range(3)]
    assert sorted(np.concatenate([p for p, _ in parts]).tolist()) == idx.tolist()
    # Weights make the mean of the ranks' scaled slice means equal the global mean.
    assert sum(w * len(p) / len(p) for p, w in parts) / 3 == pytest.approx(1.0)
    assert [w for _, w in parts] == pytest.approx([3 / 7 * 3, 2 / 7 * 3, 2 / 7 * 3])
    # A batch smaller than the job: the spare rank still runs a row, with weight 0.
    rows, weight = shard(np.array([5]), DistInfo(rank=1, world=2))
    assert rows.tolist() == [5] and weight == 0.0
    assert shard(idx, DistInfo())[1] == 1.0


def test_token_weighted_slices_give_the_one_process_token_mean() -> None:
    """NER / generation average over target tokens: slice weights follow token shares, so the mean of the
    ranks' weighted slice means is the token mean over the whole batch."""
    rng = np.random.default_rng(0)
    idx = np.arange(7)
    units = np.array([3.0, 1.0, 4.0, 1.0, 5.0, 9.0, 2.0])
    losses = [rng.random(int(u)) for u in units]  # per-token losses of each row
    world = 3
    total = 0.0
    for r in range(world):
        mine, w = shard(idx, DistInfo(rank=r, world=world), units)
        slice_mean = np.concatenate([losses[i] for i in mine]).mean()
        total += w * slice_mean / world  # DDP averages the ranks' gradients
    assert total == pytest.approx(np.concatenate(losses).mean())


@pytest.fixture(scope="module")
def no_dropout_model(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Path:
    """The tiny BERT with dropout off, so one and two processes see identical forward passes."""
    import shutil

    out = tmp_path_factory.mktemp("tiny-nodrop")
    for f in tiny_model_dir.iterdir():
        shutil.copy(f, out / f.name)
    cfg = json.loads((out / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (out / "config.json").write_text(json.dumps(cfg))
    return out


def _train(tmp: Path, model: Path, data: Path, name: str, nproc: int, strategy: str = "ddp") -> dict:
    recipe = tiny_recipe(data, model, tmp / "runs", lr=3e-3, batch_size=16, max_steps=8, precision="fp32",
                         threads=1, checkpoint_every=4, keep_checkpoints=2, strategy=strategy)
    recipe["output"]["name"] = name
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    res = run_taskfit(["train", str(path), "--nproc", str(nproc)], OMP_NUM_THREADS="1")
    return {"out": res.stdout, "dir": tmp / "runs" / name,
            "results": json.loads((tmp / "runs" / name / "results.json").read_text())}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, no_dropout_model: Path, bbc_csv: Path) -> dict[str, dict]:
    tmp = tmp_path_factory.mktemp("ddp")
    return {name: _train(tmp, no_dropout_model, bbc_csv, name, n, strategy)
            for name, n, strategy in (("one", 1, "ddp"), ("two", 2, "ddp"), ("fsdp", 2, "fsdp"))}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two", "fsdp"])
def test_two_gloo_processes_match_one_process(runs: dict[str, dict], name: str) -> None:
    """DDP (replicas) and FSDP (shards) over 2 processes both end where one process ends."""
    one, two = runs["one"], runs[name]
    for split in ("valid", "test"):
        a, b = one["results"][split], two["results"][split]
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-4), split
        assert b["accuracy"] == pytest.approx(a["accuracy"], abs=1e-9), split
    assert two["results"]["timing"]["steps"] == one["results"]["timing"]["steps"] == 8
    assert (one["results"]["timing"]["processes"], two["results"]["timing"]["processes"]) == (1, 2)
    from safetensors.torch import load_file

    wa = load_file(one["dir"] / "model" / "model.safetensors")
    wb = load_file(two["dir"] / "model" / "model.safetensors")
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-4
    # Rank 0 alone reported and wrote: one summary line, one set of files.
    assert two["out"].count("run directory:") == 1
    assert sorted(p.name for p in (two["dir"] / "checkpoints").glob("step-*.pt"))
    assert torch.load(two["dir"] / "checkpoints" / "best.pt", weights_only=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["two", "fsdp"])
def test_a_two_process_run_resumes_on_one_process(runs: dict[str, dict], tmp_path: Path, name: str) -> None:
    """Checkpoints hold the global state (full weights and optimiser, global batch position; gathered from
    the shards under FSDP), so a run interrupted under 2 processes continues under 1 and reaches the same
    step-8 state."""
    import shutil

    two = runs[name]["dir"]
    resumed = tmp_path / "runs" / name
    shutil.copytree(two, resumed)
    # Back to how the run looked when interrupted after the step-4 checkpoint.
    for gone in ("model", "results.json", "report.html", "model_card.md", "checkpoints/step-00000008.pt"):
        target = resumed / gone
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    (resumed / "checkpoints" / "latest").write_text("step-00000004.pt\n")
    recipe = yaml.safe_load((resumed / "recipe.yaml").read_text())
    recipe["output"]["dir"] = str(resumed.parent)
    (resumed / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_taskfit(["train", "--resume", str(resumed), "--nproc", "1"], OMP_NUM_THREADS="1")
    results = json.loads((resumed / "results.json").read_text())
    assert results["timing"]["processes"] == 1 and results["timing"]["steps"] == 8
    a = torch.load(two / "checkpoints" / "step-00000008.pt", weights_only=False)
    b = torch.load(resumed / "checkpoints" / "step-00000008.pt", weights_only=False)
    assert a["pos"] == b["pos"]
    assert a["trainable"].keys() == b["trainable"].keys()
    assert max(float((a["trainable"][k] - b["trainable"][k]).abs().max()) for k in a["trainable"]) < 1e-4
    assert runs[name]["results"]["test"]["accuracy"] == pytest.approx(results["test"]["accuracy"], abs=1e-9)
