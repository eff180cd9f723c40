"""Classification metrics computed from predicted probabilities.

Everything returned here is plain Python (``float``, ``int``, ``list``, ``dict``, ``None``) so that a
metrics dict can be written with ``json.dumps`` as-is and read back by the report and console code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from rich.cells import cell_len

from taskfit.errors import DataError

# Probabilities are clipped before the log so that one confidently wrong row gives a large but finite
# log loss instead of ``inf`` (which is not valid JSON).
_LOG_EPS = 1e-15
# Softmax in float16/bfloat16 can be off by a few thousandths; anything further from 1 is almost
# certainly logits passed by mistake, which would silently produce meaningless metrics.
_ROW_SUM_ATOL = 1e-2


def expected_calibration_error(
    confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10
) -> tuple[float, dict[str, Any]]:
    """Expected calibration error over equal-width confidence bins.

    Bins are right-closed, ``(lo, hi]``, except the first which also includes 0, so a confidence of
    exactly 1.0 lands in the last bin. ECE is ``sum_b |acc_b - conf_b| * n_b / N``.

    Args:
        confidence: shape ``[N]``, the confidence of each prediction in ``[0, 1]``.
        correct: shape ``[N]``, whether each prediction was right (bool or 0/1).
        n_bins: number of equal-width bins on ``[0, 1]``.

    Returns:
        ``(ece, calibration)`` where ``calibration`` has ``bin_edges`` (``n_bins + 1`` floats) and,
        per bin, ``bin_confidence`` and ``bin_accuracy`` (``None`` for empty bins) and ``bin_count``.

    Raises:
        DataError: on empty or mismatched inputs, confidences outside ``[0, 1]`` or ``n_bins < 1``.
    """
    conf = np.asarray(confidence, dtype=np.float64).reshape(-1)
    corr = np.asarray(correct, dtype=np.float64).reshape(-1)
    if n_bins < 1:
        raise DataError(f"n_bins must be >= 1, got {n_bins}.")
    if conf.size == 0 or conf.shape != corr.shape:
        raise DataError(f"ECE needs equally long non-empty inputs, got {conf.size} and {corr.size} values.")
    if not np.all(np.isfinite(conf)) or conf.min() < 0.0 or conf.max() > 1.0:
        raise DataError("Confidences must be finite and within [0, 1].")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # searchsorted on the inner edges with side="left" gives right-closed bins (lo, hi].
    idx = np.searchsorted(edges[1:-1], conf, side="left")
    counts = np.bincount(idx, minlength=n_bins)
    conf_sum = np.bincount(idx, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(idx, weights=corr, minlength=n_bins)
    nonempty = counts > 0
    mean_conf = np.divide(conf_sum, counts, out=np.zeros(n_bins), where=nonempty)
    mean_acc = np.divide(acc_sum, counts, out=np.zeros(n_bins), where=nonempty)
    ece = float(np.sum(np.abs(mean_acc - mean_conf) * counts) / conf.size)
    calibration = {
        "bin_edges": [float(e) for e in edges],
        "bin_confidence": [float(c) if ok else None for c, ok in zip(mean_conf, nonempty, strict=True)],
        "bin_accuracy": [float(a) if ok else None for a, ok in zip(mean_acc, nonempty, strict=True)],
        "bin_count": [int(c) for c in counts],
    }
    return ece, calibration


def _validate(y_true: np.ndarray, probs: np.ndarray, labels: list[str]) -> None:
    """Raise :class:`DataError` with a precise message if the inputs cannot be scored."""
    if probs.ndim != 2 or y_true.ndim != 1:
        raise DataError(f"Expected y_true [N] and probs [N, C], got shapes {y_true.shape} and {probs.shape}.")
    if y_true.shape[0] != probs.shape[0]:
        raise DataError(f"y_true has {y_true.shape[0]} rows but probs has {probs.shape[0]}.")
    if y_true.shape[0] == 0:
        raise DataError("Cannot compute metrics on zero rows.")
    if probs.shape[1] != len(labels):
        raise DataError(f"probs has {probs.shape[1]} columns but {len(labels)} labels were given.")
    if len(set(labels)) != len(labels):
        raise DataError(f"Labels must be unique, got {labels!r}.")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise DataError(f"y_true must hold integer class ids, got dtype {y_true.dtype}.")
    bad = np.flatnonzero((y_true < 0) | (y_true >= len(labels)))
    if bad.size:
        raise DataError(
            f"y_true holds class ids outside [0, {len(labels) - 1}], e.g. {int(y_true[bad[0]])}.",
            rows=[int(i) + 1 for i in bad[:20]],
        )
    if not np.all(np.isfinite(probs)) or probs.min() < 0.0:
        raise DataError("probs must be finite and non-negative (pass softmax probabilities, not logits).")
    sums = probs.sum(axis=1)
    off = np.flatnonzero(np.abs(sums - 1.0) > _ROW_SUM_ATOL)
    if off.size:
        raise DataError(
            f"probs rows must sum to 1 (softmax probabilities, not logits); row {int(off[0]) + 1} "
            f"sums to {float(sums[off[0]]):.4f}.",
            rows=[int(i) + 1 for i in off[:20]],
        )


def classification_metrics(
    y_true: np.ndarray, probs: np.ndarray, labels: list[str], n_bins: int = 10
) -> dict[str, Any]:
    """Score single-label classification predictions.

    Macro averages are taken over the classes that occur in ``y_true`` or in the predictions, as
    scikit-learn does by default: a class absent from both (e.g. a rare class missing from a small
    test split) says nothing about the model and would otherwise drag macro-F1 down with a fake 0.
    A class that is predicted but never true still counts (its precision is 0). Per-class rows are
    reported for every label, with zeros where undefined.

    Args:
        y_true: shape ``[N]``, integer class ids in ``[0, C)``.
        probs: shape ``[N, C]``, predicted probabilities; rows sum to 1.
        labels: the ``C`` class names, in class-id order.
        n_bins: number of bins for the expected calibration error.

    Returns:
        A JSON-serialisable dict with ``accuracy``, ``macro_f1``, ``weighted_f1``, ``macro_precision``,
        ``macro_recall``, ``weighted_precision``, ``weighted_recall``, ``ece``, ``log_loss``, ``n``,
        ``labels``, ``per_class`` (label -> precision/recall/f1/support), ``confusion_matrix``
        (rows = true, columns = predicted, in ``labels`` order) and ``calibration`` (see
        :func:`expected_calibration_error`).

    Raises:
        DataError: if shapes, class ids or probabilities are invalid.
    """
    from sklearn.metrics import confusion_matrix  # scikit-learn loads in ~1 s: only when scores are computed

    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    labels = [str(label) for label in labels]
    _validate(y_true, probs, labels)
    y_pred = probs.argmax(axis=1)
    ece, calibration = expected_calibration_error(probs.max(axis=1), y_pred == y_true, n_bins)
    true_prob = np.clip(probs[np.arange(len(y_true)), y_true], _LOG_EPS, 1.0)
    ids = list(range(len(labels)))
    return {
        "accuracy": float(np.mean(y_pred == y_true)),
        **_averaged_scores(y_true, y_pred, labels),
        "ece": ece,
        "log_loss": float(-np.mean(np.log(true_prob))),
        "n": len(y_true),
        "labels": labels,
        "confusion_matrix": confusion_matrix(y_true, y_pred, labels=ids).astype(int).tolist(),
        "calibration": calibration,
    }


def _averaged_scores(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Per-class precision/recall/F1/support plus their macro and support-weighted averages."""
    from sklearn.metrics import precision_recall_fscore_support

    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=list(range(len(labels))), zero_division=0
    )
    # Macro averages skip classes that are neither true nor predicted (see classification_metrics).
    seen = np.zeros(len(labels), dtype=bool)
    seen[y_true] = True
    seen[y_pred] = True
    weights = support / support.sum()
    scores: dict[str, Any] = {}
    for name, values in (("precision", precision), ("recall", recall), ("f1", f1)):
        scores[f"macro_{name}"] = float(values[seen].mean())
        scores[f"weighted_{name}"] = float(np.sum(values * weights))
    scores["per_class"] = {
        label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(n)}
        for label, p, r, f, n in zip(labels, precision, recall, f1, support, strict=True)
    }
    return scores


