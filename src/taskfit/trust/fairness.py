"""Per-group evaluation (``fairness: {group_column: ...}``) with fairlearn.

After training, the test split (validation when there is none) is scored once and its rows are grouped by
the recipe's group column (carried through loading by ``data.keep_columns``). For classification we report
per group: rows, accuracy, macro-F1, selection rate (share predicted as the positive label; every label's
share for multi-class), true and false positive rates, and overall the demographic-parity difference and
ratio and the equalized-odds difference (fairlearn's definitions). Binary tasks use the positive label;
multi-class tasks without one are scored one-vs-rest per label and the label with the largest gap is the
headline. Regression reports per-group MAE, RMSE and mean prediction. Groups smaller than
:data:`MIN_GROUP_ROWS` are flagged (their rates are noisy), never hidden.

``mitigate: true`` (binary tasks) fits fairlearn's ``ThresholdOptimizer`` on the validation split's
positive-label probabilities and applies it to the test split: a before/after estimate of what per-group
thresholds would change. The saved model is not altered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin

from taskfit.errors import DataError

if TYPE_CHECKING:
    import torch

    from taskfit.config import FairnessConfig, Recipe
    from taskfit.data import Splits
    from taskfit.tasks.base import Encoded, Task

CLASSIFICATION_TASKS = ("text_classification",)
REGRESSION_TASKS = ("regression",)
#: groups with fewer rows than this are flagged "small": one or two rows move their rates a lot
MIN_GROUP_ROWS = 30
BLANK_GROUP = "(blank)"
#: one group value per row
Groups = Sequence[Any] | np.ndarray


# ---- checks before training ------------------------------------------------------------------------
def _source(recipe: Recipe, split: str) -> tuple[str, Path]:
    """(recipe key, file) a split is read from: its own file, else the train file it is cut from."""
    path = getattr(recipe.data, split)
    return (f"data.{split}", Path(path)) if path is not None else ("data.train", Path(recipe.data.train))


def _train_labels(recipe: Recipe) -> list[str] | None:
    """The label set (data.labels, else the distinct values of the train file's label column)."""
    if recipe.data.labels:
        return list(recipe.data.labels)
    from taskfit.data.readers import read_table

    try:
        frame = read_table(recipe.data.train)
    except (DataError, OSError):
        return None  # the task's own file checks report an unreadable file
    if recipe.data.label not in frame:
        return None
    # as the loader normalises them: 1.0 read from JSON/Parquet is the label "1"
    values = {str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip()
              for v in frame[recipe.data.label].dropna()}
    return sorted(values - {""})


def recipe_problems(recipe: Recipe) -> list[str]:
    """Problems of the ``fairness`` block: unsupported task, options that do not fit the task, and a group
    column missing from the file(s) the evaluated split comes from (found from the header only)."""
    cfg = recipe.fairness
    if cfg is None:
        return []
    task = recipe.task.name
    if task not in CLASSIFICATION_TASKS + REGRESSION_TASKS:
        return [f"fairness: task {task!r} has no per-group evaluation; supported tasks: "
                f"{', '.join(CLASSIFICATION_TASKS + REGRESSION_TASKS)}. Remove the fairness block."]
    problems: list[str] = []
    if task in REGRESSION_TASKS:
        for key in ("positive_label", "mitigate"):
            if getattr(cfg, key):
                problems.append(f"fairness.{key}: only classification tasks have a positive label or "
                                f"thresholds to mitigate; task {task!r} is a regression. Remove the option.")
    elif cfg.positive_label is not None or cfg.mitigate:
        labels = _train_labels(recipe)
        if labels is not None and cfg.positive_label is not None and cfg.positive_label not in labels:
            problems.append(f"fairness.positive_label: {cfg.positive_label!r} is not one of the labels "
                            f"{labels}; name one of them.")
        if labels is not None and cfg.mitigate and len(labels) != 2:
            problems.append(f"fairness.mitigate: threshold mitigation needs a binary task; found {len(labels)} "
                            "labels. Set mitigate: false.")
    evaluated = "test" if (recipe.data.test is not None or recipe.data.test_fraction > 0) else "valid"
    if cfg.mitigate and evaluated == "valid":
        problems.append("fairness.mitigate: thresholds are fitted on validation and judged on test rows; give "
                        "data.test or a data.test_fraction > 0.")
    splits = [evaluated] + (["valid"] if cfg.mitigate and evaluated != "valid" else [])
    from taskfit.data.readers import read_columns

    seen: set[Path] = set()
    for split in splits:
        key, path = _source(recipe, split)
        if path in seen or not path.exists():
            continue  # a missing file is already reported by the task's own checks
        seen.add(path)
        try:
            columns = read_columns(path)
        except DataError:
            continue
        if cfg.group_column not in columns:
            problems.append(f"fairness.group_column: column {cfg.group_column!r} not found in {key} file "
                            f"{str(path)!r} (the {split} rows come from it); available columns: "
                            f"{', '.join(columns)}.")
    return problems


# ---- metrics ---------------------------------------------------------------------------------------
def _num(x: Any) -> float | None:
    """A JSON-safe float (NaN/inf, e.g. a TPR of a group without positives, become None)."""
    v = float(x)
    return v if np.isfinite(v) else None


def group_values(values: Groups) -> np.ndarray:
    """Group names as strings; blank cells form their own visible group."""
    out = [str(v).strip() for v in values]
    return np.array([v if v else BLANK_GROUP for v in out], dtype=object)


def _gaps(y_bin: np.ndarray, pred_bin: np.ndarray, groups: np.ndarray) -> dict[str, float | None]:
    from fairlearn.metrics import (
        demographic_parity_difference,
        demographic_parity_ratio,
        equalized_odds_difference,
    )

    return {"demographic_parity_difference": _num(demographic_parity_difference(y_bin, pred_bin,
                                                                                sensitive_features=groups)),
            "demographic_parity_ratio": _num(demographic_parity_ratio(y_bin, pred_bin, sensitive_features=groups)),
            "equalized_odds_difference": _num(equalized_odds_difference(y_bin, pred_bin,
                                                                        sensitive_features=groups))}


def classification_fairness(y_true: np.ndarray, probs: np.ndarray, groups: Groups, labels: list[str],
                            positive: str | None = None, min_rows: int = MIN_GROUP_ROWS) -> dict[str, Any]:
    """Per-group and overall fairness metrics of a classifier.

    Args:
        y_true: int array [N]: true label indices.
        probs: float array [N, C]: predicted probabilities in ``labels`` order (prediction = argmax).
        groups: [N] group value of each row.
        labels: the C label names.
        positive: the favourable label; default the second label when C == 2, else None (one-vs-rest
            for every label, the largest demographic-parity gap is the headline).
        min_rows: groups with fewer rows are flagged ``small``.
    """
    from fairlearn.metrics import MetricFrame, false_positive_rate, true_positive_rate
    from sklearn.metrics import accuracy_score, f1_score

    g = group_values(groups)
    y_pred = probs.argmax(axis=1)
    if positive is None and len(labels) == 2:
        positive = labels[1]
    candidates = [positive] if positive is not None else list(labels)
    per_label = {}
    for lab in candidates:
        k = labels.index(lab)
        per_label[lab] = _gaps((y_true == k).astype(int), (y_pred == k).astype(int), g)
    head = max(candidates, key=lambda lab: per_label[lab]["demographic_parity_difference"] or 0.0)
    k = labels.index(head)
    yb, pb = (y_true == k).astype(int), (y_pred == k).astype(int)

    def macro_f1(t: np.ndarray, p: np.ndarray) -> float:
        return float(f1_score(t, p, average="macro", zero_division=0))

    frame = MetricFrame(metrics={"accuracy": accuracy_score, "macro_f1": macro_f1}, y_true=y_true, y_pred=y_pred,
                        sensitive_features=g)
    rates = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate}, y_true=yb, y_pred=pb,
                        sensitive_features=g)
    rows = []
    for name in frame.by_group.index:
        mask = g == name
        row: dict[str, Any] = {"group": str(name), "n": int(mask.sum()), "small": bool(mask.sum() < min_rows),
                               "accuracy": _num(frame.by_group.loc[name, "accuracy"]),
                               "macro_f1": _num(frame.by_group.loc[name, "macro_f1"]),
                               "selection_rate": _num(pb[mask].mean()),
                               "tpr": _num(rates.by_group.loc[name, "tpr"]),
                               "fpr": _num(rates.by_group.loc[name, "fpr"])}
        if len(labels) > 2:
            row["selection_rates"] = {lab: _num((y_pred[mask] == i).mean()) for i, lab in enumerate(labels)}
        rows.append(row)
    overall = {"n": len(y_true), "accuracy": _num(frame.overall["accuracy"]),
               "macro_f1": _num(frame.overall["macro_f1"]), "selection_rate": _num(pb.mean()), **per_label[head]}
    worst = _worst(rows, "accuracy", overall["accuracy"], higher_is_better=True)
    out: dict[str, Any] = {"kind": "classification", "positive_label": positive, "gap_label": head,
                           **per_label[head], "worst_group": worst.get("group"), "worst_group_detail": worst,
                           "groups": rows, "overall": overall, "min_group_rows": min_rows}
    if positive is None:
        out["per_label"] = per_label
    return out


