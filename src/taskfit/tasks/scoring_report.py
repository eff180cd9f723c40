"""Report sections and terminal rendering of the regression and multi-label tasks.

Plots are PNG data URIs built with the shared helpers of :mod:`taskfit.evaluate.plots` (headless Agg,
CJK font fallback); every user-supplied string (label names) is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from taskfit.evaluate.plots import _placeholder, _plot_style, _to_png
from taskfit.evaluate.report import _data_uri


def _num(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) and math.isfinite(value) else "—"


# ---- regression ----------------------------------------------------------------------------------
@_plot_style
def plot_pred_vs_true(y: list[float], pred: list[float], title: str) -> bytes:
    """Scatter of predicted against true scores, with the y = x line."""
    if not y:
        return _placeholder("No scored rows")
    fig = Figure(figsize=(5, 5))
    ax = fig.add_subplot()
    ax.scatter(y, pred, s=8, alpha=0.5)
    lo, hi = min(min(y), min(pred)), max(max(y), max(pred))
    ax.plot([lo, hi], [lo, hi], color="#c0392b", lw=1, label="y = x")
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _to_png(fig)


@_plot_style
def plot_residuals(y: list[float], pred: list[float], title: str) -> bytes:
    """Histogram of residuals (predicted − true)."""
    if not y:
        return _placeholder("No scored rows")
    res = np.asarray(pred) - np.asarray(y)
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    ax.hist(res, bins=min(40, max(5, len(res) // 10)), color="#2e86c1")
    ax.axvline(0, color="#c0392b", lw=1)
    ax.set_xlabel("residual (predicted − true)")
    ax.set_ylabel("rows")
    ax.set_title(title)
    return _to_png(fig)


def regression_sections(scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """One section per scored split: metric line, scatter plot and residual histogram."""
    out = []
    for split, m in scores.items():
        pairs = m.get("pairs") or {"true": [], "pred": []}
        y, pred = pairs["true"], pairs["pred"]
        line = ", ".join(f"{k} {_num(m.get(k))}" for k in ("rmse", "mae", "r2", "pearson", "spearman"))
        body = (f"<p>{html.escape(line)} (n {int(m.get('n', 0))}; plots show {len(y)} rows)</p>"
                f'<img alt="predicted vs true" src="{_data_uri(plot_pred_vs_true(y, pred, split))}">'
                f'<img alt="residuals" src="{_data_uri(plot_residuals(y, pred, split))}">')
        out.append((f"Scores: {split}", body))
    return out


def render_regression(console: Any, metrics: Mapping[str, Any], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=f"{escape(title)}: regression", title_justify="left")
    for key in ("n", "rmse", "mae", "r2", "pearson", "spearman", "loss"):
        table.add_column(key, justify="right")
    table.add_row(str(metrics.get("n", "")), *(_num(metrics.get(k)) for k in
                                                ("rmse", "mae", "r2", "pearson", "spearman", "loss")))
    console.print(table)


# ---- multi-label ---------------------------------------------------------------------------------
@_plot_style
def plot_label_f1(per_label: Mapping[str, Mapping[str, Any]], title: str) -> bytes:
    """Horizontal bars of F1 per label (support in the tick label)."""
    if not per_label:
        return _placeholder("No labels")
    names = [f"{lab} ({m['support']})" for lab, m in per_label.items()]
    f1 = [m["f1"] for m in per_label.values()]
    fig = Figure(figsize=(6, max(2.5, 0.35 * len(names) + 1)))
    ax = fig.add_subplot()
    pos = np.arange(len(names))
    ax.barh(pos, f1, color="#2e86c1")
    ax.set_yticks(pos, names, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return _to_png(fig)


def multi_label_sections(scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """Per split: a per-label table (threshold, P/R/F1, support) and the per-label F1 bar plot."""
    out = []
    for split, m in scores.items():
        per = m.get("per_label") or {}
        rows = "".join(
            f"<tr><td>{html.escape(str(lab))}</td><td>{_num(v.get('threshold'), 2)}</td><td>{_num(v['precision'])}"
            f"</td><td>{_num(v['recall'])}</td><td>{_num(v['f1'])}</td><td>{v['support']}</td></tr>"
            for lab, v in per.items())
        line = ", ".join(f"{k} {_num(m.get(k))}" for k in
                         ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss"))
        body = (f"<p>{html.escape(line)} (n {int(m.get('n', 0))}, rows without a label "
                f"{int(m.get('rows_without_label', 0))})</p><table><tr><th>label</th><th>threshold</th>"
                f"<th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>{rows}</table>"
                f'<img alt="F1 per label" src="{_data_uri(plot_label_f1(per, f"F1 per label: {split}"))}">')
        out.append((f"Labels: {split}", body))
    return out


def render_multi_label(console: Any, metrics: Mapping[str, Any], title: str) -> None:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    line = "  ".join(f"{k} {_num(metrics.get(k))}" for k in
                     ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "loss"))
    console.print(f"[bold]{escape(title)}[/bold]  {escape(line)}  n {metrics.get('n', '')}")
    table = Table(title=f"{escape(title)}: per label", title_justify="left")
    table.add_column("label")
    for name in ("threshold", "precision", "recall", "f1", "support"):
        table.add_column(name, justify="right")
    for lab, v in (metrics.get("per_label") or {}).items():
        table.add_row(Text(str(lab)), _num(v.get("threshold"), 2), _num(v["precision"]), _num(v["recall"]),
                      _num(v["f1"]), str(v["support"]))
    console.print(table)
