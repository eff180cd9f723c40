"""Regression and multi-label end to end on real rows with the packaged MiniLM: train a few steps through
the pipeline, beat a baseline, reload with Predictor, predict, and score a file with ``taskfit eval``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from taskfit.config import Recipe
from taskfit.data.packaged import write_dataset
from taskfit.inference import Predictor
from taskfit.pipeline import train_recipe


def recipe(train: Path, out: Path, task: dict, label: str, steps: int, **data: object) -> Recipe:
    return Recipe.model_validate({
        "task": task, "data": {"train": str(train), "label": label, "max_length": 48, **data},
        "model": {"name": "all-MiniLM-L6-v2"}, "method": {"name": "full"},
        "train": {"max_steps": steps, "lr": 1e-4, "head_lr": 1e-3, "batch_size": 32, "eval_every": steps,
                  "seed": 0, "checkpoint_every": 1000},
        "output": {"dir": str(out), "name": task["name"]}})


@pytest.fixture(scope="module")
def vader_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """320 real VADER tweets to train on and 80 other ones to score with ``taskfit eval``."""
    d = tmp_path_factory.mktemp("vader")
    df = pd.read_csv(write_dataset("vader_tweets", d / "all.csv", n=400, seed=0))
    df.iloc[:320].to_csv(d / "train.csv", index=False)
    df.iloc[320:].to_csv(d / "heldout.csv", index=False)
    return d / "train.csv", d / "heldout.csv"


def test_regression_learns_vader_scores(tmp_path: Path, vader_files: tuple[Path, Path], minilm_dir: Path) -> None:
    train, heldout = vader_files
    run = train_recipe(recipe(train, tmp_path, {"name": "regression"}, "score", 20, test_fraction=0.25))
    test = run.test_metrics
    assert test is not None and test["n"] == 80
    assert test["spearman"] > 0.3
    assert test["rmse"] < float(np.std(test["pairs"]["true"]))  # better than always predicting the mean
    meta = json.loads((run.run_dir / "model" / "taskfit.json").read_text())
    assert meta["task"] == "regression" and meta["target_sd"] > 0
    assert "Scores: test" in run.report.read_text(encoding="utf-8")

    pred = Predictor.load(run.run_dir).predict(["I love this, what a wonderful day!", "This is awful, I hate it."])
    assert pred[0]["score"] > pred[1]["score"]  # scores come back on the -4..4 scale
    # compress measures a regression model too (it has no probabilities: timing uses the raw forward pass)
    from taskfit.compress import compress_run

    doc = json.loads((compress_run(run.run_dir, "torch-int8", rows=16).run_dir / "compression.json").read_text())
    assert doc["before"]["n"] == doc["after"]["n"] == 16 and doc["after"]["throughput_per_s"] > 0
    assert set(doc["before"]["metrics"]) == set(doc["after"]["metrics"]) and "spearman" in doc["after"]["metrics"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120"}
    proc = subprocess.run([sys.executable, "-m", "taskfit", "eval", str(run.run_dir), "--data", str(heldout),
                           "--json", str(tmp_path / "eval.json")], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "regression" in proc.stdout and "spearman" in proc.stdout
    scored = json.loads((tmp_path / "eval.json").read_text())
    assert scored["n"] == 80 and scored["spearman"] > 0.2


def test_multi_label_beats_baselines_on_entity_types(tmp_path: Path, minilm_dir: Path) -> None:
    data = write_dataset("zh_entity_types", tmp_path / "zh.csv", n=400, seed=0)
    task = {"name": "multi_label", "threshold": "tune"}
    run = train_recipe(recipe(data, tmp_path, task, "labels", 25, valid_fraction=0.15, test_fraction=0.25))
    test = run.test_metrics
    assert test is not None and test["n"] >= 95  # exact duplicate sentences are dropped before the split
    # the untrained head starts at each label's train log-odds: its BCE on test is the prior-only BCE
    priors = run.task.priors  # type: ignore[attr-defined]
    prior_bce = -np.mean([(v["support"] * np.log(priors[lab]) + (test["n"] - v["support"]) * np.log(1 - priors[lab]))
                          / test["n"] for lab, v in test["per_label"].items()])
    assert test["loss"] < prior_bce
    # all-negative predicts nothing (micro-F1 0); all-positive has precision = the share of positive cells
    support = sum(v["support"] for v in test["per_label"].values())
    share = support / (test["n"] * len(test["per_label"]))
    assert test["micro_f1"] > 2 * share / (1 + share)
    meta = json.loads((run.run_dir / "model" / "taskfit.json").read_text())
    assert set(meta["thresholds"]) == set(meta["labels"]) == {"LOC", "ORG", "PER"}

    predictor = Predictor.load(run.run_dir)
    out = predictor.predict(["国家主席江泽民在北京会见了来自日本的代表团。"], top_k=2)[0]
    assert set(out["scores"]) == {"LOC", "ORG", "PER"} and len(out["top"]) == 2
    assert all(out["scores"][lab] >= meta["thresholds"][lab] for lab in out["labels"])
    scored = predictor.evaluate_file(data)  # what `taskfit eval` runs
    assert scored["n"] == 400 and scored["micro_f1"] > 0
