"""Evaluation plots rendered to PNG bytes.

Figures are built with the object-oriented ``matplotlib.figure.Figure`` API and rendered by the Agg
canvas directly. That is headless by construction (no display needed on a training server), keeps no
figure in pyplot's global registry (so nothing leaks across hundreds of evaluations), and leaves the
process-wide backend alone for users who import taskfit inside Jupyter.

Chinese labels need a CJK font: at import we look for an installed one and append it to the
sans-serif fallback list after DejaVu Sans, so Latin text keeps its usual look and CJK glyphs fall
through to the CJK font. Without one, plots still render (CJK glyphs show as boxes).
"""

from __future__ import annotations

import functools
import io
import logging
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ParamSpec

import matplotlib
import numpy as np
from matplotlib import font_manager
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

CJK_FONT_NAMES = (
    "Noto Sans CJK SC",
    "Noto Sans SC",
    "WenQuanYi Micro Hei",
    "WenQuanYi Zen Hei",
    "Source Han Sans SC",
    "Droid Sans Fallback",
    "AR PL UMing CN",
    "AR PL UKai CN",
    "SimHei",
    "Microsoft YaHei",
    "PingFang SC",
)
# Substrings of font file names worth registering when matplotlib's cached font list predates the
# font's installation (the cache is not refreshed when a font package is installed later).
_CJK_FILE_HINTS = (
    "wqy",
    "notosanscjk",
    "notoserifcjk",
    "droidsansfallback",
    "uming",
    "ukai",
    "sourcehansans",
)
_DPI = 110
_VERTICAL_MAX_LABELS = 12


def _find_cjk_font() -> str | None:
    """Return the family name of an installed CJK font, registering font files if needed."""
    known = {f.name for f in font_manager.fontManager.ttflist}
    for name in CJK_FONT_NAMES:
        if name in known:
            return name
    try:
        files = font_manager.findSystemFonts()
    except Exception:  # font discovery is best-effort; never fail an evaluation over fonts
        return None
    for path in files:
        if any(hint in path.lower().replace("-", "").replace("_", "") for hint in _CJK_FILE_HINTS):
            try:
                font_manager.fontManager.addfont(path)
            except Exception:
                continue
    known = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in CJK_FONT_NAMES if name in known), None)


def configure_cjk_font() -> str | None:
    """Put an installed CJK font in ``font.sans-serif`` right after DejaVu Sans.

    Returns:
        The CJK family used, or ``None`` if none is installed (plots then fall back silently).
    """
    name = _find_cjk_font()
    if name is None:
        logger.debug("No CJK font found; Chinese labels in plots will render as boxes.")
        return None
    families = [f for f in matplotlib.rcParams["font.sans-serif"] if f not in ("DejaVu Sans", name)]
    matplotlib.rcParams["font.sans-serif"] = ["DejaVu Sans", name, *families]
    # Without this, a CJK font with no U+2212 glyph would print negative tick labels as boxes.
    matplotlib.rcParams["axes.unicode_minus"] = False
    return name


CJK_FONT = configure_cjk_font()
_P = ParamSpec("_P")


def _plot_style(func: Callable[_P, bytes]) -> Callable[_P, bytes]:
    """Run a plot function with per-glyph CJK fallback enabled and missing-glyph warnings muted.

    Matplotlib only falls back glyph by glyph across the entries of ``font.family``, not across the
    ``font.sans-serif`` list, so the CJK family is added there for our figures only (a context, so the
    user's own rcParams are left alone).
    """

    @functools.wraps(func)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> bytes:
        fallback = ["sans-serif", CJK_FONT] if CJK_FONT else ["sans-serif"]
        with matplotlib.rc_context({"font.family": fallback}), warnings.catch_warnings():
            # "Glyph ... missing from font" is expected when no CJK font is installed; it is not
            # actionable per plot and would flood the training log.
            warnings.filterwarnings("ignore", message=r".*[Gg]lyph.*missing.*")
            return func(*args, **kwargs)

    return wrapper


