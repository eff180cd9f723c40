"""Terminal rendering of metrics and training history with rich.

The confusion matrix is drawn as a table whose cell backgrounds are shaded by the row-normalised
value, so the diagonal and the worst confusions are visible at a glance without opening a PNG.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

SPARK_CHARS = "▁▂▃▄▅▆▇█"
MAX_MATRIX_CLASSES = 20
# Cells kept for the row header ("12 label name"); longer names are cut with an ellipsis.
_ROW_LABEL_WIDTH = 20
# White -> dark blue, as in the HTML report's "Blues" colour map.
_LIGHT = (247, 251, 255)
_DARK = (8, 48, 107)


def _shade(value: float) -> str:
    """Rich style for a cell whose row-normalised value is ``value`` in ``[0, 1]``."""
    rgb = [round(lo + (hi - lo) * value) for lo, hi in zip(_LIGHT, _DARK, strict=True)]
    text = "white" if value > 0.5 else "black"  # keep the count readable on dark cells
    return f"{text} on rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def _report_table(metrics: Mapping[str, Any], title: str) -> Table:
    """Per-class precision/recall/F1/support followed by accuracy and averages."""
    table = Table(title=f"{escape(title)}: classification report", title_justify="left")
    table.add_column("label")
    for name in ("precision", "recall", "f1-score", "support"):
        table.add_column(name, justify="right")
    for label, m in metrics["per_class"].items():
        table.add_row(
            Text(str(label)),
            f"{m['precision']:.4f}",
            f"{m['recall']:.4f}",
            f"{m['f1']:.4f}",
            str(m["support"]),
        )
    n = str(metrics["n"])
    table.add_section()
    table.add_row("accuracy", "", "", f"{metrics['accuracy']:.4f}", n, style="bold")
    table.add_row(
        "macro avg",
        f"{metrics['macro_precision']:.4f}",
        f"{metrics['macro_recall']:.4f}",
        f"{metrics['macro_f1']:.4f}",
        n,
    )
    wp, wr = metrics.get("weighted_precision"), metrics.get("weighted_recall")
    table.add_row(
        "weighted avg",
        "" if wp is None else f"{wp:.4f}",
        "" if wr is None else f"{wr:.4f}",
        f"{metrics['weighted_f1']:.4f}",
        n,
    )
    return table


def _matrix_table(metrics: Mapping[str, Any], title: str, max_width: int) -> tuple[Table, int]:
    """Confusion matrix of the first classes that fit, cells shaded by row share.

    At most :data:`MAX_MATRIX_CLASSES` columns are shown, fewer if the console is too narrow: rich would
    otherwise squeeze the columns and print counts as ``…``. Rows are normalised over the full row,
    including hidden columns, so a shade always means "share of this class's samples".

    Returns:
        The table and the number of classes shown.
    """
    labels = [str(lb) for lb in metrics["labels"]]
    counts = np.asarray(metrics["confusion_matrix"], dtype=np.int64)
    totals = counts.sum(axis=1, keepdims=True)
    share = np.divide(counts, totals, out=np.zeros(counts.shape), where=totals > 0)
    cell_w = max(len(str(int(counts.max(initial=0)))), len(str(len(labels) - 1))) + 2
    k = max(1, min(len(labels), MAX_MATRIX_CLASSES, (max_width - _ROW_LABEL_WIDTH) // cell_w))
    # No borders and no padding: the shaded cells then touch and read as a heat map.
    table = Table(title=f"{escape(title)}: confusion matrix", title_justify="left", box=None, padding=(0, 0))
    # Columns are numbered, rows named: long or CJK label names would make the matrix unreadably wide.
    table.add_column("true \\ pred", no_wrap=True, max_width=_ROW_LABEL_WIDTH - 1, overflow="ellipsis")
    for j in range(k):
        table.add_column(str(j), justify="right", min_width=cell_w, no_wrap=True)
    for i in range(k):
        cells = [Text(f"{counts[i, j]:>{cell_w - 1}} ", style=_shade(float(share[i, j]))) for j in range(k)]
        table.add_row(Text(f"{i} {labels[i]} "), *cells)
    return table, k


def render_metrics(console: Console, metrics: Mapping[str, Any], title: str) -> None:
    """Print a summary line, the classification report and a shaded confusion matrix.

    Args:
        console: where to print.
        metrics: a dict returned by :func:`~taskfit.evaluate.metrics.classification_metrics`.
        title: what was evaluated (e.g. ``"test"``); shown literally, never parsed as markup.
    """
    console.print(
        f"[bold]{escape(title)}[/bold]  accuracy [cyan]{metrics['accuracy']:.4f}[/cyan]  "
        f"macro-F1 [cyan]{metrics['macro_f1']:.4f}[/cyan]  ECE {metrics['ece']:.4f}  n {metrics['n']}"
    )
    console.print(_report_table(metrics, title))
    table, shown = _matrix_table(metrics, title, console.width)
    console.print(table)
    console.print("[dim]rows = true class, columns = predicted class; shade = share of the row[/dim]")
    n_classes = len(metrics["labels"])
    if shown < n_classes:
        console.print(
            f"[yellow]Confusion matrix truncated to the first {shown} of {n_classes} classes.[/yellow]"
        )


def _resample(values: np.ndarray, width: int) -> np.ndarray:
    """Exactly ``width`` points: bucket means when shrinking, nearest neighbour when stretching."""
    if len(values) >= width:
        return np.array([chunk.mean() for chunk in np.array_split(values, width)])
    idx = np.floor(np.linspace(0, len(values), width, endpoint=False)).astype(int)
    return values[idx]


def loss_sparkline(values: Sequence[float], width: int = 60) -> str:
    """A one-line unicode chart of a series, e.g. ``▇▅▄▃▂▂▁▁``.

    Non-finite values (a NaN loss from a diverged step) are skipped. The lowest resampled point maps
    to ``▁`` and the highest to ``█``; a constant series is drawn flat at ``▁``.

    Args:
        values: the series, in order.
        width: number of characters to produce.

    Returns:
        A string of exactly ``width`` characters, or ``""`` if there is no finite value or width < 1.
    """
    finite = np.array([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if finite.size == 0 or width < 1:
        return ""
    points = _resample(finite, width)
    lo, hi = float(points.min()), float(points.max())
    if hi - lo <= 0:
        return SPARK_CHARS[0] * width
    levels = np.rint((points - lo) / (hi - lo) * (len(SPARK_CHARS) - 1)).astype(int)
    return "".join(SPARK_CHARS[i] for i in levels)


def render_history(console: Console, history: Sequence[Mapping[str, Any]], width: int = 60) -> None:
    """Print sparklines of training and validation loss with their minimum, maximum and last value.

    Args:
        console: where to print.
        history: training log records with ``step`` and optionally ``train_loss`` / ``valid_loss``.
        width: sparkline width in characters.
    """
    printed = False
    for key in ("train_loss", "valid_loss"):
        points = [(r.get("step"), float(r[key])) for r in history if _is_finite_number(r.get(key))]
        if not points:
            continue
        values = [v for _, v in points]
        best = min(points, key=lambda p: p[1])
        line = Text(f"{key:<10} ", style="bold")
        line.append(loss_sparkline(values, width), style="cyan")
        line.append(f"  min {best[1]:.4f} (step {best[0]})  max {max(values):.4f}  last {values[-1]:.4f}")
        console.print(line)
        printed = True
    if not printed:
        console.print("[dim]No training history recorded.[/dim]")


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
