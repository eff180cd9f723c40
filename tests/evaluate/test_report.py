"""HTML report, plots and terminal rendering."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

import taskfit.evaluate.report as report_mod
from taskfit.evaluate import (
    classification_metrics,
    loss_sparkline,
    plot_class_distribution,
    plot_confusion_matrix,
    plot_loss_curves,
    plot_reliability,
    render_history,
    render_metrics,
    report_to_json_safe,
    write_html_report,
)

PNG = b"\x89PNG\r\n\x1a\n"
EVIL = "<script>alert(1)</script>"
LABELS = ["正面", "负面", EVIL]
HISTORY = [
    {"step": 10, "train_loss": 1.2},
    {"step": 20, "train_loss": 0.9, "valid_loss": 1.0, "valid_accuracy": 0.6, "valid_macro_f1": 0.5},
    {"step": 30, "train_loss": 0.5},
    {"step": 40, "train_loss": 0.4, "valid_loss": 0.7, "valid_accuracy": 0.8, "valid_macro_f1": 0.75},
]


def _metrics(n_classes: int = 3, labels: list[str] | None = None, n: int = 120, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, n)
    logits = rng.normal(size=(n, n_classes))
    logits[np.arange(n), y] += 2.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return classification_metrics(y, probs, labels or [f"c{i}" for i in range(n_classes)])


def _report_kwargs(**overrides: object) -> dict:
    kwargs: dict = {
        "title": "Run <1> 情感分类",
        "test_metrics": _metrics(labels=LABELS),
        "valid_metrics": _metrics(labels=LABELS, seed=1),
        "history": HISTORY,
        "recipe_yaml": "task: classification\nmodel: tiny  # <b>not bold</b>\n",
        "data_stats": {
            "rows": {"train": 100, "valid": 20, "test": 20},
            "label_counts": {"train": {"正面": 60, "负面": 30, EVIL: 10}, "test": {"正面": 12, "负面": 8}},
            "text_length": {"train": {"mean": 31.5, "max": 140}, "test": {"mean": 29.0, "max": 120}},
        },
        "data_issues": [
            {
                "severity": "warning",
                "check": "duplicates",
                "message": f"dup {EVIL}",
                "file": "train.csv",
                "rows": list(range(1, 31)),
            },
            {"severity": "error", "check": "empty_text", "message": "empty", "file": None, "rows": []},
        ],
        "timing": {"train_seconds": 12.5, "samples_per_second": 321.0},
        "hardware": {"device": "cpu", "threads": 2},
    }
    kwargs.update(overrides)
    return kwargs


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_and_escaped(tmp_path: Path) -> None:
    out = write_html_report(tmp_path / "sub" / "report.html", **_report_kwargs())
    html = out.read_text(encoding="utf-8")
    assert out == tmp_path / "sub" / "report.html"
    assert '<meta charset="utf-8">' in html
    assert '<html lang="en">' in html
    # 2 confusion matrices + 2 reliability diagrams + loss curves + label distribution.
    images = _images(html)
    assert len(images) == 6
    assert all(img.startswith(PNG) for img in images)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>not bold</b>" not in html
    assert "Run &lt;1&gt;" in html
    assert "正面" in html
    assert "负面" in html
    assert "情感分类" in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<link" not in html


def test_report_sections_content(tmp_path: Path) -> None:
    html = write_html_report(tmp_path / "r.html", **_report_kwargs()).read_text(encoding="utf-8")
    for heading in (
        "Summary",
        "Classification report (test)",
        "Confusion matrix (test)",
        "Calibration (test)",
        "Training and validation loss",
        "Data statistics",
        "Data issues",
        "Resolved recipe",
        "Timing",
        "Hardware",
        "macro avg",
        "weighted avg",
    ):
        assert heading in html, heading
    # Only the first 20 of 30 issue rows are listed, then a count of the rest.
    assert "19, 20 \u2026 (+10 more)" in html
    assert ", 21," not in html
    assert "321" in html
    assert "12.5" in html
    assert "task: classification" in html


def test_report_without_test_metrics_and_history(tmp_path: Path) -> None:
    kwargs = _report_kwargs(
        test_metrics=None, history=[], data_stats={}, data_issues=[], timing={}, hardware={}
    )
    html = write_html_report(tmp_path / "r.html", **kwargs).read_text(encoding="utf-8")
    assert "Classification report (validation)" in html
    assert "(test)" not in html
    assert "No training history recorded." in html
    assert "No data issues found." in html
    assert len(_images(html)) == 2  # validation confusion matrix + reliability diagram


def test_report_without_any_metrics(tmp_path: Path) -> None:
    kwargs = _report_kwargs(test_metrics=None, valid_metrics=None)
    html = write_html_report(tmp_path / "r.html", **kwargs).read_text(encoding="utf-8")
    assert "No evaluation metrics" in html


def test_report_extra_sections_trusted_html_escaped_heading(tmp_path: Path) -> None:
    kwargs = _report_kwargs(extra_sections=[("Errors <top>", "<p class='x'>ok</p>")])
    html = write_html_report(tmp_path / "r.html", **kwargs).read_text(encoding="utf-8")
    assert "<h2>Errors &lt;top&gt;</h2>" in html
    assert "<p class='x'>ok</p>" in html


def test_report_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "report.html"
    target.write_text("old report", encoding="utf-8")
    calls: list[Path] = []
    real = report_mod.atomic_write_text
    monkeypatch.setattr(report_mod, "atomic_write_text", lambda p, t: (calls.append(Path(p)), real(p, t)))
    write_html_report(target, **_report_kwargs())
    assert calls == [target]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report.html"]  # no temp file left behind

    def boom(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("plot failed")

    monkeypatch.setattr(report_mod, "plot_confusion_matrix", boom)
    before = target.read_text(encoding="utf-8")
    with pytest.raises(RuntimeError):
        write_html_report(target, **_report_kwargs())
    assert target.read_text(encoding="utf-8") == before


def test_report_to_json_safe() -> None:
    obj = {
        "a": np.float32(0.5),
        "b": np.arange(3),
        "c": (np.int64(2), float("nan")),
        3: Path("x"),
        "d": {np.bool_(True)},
    }
    safe = report_to_json_safe(obj)
    assert safe == {"a": 0.5, "b": [0, 1, 2], "c": [2, None], "3": "x", "d": [True]}
    json.dumps(safe, allow_nan=False)


@pytest.mark.parametrize("n_classes", [3, 35])
def test_plots_return_png(n_classes: int) -> None:
    labels = [f"类别{i}" for i in range(n_classes)]
    m = _metrics(n_classes, labels, n=300)
    assert plot_confusion_matrix(m["confusion_matrix"], labels).startswith(PNG)
    assert plot_confusion_matrix(m["confusion_matrix"], labels, normalize=False).startswith(PNG)
    assert plot_class_distribution({"train": dict.fromkeys(labels, 5), "test": {labels[0]: 1}}).startswith(
        PNG
    )


def test_history_and_calibration_plots_return_png() -> None:
    assert plot_loss_curves(HISTORY).startswith(PNG)
    assert plot_loss_curves([]).startswith(PNG)
    assert plot_loss_curves([{"step": 1, "train_loss": float("nan")}]).startswith(PNG)
    assert plot_reliability(_metrics()["calibration"]).startswith(PNG)
    assert plot_class_distribution({}).startswith(PNG)


def test_confusion_plot_rejects_mismatched_labels() -> None:
    with pytest.raises(ValueError, match="does not match"):
        plot_confusion_matrix([[1, 0], [0, 1]], ["a", "b", "c"])


def test_sparkline_width_and_extremes() -> None:
    line = loss_sparkline([5.0, 4.0, 3.0, 2.0, 1.0], width=12)
    assert len(line) == 12
    assert line[0] == "█"
    assert line[-1] == "▁"
    long = loss_sparkline(list(range(1000)), width=60)
    assert len(long) == 60
    assert long[0] == "▁"
    assert long[-1] == "█"
    assert set(long) <= set("▁▂▃▄▅▆▇█")
    assert loss_sparkline([1.0, float("nan"), 0.0], width=4) == "██▁▁"
    assert loss_sparkline([2.0, 2.0], width=5) == "▁" * 5
    assert loss_sparkline([], width=10) == ""


def test_render_metrics_truncates_large_matrix() -> None:
    console = Console(record=True, width=200, color_system="truecolor")
    labels = [f"类别{i}" for i in range(35)]
    render_metrics(console, _metrics(35, labels, n=400), title="test [bold]")
    text = console.export_text()
    assert "test [bold]" in text  # title printed literally, not parsed as markup
    assert "类别34" in text  # the report table lists every class
    assert "first 20 of 35 classes" in text
    assert "19 类别19" in text
    assert "20 类别20" not in text


def test_render_metrics_narrow_console_shows_fewer_columns_never_squeezed() -> None:
    console = Console(record=True, width=60)
    render_metrics(console, _metrics(35, [f"c{i}" for i in range(35)], n=2000), title="t")
    text = console.export_text()
    shown = int(re.search(r"first (\d+) of 35 classes", text).group(1))
    assert 1 <= shown < 20
    matrix_rows = [line for line in text.splitlines() if re.match(r"^\d+ c\d+ ", line)]
    assert len(matrix_rows) == shown
    assert all("\u2026" not in row for row in matrix_rows)
    assert max(len(row) for row in matrix_rows) <= 60


def test_confusion_cells_shaded_by_row_share() -> None:
    console = Console(record=True, width=100, color_system="truecolor")
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
    render_metrics(console, classification_metrics(np.array([0, 0, 1]), probs, ["a", "b"]), title="t")
    html = console.export_html(inline_styles=True)
    assert "background-color: #08306b" in html  # share 1.0 on the diagonal: darkest blue
    assert "background-color: #f7fbff" in html  # share 0.0: lightest


def test_render_history() -> None:
    console = Console(record=True, width=120)
    render_history(console, HISTORY)
    text = console.export_text()
    assert "train_loss" in text
    assert "valid_loss" in text
    assert "min 0.4000 (step 40)" in text
    assert "max 1.0000" in text
    console = Console(record=True, width=120)
    render_history(console, [])
    assert "No training history" in console.export_text()


def test_report_for_a_non_classification_task_shows_its_scalar_metrics(tmp_path: Path) -> None:
    """Tasks without per-class metrics (NER, retrieval, regression, generation) get cards of their scalars,
    and no classification report, confusion matrix or reliability diagram."""
    scores = {"f1": 0.8125, "recall@1": 0.5, "loss": 0.25, "n": 40, "labels": ["x"], "per_type": {"PER": {}}}
    kwargs = _report_kwargs(test_metrics=scores, valid_metrics={"loss": 0.3, "f1": 0.75, "n": 20},
                            data_stats={"rows": {"train": 10}})
    html = write_html_report(tmp_path / "r.html", **kwargs).read_text(encoding="utf-8")
    for shown in ("recall@1", "0.8125", "0.25", "0.75"):
        assert shown in html
    assert "Classification report" not in html and "confusion matrix" not in html.lower()
    assert "per_type" not in html  # nested values are left to the task's own sections