def _to_png(fig: Figure) -> bytes:
    """Render ``fig`` to PNG bytes and release its memory."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def _label_fontsize(n: int) -> float:
    """Tick font size that keeps ``n`` category labels legible without overlapping."""
    return float(np.clip(14 - n / 4, 8, 10))


@_plot_style
def _placeholder(message: str) -> bytes:
    """A small PNG with a centred message, for sections with no data to plot."""
    fig = Figure(figsize=(5, 1.5))
    ax = fig.add_subplot()
    ax.axis("off")
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555555")
    return _to_png(fig)


@_plot_style
def plot_confusion_matrix(cm: Any, labels: Sequence[str], normalize: bool = True) -> bytes:
    """Heat map of a confusion matrix (rows = true class, columns = predicted class).

    Args:
        cm: square matrix of counts, ``[C, C]``, in ``labels`` order.
        labels: the class names.
        normalize: divide each row by its total so colours show recall per class; rows with no
            samples stay at 0. Cell text then shows the fraction, otherwise the count.

    Returns:
        PNG bytes.
    """
    counts = np.asarray(cm, dtype=np.float64)
    n = len(labels)
    if counts.shape != (n, n):
        raise ValueError(f"Confusion matrix shape {counts.shape} does not match {n} labels.")
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) if normalize else counts
    side = float(np.clip(0.45 * n + 2.5, 4.5, 24))
    fig = Figure(figsize=(side + 1, side))
    ax = fig.add_subplot()
    vmax = 1.0 if normalize else max(float(values.max()), 1.0)
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fs = _label_fontsize(n)
    ax.set_xticks(
        range(n),
        [str(lb) for lb in labels],
        rotation=45 if n <= 10 else 90,
        ha="right" if n <= 10 else "center",
        fontsize=fs,
    )
    ax.set_yticks(range(n), [str(lb) for lb in labels], fontsize=fs)
    ax.set_xlabel("Predicted")
    ax.set_ylabel("True")
    ax.set_title("Confusion matrix" + (" (row-normalised)" if normalize else ""))
    if n <= 25:  # beyond this cell text is too small to read and just adds noise
        _annotate_cells(ax, values, counts, normalize=normalize, vmax=vmax, fs=fs)
    return _to_png(fig)


def _annotate_cells(
    ax: Axes, values: np.ndarray, counts: np.ndarray, *, normalize: bool, vmax: float, fs: float
) -> None:
    """Write each cell's value, switching to white text on dark cells for contrast."""
    for (i, j), value in np.ndenumerate(values):
        if counts[i, j] == 0:
            continue  # blank zero cells make the off-diagonal errors stand out
        text = f"{value:.2f}" if normalize else f"{int(counts[i, j])}"
        colour = "white" if value > 0.6 * vmax else "black"
        ax.text(j, i, text, ha="center", va="center", color=colour, fontsize=max(fs - 1, 5))