def regression_fairness(y: np.ndarray, pred: np.ndarray, groups: Groups,
                        min_rows: int = MIN_GROUP_ROWS) -> dict[str, Any]:
    """Per-group MAE, RMSE and mean prediction of a regression (targets ``y`` [N], predictions ``pred`` [N]);
    the gaps are the largest minus the smallest group value."""
    g = group_values(groups)
    df = pd.DataFrame({"g": g, "err": np.abs(pred - y), "sq": (pred - y) ** 2, "pred": pred, "y": y})
    rows: list[dict[str, Any]] = []
    for name, part in df.groupby("g", sort=True):
        rows.append({"group": str(name), "n": len(part), "small": bool(len(part) < min_rows),
                     "mae": _num(part["err"].mean()), "rmse": _num(np.sqrt(part["sq"].mean())),
                     "mean_prediction": _num(part["pred"].mean()), "mean_target": _num(part["y"].mean())})
    mae = [float(r["mae"]) for r in rows]
    mean_pred = [float(r["mean_prediction"]) for r in rows]
    overall = {"n": len(y), "mae": _num(df["err"].mean()), "rmse": _num(np.sqrt(df["sq"].mean())),
               "mean_prediction": _num(df["pred"].mean()), "mae_gap": _num(max(mae) - min(mae)),
               "mean_prediction_gap": _num(max(mean_pred) - min(mean_pred))}
    worst = _worst(rows, "mae", overall["mae"], higher_is_better=False)
    return {"kind": "regression", "mae_gap": overall["mae_gap"], "mean_prediction_gap": overall["mean_prediction_gap"],
            "worst_group": worst.get("group"), "worst_group_detail": worst, "groups": rows, "overall": overall,
            "min_group_rows": min_rows}