def _pad_left(text: str, width: int) -> str:
    """Right-align ``text`` in ``width`` terminal cells (CJK characters take two cells each)."""
    return " " * max(0, width - cell_len(text)) + text


def _weighted(metrics: dict[str, Any], key: str) -> float:
    """Support-weighted average of a per-class value, for dicts that lack ``weighted_<key>``."""
    if f"weighted_{key}" in metrics:
        return float(metrics[f"weighted_{key}"])
    rows = metrics["per_class"].values()
    total = sum(r["support"] for r in rows)
    return sum(r[key] * r["support"] for r in rows) / total if total else 0.0


def format_classification_report(metrics: dict[str, Any], digits: int = 4) -> str:
    """Render a metrics dict as a text table in the style of scikit-learn's ``classification_report``.

    Padding counts display cells rather than characters, so Chinese (double-width) labels line up.

    Args:
        metrics: a dict returned by :func:`classification_metrics`.
        digits: decimals shown for precision, recall and F1.

    Returns:
        The table as one string, ending with a newline.
    """
    per_class: dict[str, dict[str, Any]] = metrics["per_class"]
    averages = ["macro avg", "weighted avg"]
    name_w = max([cell_len(str(label)) for label in per_class] + [cell_len(a) for a in averages] + [digits])
    col_w = max(9, digits + 2)
    headers = ["precision", "recall", "f1-score", "support"]

    def row(name: str, cells: list[str]) -> str:
        return _pad_left(name, name_w) + " " + "".join(" " + c.rjust(col_w) for c in cells)

    def nums(p: float, r: float, f: float, s: int) -> list[str]:
        return [f"{p:.{digits}f}", f"{r:.{digits}f}", f"{f:.{digits}f}", str(s)]

    lines = [row("", headers), ""]
    for label, m in per_class.items():
        lines.append(row(str(label), nums(m["precision"], m["recall"], m["f1"], m["support"])))
    n = int(metrics["n"])
    lines += ["", row("accuracy", ["", "", f"{metrics['accuracy']:.{digits}f}", str(n)])]
    lines.append(
        row("macro avg", nums(metrics["macro_precision"], metrics["macro_recall"], metrics["macro_f1"], n))
    )
    weighted = nums(_weighted(metrics, "precision"), _weighted(metrics, "recall"), metrics["weighted_f1"], n)
    lines.append(row("weighted avg", weighted))
    return "\n".join(lines) + "\n"
