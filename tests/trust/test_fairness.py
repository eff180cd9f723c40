"""Per-group fairness: numbers equal a direct computation, mitigation narrows a built-in gap, a missing
group column is caught before training, and a real run writes results.json["fairness"] and the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import f1_score

from taskfit.config import FairnessConfig, parse_recipe
from taskfit.errors import ConfigError, DataError
from taskfit.trust.fairness import (
    classification_fairness,
    evaluate_fairness,
    fairness_sections,
    mitigate_thresholds,
    recipe_problems,
    regression_fairness,
)


def _length_group(texts: pd.Series) -> pd.Series:
    """A clearly artificial but real-data-derived grouping: length terciles of the article openings."""
    return pd.qcut(texts.str.len(), 3, labels=["short", "medium", "long"]).astype(str)


@pytest.fixture(scope="module")
def bbc(bbc_csv: Path) -> pd.DataFrame:
    df = pd.read_csv(bbc_csv)
    df["g"] = _length_group(df["text"])
    return df


def _fixed_probs(y: np.ndarray, n_labels: int, seed: int = 0) -> np.ndarray:
    """Deterministic probabilities [N, C] that are right about 60% of the time."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), n_labels))
    logits[np.arange(len(y)), y] += 1.0
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def test_multiclass_numbers_equal_a_direct_computation(bbc):
    labels = sorted(bbc["label"].unique())
    y = bbc["label"].map(labels.index).to_numpy()
    probs = _fixed_probs(y, len(labels))
    pred = probs.argmax(axis=1)
    res = classification_fairness(y, probs, bbc["g"].tolist(), labels)

    frame = pd.DataFrame({"g": bbc["g"], "y": y, "p": pred})
    acc = frame.assign(ok=frame.y == frame.p).groupby("g")["ok"].mean()
    f1 = {g: f1_score(d.y, d.p, average="macro", zero_division=0) for g, d in frame.groupby("g")}
    rows = {r["group"]: r for r in res["groups"]}
    assert sorted(rows) == ["long", "medium", "short"]
    for g in rows:
        assert rows[g]["n"] == int((frame.g == g).sum())
        assert rows[g]["accuracy"] == pytest.approx(acc[g])
        assert rows[g]["macro_f1"] == pytest.approx(f1[g])
        for i, lab in enumerate(labels):  # multi-class: every label's selection rate per group
            assert rows[g]["selection_rates"][lab] == pytest.approx(((frame.g == g) & (frame.p == i)).sum()
                                                                     / (frame.g == g).sum())
    # no positive label: one-vs-rest per label; the headline is the label with the largest DP difference
    for i, lab in enumerate(labels):
        sel = frame.assign(s=frame.p == i).groupby("g")["s"].mean()
        assert res["per_label"][lab]["demographic_parity_difference"] == pytest.approx(sel.max() - sel.min())
    dps = {lab: v["demographic_parity_difference"] for lab, v in res["per_label"].items()}
    assert res["gap_label"] == max(dps, key=lambda k: dps[k])
    assert res["demographic_parity_difference"] == pytest.approx(max(dps.values()))
    assert res["worst_group"] == acc.idxmin()


def test_binary_rates_and_equalized_odds_by_hand(bbc):
    two = bbc[bbc["label"].isin(["business", "sports"])].reset_index(drop=True)
    labels = ["business", "sports"]
    y = two["label"].map(labels.index).to_numpy()
    probs = _fixed_probs(y, 2, seed=3)
    res = classification_fairness(y, probs, two["g"].tolist(), labels, min_rows=40)
    assert res["positive_label"] == "sports"  # default: the second label of a binary task
    f = pd.DataFrame({"g": two["g"], "y": y, "p": probs.argmax(axis=1)})
    sel = f.groupby("g")["p"].mean()
    tpr = f[f.y == 1].groupby("g")["p"].mean()
    fpr = f[f.y == 0].groupby("g")["p"].mean()
    assert res["demographic_parity_difference"] == pytest.approx(sel.max() - sel.min())
    assert res["demographic_parity_ratio"] == pytest.approx(sel.min() / sel.max())
    assert res["equalized_odds_difference"] == pytest.approx(max(tpr.max() - tpr.min(), fpr.max() - fpr.min()))
    rows = {r["group"]: r for r in res["groups"]}
    for g in rows:
        assert rows[g]["tpr"] == pytest.approx(tpr[g]) and rows[g]["fpr"] == pytest.approx(fpr[g])
        assert rows[g]["small"] == (rows[g]["n"] < 40)  # flagged, still listed
    html = "".join(h for _, h in fairness_sections({**res, "split": "test", "group_column": "g"}))
    assert "data:image/png;base64," in html and "demographic parity difference" in html