def _worst(rows: list[dict[str, Any]], key: str, overall: float | None, higher_is_better: bool) -> dict[str, Any]:
    """The group with the worst ``key``, preferring groups that are not flagged small."""
    pool = [r for r in rows if not r["small"] and r[key] is not None] or [r for r in rows if r[key] is not None]
    if not pool:
        return {}
    pick = (min if higher_is_better else max)(pool, key=lambda r: r[key])
    gap = None if overall is None else abs(overall - pick[key])
    return {"group": pick["group"], "metric": key, "value": pick[key], "gap_to_overall": gap,
            "small": pick["small"]}


# ---- mitigation ------------------------------------------------------------------------------------
class _FixedScores(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A "prefit" scikit-learn classifier whose input is already the positive-label probability (X [N, 1]);
    lets ThresholdOptimizer post-process a model it cannot call itself."""

    classes_ = np.array([0, 1])

    def __sklearn_is_fitted__(self) -> bool:
        return True  # nothing to fit: the network was trained before

    def fit(self, X: Any, y: Any) -> _FixedScores:
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        p = np.asarray(X, dtype=np.float64).reshape(-1)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (np.asarray(X).reshape(-1) >= 0.5).astype(int)


def _binary_summary(yb: np.ndarray, pb: np.ndarray, g: np.ndarray) -> dict[str, Any]:
    return {"accuracy": _num((yb == pb).mean()), "selection_rate": _num(pb.mean()), **_gaps(yb, pb, g),
            "groups": {str(name): {"accuracy": _num((yb[g == name] == pb[g == name]).mean()),
                                   "selection_rate": _num(pb[g == name].mean())} for name in sorted(set(g))}}


def mitigate_thresholds(valid_scores: np.ndarray, valid_y: np.ndarray, valid_groups: Groups,
                        test_scores: np.ndarray, test_y: np.ndarray, test_groups: Groups,
                        constraint: str = "demographic_parity") -> dict[str, Any]:
    """Fit per-group thresholds on validation, apply them to test; before/after accuracy and gaps.

    Args:
        valid_scores, test_scores: float arrays [N]: probability of the positive label.
        valid_y, test_y: int arrays [N]: 1 where the true label is the positive one.
        valid_groups, test_groups: [N] group values.
        constraint: ``demographic_parity`` or ``equalized_odds``.

    Returns:
        ``{"constraint", "before", "after", "unseen_groups"}``; test groups absent from validation keep the
        0.5 threshold. ``{"skipped": reason}`` when fairlearn cannot fit (e.g. a group with one class only).
    """
    from fairlearn.postprocessing import ThresholdOptimizer

    gv, gt = group_values(valid_groups), group_values(test_groups)
    before = (test_scores >= 0.5).astype(int)
    opt = ThresholdOptimizer(estimator=_FixedScores(), constraints=constraint, objective="accuracy_score",
                             prefit=True, predict_method="predict_proba")
    try:
        opt.fit(valid_scores.reshape(-1, 1), valid_y.astype(int), sensitive_features=gv)
    except ValueError as e:
        return {"constraint": constraint, "skipped": f"fairlearn could not fit thresholds on validation: {e}"}
    seen = np.isin(gt, np.unique(gv))
    after = before.copy()
    if seen.any():
        # ThresholdOptimizer mixes two thresholds at random per group; a fixed seed makes the report repeatable
        after[seen] = opt.predict(test_scores[seen].reshape(-1, 1), sensitive_features=gt[seen], random_state=0)
    return {"constraint": constraint, "fitted_on": "valid", "before": _binary_summary(test_y, before, gt),
            "after": _binary_summary(test_y, after, gt), "unseen_groups": sorted(set(gt[~seen]))}


# ---- the pipeline entry point ----------------------------------------------------------------------
def _groups_of(frame: pd.DataFrame, split: str, column: str) -> np.ndarray:
    """The group of each row of ``frame`` (the ``split`` rows); DataError naming the file when it has none."""
    from taskfit.data.checks import SOURCE

    if column not in frame:
        source = str(frame[SOURCE].iloc[0]) if SOURCE in frame and len(frame) else "(unknown file)"
        available = [c for c in frame.columns if not c.startswith("_")]
        raise DataError(f"fairness.group_column: column {column!r} is not in the {split} rows; available columns: "
                        f"{', '.join(available)}. Add the column to the file or fix fairness.group_column.",
                        source=source, column=column)
    return group_values(frame[column].tolist())


def _check_task(task: Task) -> None:
    from taskfit.errors import IncompatibleError

    if task.name not in CLASSIFICATION_TASKS + REGRESSION_TASKS:
        raise IncompatibleError(f"fairness: task {task.name!r} has no per-group evaluation; supported tasks: "
                                f"{', '.join(CLASSIFICATION_TASKS + REGRESSION_TASKS)}.")


def _score(task: Task, enc: Encoded, outputs: list[Any], groups: np.ndarray, labels: list[str],
           cfg: FairnessConfig) -> dict[str, Any]:
    """Per-group metrics from a split's model outputs (see the module docstring)."""
    if task.name in REGRESSION_TASKS:
        to_scale = getattr(task, "to_scale", lambda z: z)
        y = to_scale(np.asarray(enc["targets"], dtype=np.float64))
        return regression_fairness(y, to_scale(np.asarray(outputs, dtype=np.float64)), groups)
    return classification_fairness(np.asarray(enc["targets"]), task.probabilities(outputs), groups, labels,
                                   cfg.positive_label)


def evaluate_fairness(task: Task, model: torch.nn.Module, encoded: Mapping[str, Encoded], splits: Splits,
                      cfg: FairnessConfig, device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    """Score the test split (validation when there is none) per group; JSON-able result for results.json:
    ``group_column``, ``split``, ``kind``, the headline gaps, ``worst_group``, ``groups`` (one row each),
    ``overall`` and, with ``cfg.mitigate``, ``mitigation``.

    Raises:
        DataError: the group column is missing from the evaluated rows (naming the file and the columns).
        IncompatibleError: the task has no per-group evaluation.
    """
    _check_task(task)
    split = "test" if "test" in encoded else "valid"
    groups = _groups_of(splits.frames[split], split, cfg.group_column)
    enc = encoded[split]
    outputs = task.run_outputs(model, enc, device, dtype)
    labels = splits.labels
    result = {"group_column": cfg.group_column, "split": split, **_score(task, enc, outputs, groups, labels, cfg)}
    if cfg.mitigate and task.name in CLASSIFICATION_TASKS:
        if len(labels) != 2 or split == "valid":
            why = "needs a binary task" if len(labels) != 2 else "needs a test split besides validation"
            result["mitigation"] = {"constraint": cfg.constraint, "skipped": f"threshold mitigation {why}."}
        else:
            k = labels.index(result["positive_label"])
            valid = encoded["valid"]
            vprobs = task.probabilities(task.run_outputs(model, valid, device, dtype))
            result["mitigation"] = mitigate_thresholds(
                vprobs[:, k], (np.asarray(valid["targets"]) == k).astype(int),
                _groups_of(splits.frames["valid"], "valid", cfg.group_column), task.probabilities(outputs)[:, k],
                (np.asarray(enc["targets"]) == k).astype(int), groups, cfg.constraint)
    return result


def fairness_on_frame(task: Task, model: torch.nn.Module, processor: Any, labels: list[str], frame: pd.DataFrame,
                      cfg: FairnessConfig, device: torch.device, dtype: torch.dtype | None) -> dict[str, Any]:
    """Per-group metrics of a trained model on labelled rows (``taskfit audit --data``); no mitigation
    (there is no validation split to fit thresholds on).

    Raises:
        DataError: the group column is missing from ``frame``.
        IncompatibleError: the task has no per-group evaluation.
    """
    _check_task(task)
    groups = _groups_of(frame, "data", cfg.group_column)
    enc = task.encode(frame, processor, labels)
    result = {"group_column": cfg.group_column, "split": "data",
              **_score(task, enc, task.run_outputs(model, enc, device, dtype), groups, labels, cfg)}
    if cfg.mitigate:
        result["mitigation"] = {"constraint": cfg.constraint,
                                "skipped": "threshold mitigation runs during training (it needs validation rows)."}
    return result


# ---- report ----------------------------------------------------------------------------------------
def _plot_groups(groups: list[str], series: Mapping[str, list[float | None]], title: str) -> bytes:
    """Grouped bars: one cluster per group, one bar per metric (None drawn as 0 and marked n/a)."""
    from matplotlib.figure import Figure

    from taskfit.evaluate.plots import _label_fontsize, _plot_style, _to_png

    @_plot_style
    def draw() -> bytes:
        n, k = len(groups), len(series)
        fig = Figure(figsize=(min(max(4.5, 0.9 * n * k + 2), 16), 3.6))
        ax = fig.add_subplot()
        width = 0.8 / max(k, 1)
        x = np.arange(n)
        for j, (name, values) in enumerate(series.items()):
            ax.bar(x + (j - (k - 1) / 2) * width, [v or 0.0 for v in values], width, label=name)
        ax.set_xticks(x, groups, rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center",
                      fontsize=_label_fontsize(n))
        ax.set_title(title)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
        return _to_png(fig)

    return draw()


def fairness_sections(result: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Report sections (title, trusted html): the per-group table with a bar plot, and the before/after
    table of threshold mitigation when it ran. Group names are escaped."""
    from taskfit.evaluate.html import cards, esc, html_table, img_tag

    groups = result.get("groups") or []
    names = [r["group"] for r in groups]
    ov = result.get("overall", {})
    small = [r["group"] for r in groups if r["small"]]
    intro = (f"<p>Rows of the {esc(result.get('split'))} split grouped by column "
             f"<code>{esc(result.get('group_column'))}</code>.")
    if small:
        intro += (f" Groups with fewer than {result.get('min_group_rows')} rows are marked small: their rates "
                  f"are noisy ({esc(', '.join(small))}).")
    worst = result.get("worst_group_detail") or {}
    if result.get("kind") == "regression":
        table = html_table(["group", "rows", "small", "MAE", "RMSE", "mean prediction", "mean target"],
                           [[r["group"], r["n"], r["small"], r["mae"], r["rmse"], r["mean_prediction"],
                             r["mean_target"]] for r in groups])
        summary = cards([("MAE gap", _fmt(ov.get("mae_gap"))), ("mean prediction gap",
                                                                 _fmt(ov.get("mean_prediction_gap"))),
                         ("worst group (MAE)", worst.get("group", "\u2014"))])
        png = _plot_groups(names, {"MAE": [r["mae"] for r in groups],
                                   "mean prediction": [r["mean_prediction"] for r in groups]}, "Per group")
    else:
        intro += (f" Selection rate = share predicted <b>{esc(result.get('gap_label'))}</b>; "
                  "demographic parity compares selection rates, equalized odds compares true and false positive "
                  "rates across groups (0 difference = equal).")
        table = html_table(["group", "rows", "small", "accuracy", "macro-F1", "selection rate", "TPR", "FPR"],
                           [[r["group"], r["n"], r["small"], r["accuracy"], r["macro_f1"], r["selection_rate"],
                             r["tpr"], r["fpr"]] for r in groups])
        summary = cards([("demographic parity difference", _fmt(ov.get("demographic_parity_difference"))),
                         ("demographic parity ratio", _fmt(ov.get("demographic_parity_ratio"))),
                         ("equalized odds difference", _fmt(ov.get("equalized_odds_difference"))),
                         ("worst group (accuracy)", worst.get("group", "\u2014"))])
        png = _plot_groups(names, {"accuracy": [r["accuracy"] for r in groups],
                                   "selection rate": [r["selection_rate"] for r in groups]}, "Per group")
    sections = [("Fairness by group", intro + "</p>" + summary + table + img_tag(png, "per-group metrics"))]
    mit = result.get("mitigation")
    if mit:
        sections.append(("Fairness: threshold mitigation", _mitigation_html(mit)))
    return sections


def _fmt(v: Any) -> str:
    return "\u2014" if v is None else f"{v:.4f}"


def _mitigation_html(mit: Mapping[str, Any]) -> str:
    from taskfit.evaluate.html import esc, html_table

    if "skipped" in mit:
        return f"<p>Skipped: {esc(mit['skipped'])}</p>"
    keys = ("accuracy", "selection_rate", "demographic_parity_difference", "equalized_odds_difference")
    rows = [[k.replace("_", " "), mit["before"][k], mit["after"][k]] for k in keys]
    rows += [[f"accuracy of {g}", mit["before"]["groups"][g]["accuracy"], mit["after"]["groups"][g]["accuracy"]]
             for g in mit["before"]["groups"]]
    note = (f"<p>fairlearn ThresholdOptimizer ({esc(mit['constraint'])}) fitted on the validation split's "
            "positive-label probabilities and applied to the test split; it may mix two thresholds per group at "
            "random (seed 0). This estimates the effect of per-group thresholds; the saved model is unchanged.")
    if mit.get("unseen_groups"):
        note += f" Groups absent from validation keep the 0.5 threshold: {esc(', '.join(mit['unseen_groups']))}."
    return note + "</p>" + html_table(["metric", "before", "after"], rows)
