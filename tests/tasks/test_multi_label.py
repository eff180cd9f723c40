"""Multi-label task: label parsing, readers, bad inputs, metrics, threshold tuning and predictions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskfit.config import DataConfig, MultiLabelOptions
from taskfit.errors import DataError
from taskfit.tasks.multi_label import MultiLabel, best_threshold, multi_label_metrics, parse_labels

LABELS = ["billing", "refund", "退款"]


def rows(n: int = 60) -> list[tuple[str, str]]:
    sets = ["billing", "refund", "billing|refund", "", "退款", "billing|退款"]
    return [(f"message {i}" if i % 2 else f"第{i}条消息", sets[i % len(sets)]) for i in range(n)]


def write_csv(path: Path, data: list[tuple[str, str]]) -> Path:
    pd.DataFrame(data, columns=["text", "labels"]).to_csv(path, index=False)
    return path


def cfg(train: Path, **kw: object) -> DataConfig:
    return DataConfig.model_validate({"train": train, "label": "labels", **kw})


def task_for(**opts: object) -> MultiLabel:
    return MultiLabel(MultiLabelOptions(**opts), label="labels", max_length=16)


def test_parse_labels_forms() -> None:
    assert parse_labels("b|a", "|") == ("a", "b")
    assert parse_labels(' a | a |', "|") == ("a",)
    assert parse_labels('["退款", "billing"]', "|") == ("billing", "退款")
    assert parse_labels(["x", "y"], "|") == ("x", "y")
    assert parse_labels("", "|") == () and parse_labels(float("nan"), "|") == () and parse_labels(None, "|") == ()
    assert parse_labels("a;b", ";") == ("a", "b")
    with pytest.raises(ValueError):
        parse_labels('[{"a": 1}]', "|")


def test_reads_csv_and_jsonl_lists(tmp_path: Path) -> None:
    splits = task_for().load_splits(cfg(write_csv(tmp_path / "t.csv", rows())))
    assert splits.labels == LABELS
    assert set(splits.frames) == {"train", "valid", "test"}
    total = sum(len(df) for df in splits.frames.values())
    assert total == 60
    stats = task_for().data_stats(splits)
    assert sum(stats["rows_without_label"].values()) == 10  # the empty sets are kept and counted
    path = tmp_path / "t.jsonl"
    with open(path, "w", encoding="utf-8") as fh:
        for text, labs in rows(30):
            fh.write(json.dumps({"text": text, "labels": [v for v in labs.split("|") if v]}, ensure_ascii=False) + "\n")
    js = task_for().load_splits(cfg(path, valid_fraction=0.2, test_fraction=0.0))
    assert js.labels == LABELS and set(js.frames["train"]["labels"]) <= {(), ("billing",), ("refund",),
                                                                         ("billing", "refund"), ("退款",),
                                                                         ("billing", "退款")}


def test_unknown_label_in_valid_names_rows_and_labels(tmp_path: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows())
    valid = write_csv(tmp_path / "valid.csv", [("x one", "billing"), ("x two", "billing|fraud"), ("x three", "spam")])
    with pytest.raises(DataError) as e:
        task_for().load_splits(cfg(train, valid=valid))
    msg = str(e.value)
    assert "valid: 2 row(s) have label(s) ['fraud', 'spam'] not in the label set of train" in msg
    assert "valid.csv" in msg and "rows 2, 3" in msg


def test_bad_json_list_and_no_labels(tmp_path: Path) -> None:
    data = rows(20)
    data[2] = ("broken", '["billing", ')
    bad_json = r"row 3, column 'labels'\] 1 label cell\(s\) start with '\[' but are not a JSON list"
    with pytest.raises(DataError, match=bad_json):
        task_for().load_splits(cfg(write_csv(tmp_path / "j.csv", data)))
    empty = write_csv(tmp_path / "none.csv", [(f"t {i}", "") for i in range(20)])
    with pytest.raises(DataError, match="No row of train has a label"):
        task_for().load_splits(cfg(empty))
    with pytest.raises(DataError, match=r"column 'body' not found in .*c.csv; available columns: text, labels"):
        MultiLabel(text="body", label="labels").load_splits(cfg(write_csv(tmp_path / "c.csv", rows(5)), text="body"))


def test_metrics_match_hand_computed_values() -> None:
    truth = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], dtype=bool)
    probs = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.1], [0.2, 0.3]])
    m = multi_label_metrics(truth, probs, np.array([0.5, 0.5]), ["a", "b"])
    # a: pred [1,0,1,0] vs [1,1,0,0] → tp1 fp1 fn1; b: pred [0,1,0,0] vs [0,1,0,1] → tp1 fp0 fn1
    assert m["per_label"]["a"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2, "threshold": 0.5}
    assert m["per_label"]["b"]["precision"] == 1.0 and m["per_label"]["b"]["recall"] == 0.5
    assert m["per_label"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["micro_precision"] == pytest.approx(2 / 3) and m["micro_recall"] == pytest.approx(2 / 4)
    assert m["micro_f1"] == pytest.approx(2 * (2 / 3) * 0.5 / (2 / 3 + 0.5))
    assert m["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    assert m["subset_accuracy"] == pytest.approx(1 / 4)  # only row 1 is exactly right
    assert m["hamming_loss"] == pytest.approx(3 / 8)
    assert m["rows_without_label"] == 1 and m["n"] == 4


def test_threshold_tuning_picks_f1_optimal_threshold() -> None:
    probs = np.array([0.9, 0.8, 0.3, 0.2, 0.6])
    truth = np.array([True, True, True, False, False])
    # F1 by threshold: ≤0.20 → 0.75; 0.25–0.30 → 6/7 (best, tie); 0.35–0.60 → 0.667; 0.65–0.80 → 0.8
    assert best_threshold(probs, truth) == pytest.approx(0.30)  # of the tie, the one nearer 0.5
    assert best_threshold(probs, np.zeros(5, dtype=bool)) == 0.5


def test_evaluate_tunes_on_valid_only_and_meta_keeps_thresholds(tmp_path: Path, tiny_model_dir: Path) -> None:
    task = task_for()
    splits = task.load_splits(cfg(write_csv(tmp_path / "t.csv", rows())))
    tok = task.load_processor(tiny_model_dir)
    model, heads = task.build_model(tiny_model_dir, splits.labels, attention="eager")
    assert heads == ["classifier"] and model.config.problem_type == "multi_label_classification"
    # the head's bias starts at each label's log-odds in train (billing 3/6 of rows, refund 2/6, 退款 2/6)
    start = torch.sigmoid(model.classifier.bias.detach()).numpy()
    assert task.priors == pytest.approx(dict(zip(LABELS, start.tolist(), strict=True)), abs=1e-3)
    assert task.priors["billing"] == pytest.approx(0.5, abs=0.06)
    enc = {s: task.encode(df, tok, splits.labels) for s, df in splits.frames.items()}
    batch = task.collate(enc["train"], np.arange(4), train=True)
    assert batch["labels"].shape == (4, 3) and torch.isfinite(task.loss(model, batch))
    cpu = torch.device("cpu")
    task.evaluate(model, enc["test"], splits.labels, cpu, None)
    assert task.thresholds == {}  # the test split never tunes
    m = task.evaluate(model, enc["valid"], splits.labels, cpu, None)
    assert set(task.thresholds) == set(LABELS) and all(0.05 <= t <= 0.95 for t in task.thresholds.values())
    assert {k: v["threshold"] for k, v in m["per_label"].items()} == task.thresholds
    assert m["loss"] > 0 and math.isfinite(m["micro_f1"])
    back = MultiLabel.from_meta(task.meta())
    assert isinstance(back, MultiLabel) and back.thresholds == task.thresholds
    fixed = task_for(threshold=0.7)
    fixed.evaluate(model, enc["valid"], splits.labels, cpu, None)
    assert fixed.thresholds == {} and list(fixed.threshold_array(LABELS)) == [0.7, 0.7, 0.7]


def test_prediction_format() -> None:
    task = task_for(threshold=0.5)
    logits = np.log(np.array([0.8, 0.3, 0.6]) / (1 - np.array([0.8, 0.3, 0.6])))  # probabilities .8 .3 .6
    out = task.format_predictions([logits], LABELS, top_k=2)[0]
    assert out["labels"] == ["billing", "退款"]  # over the threshold, most probable first
    assert out["scores"] == pytest.approx({"billing": 0.8, "refund": 0.3, "退款": 0.6})
    assert [t["label"] for t in out["top"]] == ["billing", "退款"]


def test_packaged_writer_drops_texts_annotated_two_ways() -> None:
    from taskfit.data.packaged.multilabel import consistent_rows

    rows = [("rt same tweet", "person"), ("rt same tweet", "person|geo-loc"), ("other", ""), ("other", "")]
    assert consistent_rows(rows) == [("other", ""), ("other", "")]
