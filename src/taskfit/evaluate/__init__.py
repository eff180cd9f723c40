"""Evaluation: metrics, plots, the HTML report and terminal rendering."""

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
