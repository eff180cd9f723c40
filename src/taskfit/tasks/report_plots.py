"""Plots of the NER and retrieval report sections, apart from their scores so that scoring a model (a served
model, a probe) does not import matplotlib; the report sections import these when they render."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from taskfit.evaluate.plots import _label_fontsize, _placeholder, _plot_style, _to_png
from taskfit.tasks.retrieval_report import CURVE_K


@_plot_style
def plot_type_f1(per_type: Mapping[str, Mapping[str, Any]], title: str = "Entity F1 per type") -> bytes:
    """Horizontal bars of F1 per entity type (support in the label), best type on top.

    Returns:
        PNG bytes (a placeholder when there is no type).
    """
    if not per_type:
        return _placeholder("No entities to score")
    items = sorted(per_type.items(), key=lambda kv: -float(kv[1]["f1"]))
    names = [f"{k} ({int(v['support'])})" for k, v in items]
    values = [float(v["f1"]) for _, v in items]
    n = len(items)
    fig = Figure(figsize=(7.0, float(np.clip(0.35 * n + 1.2, 2.0, 16))))
    ax = fig.add_subplot()
    pos = np.arange(n)
    ax.barh(pos, values, color="#4c72b0")
    for y, v in zip(pos, values, strict=True):
        ax.text(min(v + 0.01, 0.9), float(y), f"{v:.2f}", va="center", fontsize=8)
    ax.set_yticks(pos, names, fontsize=_label_fontsize(n))
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1 (support in brackets)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return _to_png(fig)


@_plot_style
def plot_recall_curve(curves: Mapping[str, Sequence[float]]) -> bytes:
    """recall@k against k = 1..20, one line per split."""
    if not curves:
        return _placeholder("No scored queries")
    fig = Figure(figsize=(5.5, 3.5))
    ax = fig.add_subplot()
    for split, curve in curves.items():
        ax.plot(range(1, len(curve) + 1), curve, marker="o", ms=3, label=split)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(1, CURVE_K + 1, 2))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _to_png(fig)
