"""Metrics checked against values computed by hand."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from rich.cells import cell_len
from sklearn.metrics import classification_report

from taskfit.errors import DataError
from taskfit.evaluate.metrics import (
    classification_metrics,
    expected_calibration_error,
    format_classification_report,
)

LABELS = ["cat", "dog", "bird"]
Y_TRUE = np.array([0, 0, 1, 1, 2, 2])
# Predictions (argmax): 0, 1, 1, 1, 2, 0 -> rows 1 and 5 are wrong.
PROBS = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.3, 0.6, 0.1],
        [0.1, 0.8, 0.1],
        [0.2, 0.7, 0.1],
        [0.1, 0.1, 0.8],
        [0.5, 0.1, 0.4],
    ]
)


@pytest.fixture(scope="module")
def metrics() -> dict:
    return classification_metrics(Y_TRUE, PROBS, LABELS)


def test_hand_computed_scores(metrics: dict) -> None:
    # cat: TP 1 of 2 predicted, 2 true -> P 1/2, R 1/2, F1 1/2
    # dog: TP 2 of 3 predicted, 2 true -> P 2/3, R 1,   F1 4/5
    # bird: TP 1 of 1 predicted, 2 true -> P 1,  R 1/2, F1 2/3
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    assert metrics["per_class"]["cat"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2}
    )
    assert metrics["per_class"]["dog"] == pytest.approx(
        {"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2}
    )
    assert metrics["per_class"]["bird"] == pytest.approx(
        {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}
    )
    assert metrics["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert metrics["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert metrics["macro_recall"] == pytest.approx(2 / 3)
    assert metrics["weighted_f1"] == pytest.approx(metrics["macro_f1"])  # equal supports
    assert metrics["n"] == 6
    assert metrics["labels"] == LABELS


def test_confusion_matrix_rows_true_cols_predicted(metrics: dict) -> None:
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]


def test_log_loss_and_ece(metrics: dict) -> None:
    true_prob = [0.7, 0.3, 0.8, 0.7, 0.8, 0.4]
    assert metrics["log_loss"] == pytest.approx(-sum(math.log(p) for p in true_prob) / 6)
    # Confidences 0.7 0.6 0.8 0.7 0.8 0.5 with right-closed bins: (0.4,0.5]: 0.5 wrong -> gap 0.5;
    # (0.5,0.6]: 0.6 wrong -> 0.6; (0.6,0.7]: two right -> 0.3 each; (0.7,0.8]: two right -> 0.2 each.
    assert metrics["ece"] == pytest.approx((0.5 + 0.6 + 2 * 0.3 + 2 * 0.2) / 6)
    assert metrics["calibration"]["bin_count"] == [0, 0, 0, 0, 1, 1, 2, 2, 0, 0]


def test_result_is_json_serialisable(metrics: dict) -> None:
    assert json.loads(json.dumps(metrics)) == metrics


def test_ece_constructed_case() -> None:
    # 10 predictions at 0.95 with 8 right (gap 0.15) and 10 at 0.65 with 7 right (gap 0.05).
    conf = np.array([0.95] * 10 + [0.65] * 10)
    correct = np.array([1] * 8 + [0] * 2 + [1] * 7 + [0] * 3)
    ece, cal = expected_calibration_error(conf, correct, n_bins=10)
    assert ece == pytest.approx((10 * 0.15 + 10 * 0.05) / 20)
    assert cal["bin_count"][9] == 10
    assert cal["bin_count"][6] == 10
    assert cal["bin_accuracy"][9] == pytest.approx(0.8)
    assert cal["bin_confidence"][6] == pytest.approx(0.65)
    assert cal["bin_accuracy"][0] is None  # empty bins are None, not a fake 0
    assert len(cal["bin_edges"]) == 11


def test_ece_perfectly_calibrated_and_confidence_one() -> None:
    ece, cal = expected_calibration_error(np.array([1.0, 1.0, 0.0]), np.array([1, 1, 0]), n_bins=5)
    assert ece == pytest.approx(0.0)
    assert cal["bin_count"] == [1, 0, 0, 0, 2]


def test_class_absent_everywhere_is_excluded_from_macro() -> None:
    probs4 = np.hstack([PROBS, np.zeros((6, 1))])
    m = classification_metrics(Y_TRUE, probs4, [*LABELS, "fish"])
    assert m["per_class"]["fish"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["confusion_matrix"][3] == [0, 0, 0, 0]
    assert [row[3] for row in m["confusion_matrix"]] == [0, 0, 0, 0]


def test_class_predicted_but_never_true_counts_in_macro() -> None:
    y = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.05, 0.05], [0.1, 0.1, 0.8], [0.1, 0.8, 0.1], [0.2, 0.7, 0.1]])
    m = classification_metrics(y, probs, ["a", "b", "c"])
    # a: P 1, R 1/2, F1 2/3; b: F1 1; c: predicted once, never true -> F1 0, still averaged in.
    assert m["per_class"]["c"]["support"] == 0
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)
    assert m["weighted_f1"] == pytest.approx((2 / 3 + 1.0) / 2)


@pytest.mark.parametrize(
    ("y", "probs", "labels", "match"),
    [
        (Y_TRUE, PROBS * 5, LABELS, "sum to 1"),
        (Y_TRUE, PROBS - 0.5, LABELS, "non-negative"),
        (np.array([0, 0, 1, 1, 2, 3]), PROBS, LABELS, "outside"),
        (Y_TRUE, PROBS, ["a", "b"], "3 columns but 2 labels"),
        (Y_TRUE[:5], PROBS, LABELS, "rows"),
        (np.array([], dtype=int), np.zeros((0, 3)), LABELS, "zero rows"),
        (Y_TRUE, PROBS, ["a", "a", "b"], "unique"),
    ],
)
def test_invalid_inputs_raise_data_error(
    y: np.ndarray, probs: np.ndarray, labels: list[str], match: str
) -> None:
    with pytest.raises(DataError, match=match):
        classification_metrics(y, probs, labels)


def test_report_text_matches_sklearn_layout(metrics: dict) -> None:
    expected = classification_report(Y_TRUE, PROBS.argmax(axis=1), target_names=LABELS, digits=4)
    assert format_classification_report(metrics).rstrip() == expected.rstrip()


def test_report_aligns_chinese_labels() -> None:
    labels = ["正面", "负面情绪", "neutral"]
    m = classification_metrics(Y_TRUE, PROBS, labels)
    text = format_classification_report(m, digits=3)
    lines = [line for line in text.splitlines() if line.strip()]
    for label in labels:
        assert label in text
    assert len({cell_len(line) for line in lines}) == 1, text
    # The first number of every class row starts in the same terminal column.
    rows = [line for line in lines if line.strip().split()[0] in labels]
    assert len(rows) == 3
    assert len({cell_len(line[: re.search(r"\d\.\d", line).start()]) for line in rows}) == 1
    assert "0.500" in text
    assert "0.667" in text
