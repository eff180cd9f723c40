"""`taskfit compress`: ONNX / int8 copies of a real run (MiniLM trained on real BBC rows), measured before and
after, loadable by path with the same predictions as the source within stated tolerances."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from conftest import run_taskfit
from taskfit.errors import ConfigError, IncompatibleError

# Probability tolerances against the fp32 PyTorch model: graph optimisation only reorders float maths;
# int8 weights move probabilities by up to a few hundredths on this model.
TOLERANCE = {"onnx": 1e-4, "onnx-int8": 0.08, "torch-int8": 0.08}


@pytest.fixture(scope="module")
def trained(minilm_bbc_run: Path) -> Path:
    return minilm_bbc_run


@pytest.mark.slow
@pytest.mark.parametrize("method", ["onnx", "onnx-int8", "torch-int8"])
def test_compressed_copy_is_measured_and_predicts_like_the_source(trained: Path, method: str) -> None:
    from taskfit.compress import compress_run
    from taskfit.inference import Predictor

    result = compress_run(trained, method, rows=24)
    assert result.run_dir == trained.with_name(f"src-{method}")
    doc = json.loads((result.run_dir / "compression.json").read_text())
    assert doc["flagged"] == (doc["drop"] > doc["tolerance"])
    for side in ("before", "after"):
        m = doc[side]
        assert m["n"] == 24 and 0 <= m["metrics"]["accuracy"] <= 1
        assert 0 < m["latency_p50_ms"] <= m["latency_p95_ms"] and m["throughput_per_s"] > 0 and m["size_mb"] > 0
    # int8 weights are a quarter of fp32; ONNX Runtime also quantises the embedding table, PyTorch's dynamic
    # quantisation only the Linear layers (MiniLM's 30k × 384 embeddings are half of its weights).
    ratio = doc["after"]["size_mb"] / doc["before"]["size_mb"]
    assert {"onnx": 0.9 < ratio < 1.1, "onnx-int8": ratio < 0.35, "torch-int8": ratio < 0.7}[method], ratio
    if method.startswith("onnx"):
        assert doc["export"]["fused_operators"].get("Attention", 0) == 6  # one fused attention per layer
    texts = [r["text"] for r in _rows(trained)]
    src, dst = Predictor.load(trained), Predictor.load(result.run_dir)
    assert dst.meta["backend"] == ("torch-int8" if method == "torch-int8" else "onnx")
    p, q = src.predict_proba(texts), dst.predict_proba(texts)
    assert p.shape == q.shape
    assert float(np.abs(p - q).max()) < TOLERANCE[method]
    assert (p.argmax(1) == q.argmax(1)).mean() >= (1.0 if method == "onnx" else 0.9)
    assert "Before and after" in (result.run_dir / "report.html").read_text()


def _rows(run: Path) -> list[dict]:
    from taskfit.config import load_recipe
    from taskfit.tasks import TASKS

    recipe = load_recipe(run / "recipe.yaml")
    task = TASKS.get("text_classification").from_config(recipe.task, recipe.data)
    return task.load_splits(recipe.data).frames["test"].head(30).to_dict("records")


@pytest.mark.slow
def test_cli_compress_then_predict_by_path(trained: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    res = run_taskfit(["compress", str(trained), "--method", "onnx-int8", "--out", str(out), "--rows", "16"])
    assert "before / after" in res.stdout and "throughput, batch 32" in res.stdout
    pred = run_taskfit(["predict", str(out), "Manchester United won the cup final at Wembley."])
    line = json.loads(pred.stdout.strip().splitlines()[0])
    assert line["label"] in json.loads((trained / "model" / "taskfit.json").read_text())["labels"]
    again = run_taskfit(["compress", str(trained), "--method", "onnx-int8", "--out", str(out)], ok=False)
    assert again.returncode == 2 and "already exists" in again.stderr and "--overwrite" in again.stderr


def test_bad_requests_are_named(tmp_path: Path) -> None:
    from taskfit.compress import compress_run
    from taskfit.compress.methods import check_task

    with pytest.raises(ConfigError, match=r"Unknown compression method 'gzip'\. Available: distill, merge, onnx, "
                       "onnx-int8, prune-ffn, prune-heads, prune-magnitude, prune-structured, torch-int8"):
        compress_run(tmp_path, "gzip")
    with pytest.raises(IncompatibleError, match="supports the tasks text_classification, multi_label, regression; "
                       "this run is 'ner'"):
        check_task("ner", "onnx")
    res = run_taskfit(["compress", str(tmp_path), "--method", "onnx"], ok=False)
    assert res.returncode == 2 and "not a taskfit run or model directory" in res.stderr