def test_regression_groups_and_chinese_group_names_escape():
    y = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    pred = np.array([1.5, 2.0, 2.0, 4.0, 7.0, 6.5])
    groups = ["华东", "华东", "华东", "<b>north</b>", "<b>north</b>", "<b>north</b>"]
    res = regression_fairness(y, pred, groups)
    rows = {r["group"]: r for r in res["groups"]}
    assert rows["华东"]["mae"] == pytest.approx(0.5) and rows["<b>north</b>"]["mae"] == pytest.approx(2.5 / 3)
    assert rows["华东"]["mean_prediction"] == pytest.approx(5.5 / 3)
    assert res["mae_gap"] == pytest.approx(2.5 / 3 - 0.5) and res["worst_group"] == "<b>north</b>"
    html = fairness_sections({**res, "split": "test", "group_column": "区域"})[0][1]
    assert "华东" in html and "&lt;b&gt;north&lt;/b&gt;" in html and "<b>north</b>" not in html


def test_vader_domains_carries_a_real_group_column(tmp_path):
    import gzip

    from taskfit.data.packaged import write_dataset
    from taskfit.data.packaged.groups import ASSETS, vader_domain_rows

    df = pd.read_csv(write_dataset("vader_domains", tmp_path / "v.csv", n=400, seed=0))
    assert list(df.columns) == ["text", "label", "domain"]
    assert set(df["domain"]) == {"tweet", "movie_review", "product_review", "news_editorial"}
    # labels follow the sign of the human rating; near-neutral ratings are left out
    with gzip.open(ASSETS / "vader_tweets.tsv.gz", "rt", encoding="utf-8") as fh:
        lines = [ln for ln in fh if not ln.startswith("#")][1:]  # after the comment header and the column names
    ratings = [float(ln.split("\t")[1]) for ln in lines if ln.strip()]
    tweets = [lab for _, lab, dom in vader_domain_rows() if dom == "tweet"]
    assert tweets.count("pos") == sum(r >= 0.5 for r in ratings)
    assert tweets.count("neg") == sum(r <= -0.5 for r in ratings)


def test_threshold_mitigation_narrows_a_built_in_gap():
    rng = np.random.default_rng(0)
    n = 1200
    groups = np.where(rng.random(n) < 0.5, "a", "b")
    y = (rng.random(n) < 0.5).astype(int)
    # the scores favour group a by +0.25 regardless of the truth: a demographic-parity gap by construction
    scores = np.clip(0.25 + 0.3 * y + rng.normal(0, 0.12, n) + np.where(groups == "a", 0.2, -0.05), 0, 1)
    half = n // 2
    for constraint in ("demographic_parity", "equalized_odds"):
        res = mitigate_thresholds(scores[:half], y[:half], groups[:half], scores[half:], y[half:], groups[half:],
                                  constraint)
        before, after = res["before"], res["after"]
        f = pd.DataFrame({"g": groups[half:], "p": (scores[half:] >= 0.5).astype(int)})
        sel = f.groupby("g")["p"].mean()
        assert before["demographic_parity_difference"] == pytest.approx(sel.max() - sel.min())
        assert before["demographic_parity_difference"] > 0.3
        assert after["demographic_parity_difference"] < before["demographic_parity_difference"] / 3
        key = "demographic_parity_difference" if constraint == "demographic_parity" else "equalized_odds_difference"
        assert after[key] < before[key] / 3 and after["accuracy"] > before["accuracy"]


def _recipe(tmp_path: Path, train: Path, **fairness: object) -> dict:
    return {"data": {"train": str(train)}, "model": {"name": "all-MiniLM-L6-v2"},
            "fairness": {"group_column": "g", **fairness}, "output": {"dir": str(tmp_path)}}


def test_problems_are_found_before_training(tmp_path, bbc):
    train = tmp_path / "train.csv"
    bbc[["text", "label", "g"]].to_csv(train, index=False)
    test = tmp_path / "test.csv"
    bbc[["text", "label"]].head(20).to_csv(test, index=False)
    recipe = _recipe(tmp_path, train)
    assert recipe_problems(parse_recipe(recipe)) == []
    recipe["data"]["test"] = str(test)
    (line,) = recipe_problems(parse_recipe(recipe))
    assert line.startswith("fairness.group_column: column 'g' not found in data.test file")
    assert str(test) in line and "available columns: text, label" in line
    bad = recipe_problems(parse_recipe(_recipe(tmp_path, train, positive_label="sport", mitigate=True)))
    assert any("fairness.positive_label: 'sport' is not one of the labels" in p and "'sports'" in p for p in bad)
    assert any("fairness.mitigate: threshold mitigation needs a binary task; found 5 labels" in p for p in bad)
    no_test = _recipe(tmp_path, train, mitigate=True)
    no_test["data"]["test_fraction"] = 0
    assert any(p.startswith("fairness.mitigate: thresholds are fitted on validation and judged on test rows")
               for p in recipe_problems(parse_recipe(no_test)))
    reg = _recipe(tmp_path, train, mitigate=True)
    reg["task"] = "regression"
    assert any(p.startswith("fairness.mitigate: only classification") for p in recipe_problems(parse_recipe(reg)))
    ner = _recipe(tmp_path, train)
    ner["task"] = "ner"
    assert recipe_problems(parse_recipe(ner))[0].startswith("fairness: task 'ner' has no per-group evaluation")
    from taskfit.validate import input_problems  # the same lines reach `taskfit validate` / train

    assert any(p.startswith("fairness.group_column") for p in input_problems(parse_recipe(recipe)))


