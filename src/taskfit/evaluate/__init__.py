"""Evaluation: metrics, plots, the HTML report and terminal rendering.

The names below load on first use (PEP 562): a process that only needs the metrics (a served model, a probe)
does not import matplotlib.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from taskfit.utils.lazy import lazy_exports

if TYPE_CHECKING:
    from taskfit.evaluate.console import loss_sparkline, render_history, render_metrics
    from taskfit.evaluate.metrics import (
        classification_metrics,
        expected_calibration_error,
        format_classification_report,
    )
    from taskfit.evaluate.plots import (
        plot_class_distribution,
        plot_confusion_matrix,
        plot_loss_curves,
        plot_reliability,
    )
    from taskfit.evaluate.report import report_to_json_safe, write_html_report

_MODULES = {
    "console": ("loss_sparkline", "render_history", "render_metrics"),
    "metrics": ("classification_metrics", "expected_calibration_error", "format_classification_report"),
    "plots": ("plot_class_distribution", "plot_confusion_matrix", "plot_loss_curves", "plot_reliability"),
    "report": ("report_to_json_safe", "write_html_report"),
}

__all__ = [
    "classification_metrics",
    "expected_calibration_error",
    "format_classification_report",
    "loss_sparkline",
    "plot_class_distribution",
    "plot_confusion_matrix",
    "plot_loss_curves",
    "plot_reliability",
    "render_history",
    "render_metrics",
    "report_to_json_safe",
    "write_html_report",
]


__getattr__ = lazy_exports(__name__, {n: f"{__name__}.{m}" for m, names in _MODULES.items() for n in names})