def _series(history: Sequence[Mapping[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """Steps and finite values of ``key`` over the history records that have it."""
    steps: list[float] = []
    values: list[float] = []
    for record in history:
        value = record.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            steps.append(float(record.get("step", len(steps))))
            values.append(float(value))
    return steps, values


@_plot_style
def plot_loss_curves(history: Sequence[Mapping[str, Any]]) -> bytes:
    """Training and validation loss against step, plus validation metrics in a second panel.

    Args:
        history: records with ``step`` and optionally ``train_loss``, ``valid_loss`` and any
            ``valid_<metric>`` keys (e.g. ``valid_accuracy``, ``valid_macro_f1``).

    Returns:
        PNG bytes (a placeholder image if the history has no losses or metrics).
    """
    metric_keys = sorted(
        {
            k
            for r in history
            for k in r
            if k.startswith("valid_") and k != "valid_loss" and _series(history, k)[1]
        }
    )
    loss_keys = [k for k in ("train_loss", "valid_loss") if _series(history, k)[1]]
    if not loss_keys and not metric_keys:
        return _placeholder("No training history recorded")
    panels = int(bool(loss_keys)) + int(bool(metric_keys))
    fig = Figure(figsize=(6.5 * panels, 4.2))
    axes = fig.subplots(1, panels, squeeze=False)[0]
    if loss_keys:
        _draw_lines(axes[0], history, loss_keys, "Loss", "loss")
    if metric_keys:
        _draw_lines(axes[-1], history, metric_keys, "Validation metrics", "value")
    fig.tight_layout()
    return _to_png(fig)


def _draw_lines(
    ax: Axes, history: Sequence[Mapping[str, Any]], keys: list[str], title: str, ylabel: str
) -> None:
    """One line per key; markers when there are few points (validation often runs rarely)."""
    for key in keys:
        steps, values = _series(history, key)
        ax.plot(steps, values, label=key, marker="o" if len(values) <= 30 else None, markersize=3)
    ax.set_title(title)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


@_plot_style
def plot_reliability(calibration: Mapping[str, Any]) -> bytes:
    """Reliability diagram (accuracy vs confidence per bin) above a histogram of bin counts.

    Args:
        calibration: the ``calibration`` dict of :func:`~taskfit.evaluate.metrics.classification_metrics`
            (``bin_edges``, ``bin_confidence``, ``bin_accuracy``, ``bin_count``; empty bins hold ``None``).

    Returns:
        PNG bytes.
    """
    edges = np.asarray(calibration["bin_edges"], dtype=np.float64)
    lefts, widths = edges[:-1], np.diff(edges)
    fig = Figure(figsize=(5.5, 6.5))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    _draw_reliability_bars(top, calibration, lefts, widths)
    counts = np.asarray(calibration["bin_count"], dtype=np.float64)
    bottom.bar(lefts, counts, width=widths, align="edge", color="#8c8c8c", edgecolor="white")
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("count")
    fig.tight_layout()
    return _to_png(fig)


def _draw_reliability_bars(
    ax: Axes, calibration: Mapping[str, Any], lefts: np.ndarray, widths: np.ndarray
) -> None:
    """Accuracy bars per bin, the gap to the bin's mean confidence, and the diagonal."""
    acc = np.array([np.nan if a is None else a for a in calibration["bin_accuracy"]], dtype=np.float64)
    conf = np.array([np.nan if c is None else c for c in calibration["bin_confidence"]], dtype=np.float64)
    ax.bar(
        lefts,
        np.nan_to_num(acc),
        width=widths,
        align="edge",
        color="#4c72b0",
        edgecolor="white",
        label="accuracy",
    )
    # The gap between the bar and the bin's mean confidence is what ECE averages; empty bins have none.
    gap, base = np.nan_to_num(conf - acc), np.nan_to_num(acc)
    ax.bar(
        lefts,
        gap,
        width=widths,
        bottom=base,
        align="edge",
        color="#dd8452",
        alpha=0.45,
        label="gap to confidence",
    )
    ax.plot([0, 1], [0, 1], linestyle="--", color="gray", label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    ax.set_title("Reliability diagram")
    ax.legend(loc="upper left", fontsize=8)


@_plot_style
def plot_class_distribution(counts: Mapping[str, Mapping[str, int]]) -> bytes:
    """Grouped bar chart of label counts per split.

    Up to :data:`_VERTICAL_MAX_LABELS` labels the bars are vertical; beyond that they are horizontal,
    with the figure growing in height, so long or CJK label names stay horizontal and readable.

    Args:
        counts: split name -> label -> count. Labels are shown in order of first appearance.

    Returns:
        PNG bytes (a placeholder image if there is nothing to count).
    """
    splits = list(counts)
    labels = list(dict.fromkeys(str(lb) for split in splits for lb in counts[split]))
    if not labels:
        return _placeholder("No label counts")
    n, k = len(labels), max(len(splits), 1)
    horizontal = n > _VERTICAL_MAX_LABELS
    size = (
        (8.0, float(np.clip(0.12 * n * (k + 1) + 2, 4, 30)))
        if horizontal
        else (max(6.0, 0.6 * n * k / 2 + 3), 4.5)
    )
    fig = Figure(figsize=size)
    ax = fig.add_subplot()
    bar_w = 0.8 / k
    pos = np.arange(n)
    for j, split in enumerate(splits):
        by_label = {str(lb): c for lb, c in counts[split].items()}
        offsets = pos + (j - (k - 1) / 2) * bar_w
        heights = [by_label.get(lb, 0) for lb in labels]
        (ax.barh if horizontal else ax.bar)(offsets, heights, bar_w, label=split)
    if horizontal:
        ax.set_yticks(pos, labels, fontsize=_label_fontsize(n))
        ax.invert_yaxis()  # first label at the top, like a table
        ax.margins(y=0.01)
        ax.set_xlabel("rows")
    else:
        ax.set_xticks(pos, labels, rotation=0 if n <= 6 else 45, ha="center" if n <= 6 else "right")
        ax.set_ylabel("rows")
    ax.set_title("Label distribution per split")
    ax.grid(axis="x" if horizontal else "y", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _to_png(fig)