def test_missing_group_column_at_evaluation_names_file_and_columns(tmp_path, bbc):
    from taskfit.tasks import TASKS

    train = tmp_path / "nogroup.csv"
    bbc[["text", "label"]].to_csv(train, index=False)
    recipe = parse_recipe(_recipe(tmp_path, train))
    task = TASKS.get("text_classification").from_config(recipe.task, recipe.data)
    splits = task.load_splits(recipe.data)
    import torch

    # the check runs before the model is touched: no model is needed to see it fail
    with pytest.raises(DataError) as err:
        evaluate_fairness(task, torch.nn.Identity(), {"test": None, "valid": None}, splits,  # type: ignore[dict-item]
                          FairnessConfig(group_column="g"), torch.device("cpu"), None)
    msg = str(err.value)
    assert str(train) in msg and "column 'g' is not in the test rows; available columns: text, label" in msg


@pytest.mark.slow
def test_a_run_with_fairness_writes_results_and_report(tmp_path, bbc, tiny_model_dir):
    from taskfit.inference import Predictor
    from taskfit.pipeline import train_recipe

    two = bbc[bbc["label"].isin(["business", "sports"])].reset_index(drop=True)
    two.iloc[:90].to_csv(tmp_path / "train.csv", index=False)
    two.iloc[90:].to_csv(tmp_path / "test.csv", index=False)
    recipe = {"data": {"train": str(tmp_path / "train.csv"), "test": str(tmp_path / "test.csv"),
                       "valid_fraction": 0.3, "max_length": 64},
              "model": {"name": str(tiny_model_dir)}, "method": {"name": "full"},
              "train": {"max_steps": 2, "batch_size": 16, "lr": 1e-4, "precision": "fp32", "attention": "eager"},
              "fairness": {"group_column": "g", "mitigate": True},
              "output": {"dir": str(tmp_path / "runs"), "name": "fair"}}
    with pytest.raises(ConfigError):  # the same recipe without the column in test fails before training
        bad = {**recipe, "data": {**recipe["data"], "test": str(tmp_path / "train_nog.csv")}}
        two.iloc[90:][["text", "label"]].to_csv(tmp_path / "train_nog.csv", index=False)
        train_recipe(parse_recipe(bad))
    summary = train_recipe(parse_recipe(recipe))
    res = json.loads((summary.run_dir / "results.json").read_text())["fairness"]
    assert res["group_column"] == "g" and res["split"] == "test" and res["positive_label"] == "sports"
    # the per-group accuracy equals one computed from the saved model's own predictions
    test = two.iloc[90:].reset_index(drop=True)
    p = Predictor.load(summary.run_dir)
    pred = np.array(p.labels)[p.predict_proba(test["text"].tolist()).argmax(axis=1)]
    acc = (pd.Series(pred == test["label"].to_numpy()).groupby(test["g"]).mean())
    assert {r["group"]: r["accuracy"] for r in res["groups"]} == pytest.approx(acc.to_dict())
    assert res["overall"]["n"] == len(test)
    # the audit's path (labelled rows from a file, the saved model) gives the same table
    from taskfit.trust.fairness import fairness_on_frame

    again = fairness_on_frame(p.task, p.model, p.processor, p.labels, test, FairnessConfig(group_column="g"), p.device,
                              None)
    for key in ("accuracy", "selection_rate", "tpr", "fpr"):
        expected = {r["group"]: r[key] for r in res["groups"]}
        assert {r["group"]: r[key] for r in again["groups"]} == pytest.approx(expected)
    assert again["worst_group"] == res["worst_group"]
    mit = res["mitigation"]
    assert mit["fitted_on"] == "valid" and set(mit["before"]) >= {"accuracy", "demographic_parity_difference"}
    html = (summary.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Fairness by group" in html and "threshold mitigation" in html
