"""Regression task: reading scores, bad inputs, checks, splits, metrics and target normalisation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskfit.config import DataConfig, RegressionOptions
from taskfit.errors import DataError
from taskfit.tasks.regression import Regression, regression_metrics


def write_csv(path: Path, rows: list[tuple[str, object]]) -> Path:
    pd.DataFrame(rows, columns=["text", "score"]).to_csv(path, index=False)
    return path


def scored_rows(n: int = 60) -> list[tuple[str, object]]:
    # English and Chinese texts; scores spread over -2..4 so quantile bins have rows
    return [(f"review number {i}" if i % 2 else f"第{i}条评论", round(-2 + 6 * i / n, 3)) for i in range(n)]


def cfg(train: Path, **kw: object) -> DataConfig:
    return DataConfig.model_validate({"train": train, "label": "score", **kw})


def test_reads_floats_and_splits_by_seed(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "s.csv", scored_rows())
    task = Regression()
    task.label = "score"
    splits = task.load_splits(cfg(path))
    assert set(splits.frames) == {"train", "valid", "test"} and splits.labels == []
    rows = [set(df["_row"]) for df in splits.frames.values()]
    assert sum(len(r) for r in rows) == 60 and not (rows[0] & rows[1]) and not (rows[0] & rows[2])
    assert splits.frames["train"]["score"].dtype == float
    # quantile-stratified: the held-out splits cover low and high scores
    assert splits.frames["test"]["score"].min() < 0 < 2 < splits.frames["test"]["score"].max()
    train = splits.frames["train"]["score"]
    assert task.target_mean == pytest.approx(train.mean()) and task.target_sd == pytest.approx(train.std(ddof=0))
    again = Regression()
    again.label = "score"
    assert again.load_splits(cfg(path)).frames["valid"]["_row"].tolist() == splits.frames["valid"]["_row"].tolist()


def test_non_numeric_scores_name_file_rows_and_values(tmp_path: Path) -> None:
    rows = scored_rows(20)
    rows[1], rows[4], rows[6] = ("bad one", "high"), ("bad two", "nan"), ("bad three", "inf")
    path = write_csv(tmp_path / "bad.csv", rows)
    task = Regression()
    task.label = "score"
    with pytest.raises(DataError) as e:
        task.load_splits(cfg(path))
    msg = str(e.value)
    assert "3 value(s) of the target column are not finite numbers" in msg
    assert "'high'" in msg and "'inf'" in msg and "'nan'" in msg
    assert "bad.csv" in msg and "rows 2, 5, 7" in msg


def test_constant_target_is_an_error(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "flat.csv", [(f"text {i}", 3) for i in range(30)])
    task = Regression()
    task.label = "score"
    with pytest.raises(DataError, match=r"same value \(3.0\); there is nothing to learn"):
        task.load_splits(cfg(path))


def test_same_text_different_scores_warns_with_rows(tmp_path: Path) -> None:
    rows = scored_rows(40)
    rows[3] = ("review number 1", 4.0)  # row 4 repeats row 2's text with another score
    path = write_csv(tmp_path / "dup.csv", rows)
    task = Regression()
    task.label = "score"
    issues = task.load_splits(cfg(path, valid_fraction=0.2, test_fraction=0.0)).issues
    found = [i for i in issues if i["check"] == "conflicting_scores"]
    assert found and found[0]["severity"] == "warning" and found[0]["rows"] == [2, 4]
    assert "different score" in found[0]["message"]


def test_empty_text_follows_checks(tmp_path: Path) -> None:
    rows = scored_rows(30)
    rows[5] = ("  ", 1.0)
    path = write_csv(tmp_path / "e.csv", rows)
    task = Regression()
    task.label = "score"
    splits = task.load_splits(cfg(path))
    assert 6 not in set().union(*(set(df["_row"]) for df in splits.frames.values()))
    with pytest.raises(DataError, match=r"empty text .*rows 6"):
        task.load_splits(cfg(path, checks={"empty_text": "error"}))


def test_metrics_match_hand_computed_values() -> None:
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.5, 5.0])
    m = regression_metrics(y, pred)
    assert m["mae"] == pytest.approx((0.5 + 0 + 0.5 + 1) / 4)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 0.25 + 1) / 4))
    assert m["r2"] == pytest.approx(1 - 1.5 / 5.0)  # SS_res 1.5, SS_tot 5
    assert m["spearman"] == pytest.approx(1.0)  # same order
    yc, pc = y - y.mean(), pred - pred.mean()
    assert m["pearson"] == pytest.approx(float(yc @ pc / math.sqrt((yc @ yc) * (pc @ pc))))
    flat = regression_metrics(y, np.full(4, 2.5))
    assert math.isnan(flat["spearman"]) and flat["r2"] == pytest.approx(0.0)


def test_normalisation_round_trip(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_csv(tmp_path / "s.csv", scored_rows())
    task = Regression(RegressionOptions(normalize=True), label="score", max_length=16)
    splits = task.load_splits(cfg(path))
    tok = task.load_processor(tiny_model_dir)
    enc = task.encode(splits.frames["train"], tok, [])
    assert enc["targets"].mean() == pytest.approx(0.0, abs=1e-5) and enc["targets"].std() == pytest.approx(1.0, 1e-4)
    # taskfit.json round trip: the rebuilt task maps model outputs back to the original units
    back = Regression.from_meta(task.meta())
    assert isinstance(back, Regression)
    preds = back.format_predictions([np.float32(0.0), np.float32(1.0)], [], 3)
    assert preds[0]["score"] == pytest.approx(task.target_mean)
    assert preds[1]["score"] == pytest.approx(task.target_mean + task.target_sd)
    # metrics are in the original units even though targets are standardised
    perfect = back.metrics(enc, list(enc["targets"]), [])
    assert perfect["rmse"] == pytest.approx(0.0, abs=1e-5) and perfect["loss"] == pytest.approx(0.0, abs=1e-9)
    raw = Regression(RegressionOptions(normalize=False), label="score", max_length=16)
    raw.load_splits(cfg(path))
    enc_raw = raw.encode(splits.frames["train"], tok, [])
    assert np.allclose(enc_raw["targets"], splits.frames["train"]["score"].to_numpy())


def test_tiny_model_batch_loss_and_predict(tmp_path: Path, tiny_model_dir: Path) -> None:
    path = write_csv(tmp_path / "s.csv", scored_rows())
    task = Regression(label="score", max_length=16)
    splits = task.load_splits(cfg(path))
    tok = task.load_processor(tiny_model_dir)
    model, heads = task.build_model(tiny_model_dir, [], attention="eager")
    assert heads == ["classifier"] and model.config.problem_type == "regression"
    enc = task.encode(splits.frames["train"], tok, [])
    batch = task.collate(enc, np.arange(4), train=True)
    assert batch["labels"].dtype == torch.float32 and batch["labels"].shape == (4,)
    loss = task.loss(model, batch)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)
    out = task.predict(model, tok, ["great", "很好"], [], torch.device("cpu"), None)
    assert [set(p) for p in out] == [{"score"}, {"score"}] and all(math.isfinite(p["score"]) for p in out)
