"""Evaluation: metrics, plots, the HTML report and terminal rendering.

The names below load on first use (PEP 562): a process that only needs the metrics (a served model, a probe)
does not import matplotlib.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

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

_HOMES = {
    "loss_sparkline": "console", "render_history": "console", "render_metrics": "console",
    "classification_metrics": "metrics", "expected_calibration_error": "metrics",
    "format_classification_report": "metrics",
    "plot_class_distribution": "plots", "plot_confusion_matrix": "plots", "plot_loss_curves": "plots",
    "plot_reliability": "plots",
    "report_to_json_safe": "report", "write_html_report": "report",
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


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(import_module(f"taskfit.evaluate.{_HOMES[name]}"), name)
    raise AttributeError(f"module 'taskfit.evaluate' has no attribute {name!r}")
