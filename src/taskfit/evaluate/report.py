"""A single self-contained HTML report for one run.

The file has no external references at all (images are base64 data URIs, CSS is inline, no
JavaScript), so it can be mailed, attached to a ticket or opened offline years later. Every string
that comes from the user's data or recipe goes through Jinja2's autoescaping: labels and texts are
user data and must never be able to inject markup.
"""

from __future__ import annotations

import base64
import datetime as _dt
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
from markupsafe import Markup

from taskfit.evaluate.plots import (
    plot_class_distribution,
    plot_confusion_matrix,
    plot_loss_curves,
    plot_reliability,
)
from taskfit.utils.io import atomic_write_text

MAX_ISSUE_ROWS = 20

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Noto Sans","Noto Sans CJK SC","PingFang SC",
"Microsoft YaHei",sans-serif;margin:0 auto;max-width:1180px;padding:24px;color:#1f2328;background:#fafbfc}
h1{margin-bottom:4px}h2{border-bottom:1px solid #d0d7de;padding-bottom:4px;margin-top:36px}
.sub{color:#57606a;margin-top:0}.cards{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 18px;min-width:130px}
.card .k{color:#57606a;font-size:13px}.card .v{font-size:26px;font-weight:600}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff;font-size:14px}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
td.num{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f4f6}
tr.avg td{background:#f6f8fa;font-weight:600}img{max-width:100%;height:auto;border:1px solid #eee}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:12px;overflow:auto;font-size:13px}
.sev-error{color:#cf222e;font-weight:600}.sev-warning{color:#9a6700;font-weight:600}.muted{color:#57606a}
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="{{ lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<style>{{ css }}</style>
</head>
<body>
<h1>{{ title }}</h1>
<p class="sub">Generated {{ generated }}</p>
{% macro table(t) -%}
<table><tr>{% for h in t.header %}<th>{{ h }}</th>{% endfor %}</tr>
{% for r in t.rows %}<tr>
{%- for c in r %}<td{% if c is number %} class="num"{% endif %}>{{ fmt(c) }}</td>{% endfor %}</tr>
{% endfor %}</table>
{%- endmacro %}
<h2 id="summary">Summary</h2>
{% for s in splits %}<h3>{{ s.name }}</h3><div class="cards">
{% for k, v in s.cards %}
<div class="card"><div class="k">{{ k }}</div><div class="v">{{ v }}</div></div>
{% endfor %}
</div>{% else %}<p class="muted">No evaluation metrics (no validation or test set was scored).</p>{% endfor %}
{% for s in splits if s.report %}
<h2>Classification report ({{ s.name }})</h2>
<table><tr><th>label</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>
{% for r in s.report %}<tr{% if r.avg %} class="avg"{% endif %}><td>{{ r.name }}</td>
{% for c in r.cells %}<td class="num">{{ c }}</td>{% endfor %}</tr>
{% endfor %}</table>
<h2>Confusion matrix ({{ s.name }})</h2>
<img alt="confusion matrix {{ s.name }}" src="{{ s.cm_img }}">
<h2>Calibration ({{ s.name }})</h2>
<p>Expected calibration error: <b>{{ s.ece }}</b> &middot; log loss: <b>{{ s.log_loss }}</b></p>
<img alt="reliability diagram {{ s.name }}" src="{{ s.rel_img }}">
{% endfor %}
<h2 id="training">Training and validation loss</h2>
{% if loss_img %}<img alt="loss curves" src="{{ loss_img }}">
{% else %}<p class="muted">No training history recorded.</p>{% endif %}
<h2 id="data">Data statistics</h2>
{% if dist_img %}<img alt="label distribution" src="{{ dist_img }}">{% endif %}
{% for name, t in data_tables %}<h3>{{ name }}</h3>{{ table(t) }}
{% else %}<p class="muted">No data statistics.</p>{% endfor %}
<h2 id="issues">Data issues</h2>
{% if issues %}<table><tr><th>severity</th><th>check</th><th>message</th><th>file</th><th>rows</th></tr>
{% for i in issues %}<tr><td class="sev-{{ i.severity }}">{{ i.severity }}</td><td>{{ i.check }}</td>
<td>{{ i.message }}</td><td>{{ i.file }}</td><td>{{ i.rows }}</td></tr>
{% endfor %}</table>{% else %}<p class="muted">No data issues found.</p>{% endif %}
<h2 id="recipe">Resolved recipe</h2>
<pre>{{ recipe_yaml }}</pre>
<h2 id="timing">Timing</h2>
{% if timing %}{{ table(timing) }}{% else %}<p class="muted">No timing recorded.</p>{% endif %}
<h2 id="hardware">Hardware</h2>
{% if hardware %}{{ table(hardware) }}{% else %}<p class="muted">No hardware information.</p>{% endif %}
{% for heading, fragment in extra %}<h2>{{ heading }}</h2>
{{ fragment }}
{% endfor %}
</body>
</html>
"""

_ENV = jinja2.Environment(
    autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True
)


def report_to_json_safe(obj: Any) -> Any:
    """Recursively convert numpy types, paths, tuples and sets into JSON-serialisable Python values.

    Non-finite floats become ``None`` because ``NaN``/``Infinity`` are not valid JSON and break
    strict parsers (browsers, ``jq``).

    Args:
        obj: any nesting of dicts, sequences, numpy arrays/scalars and scalars.

    Returns:
        An equivalent structure of ``dict`` (with ``str`` keys), ``list``, ``str``, ``int``, ``float``,
        ``bool`` and ``None``.
    """
    if isinstance(obj, Mapping):
        return {str(k): report_to_json_safe(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return report_to_json_safe(obj.tolist())
    if isinstance(obj, (list, tuple, set, frozenset)):
        return [report_to_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return report_to_json_safe(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, (str, int, bool)) or obj is None:
        return obj
    return str(obj)  # Paths, datetimes, enums: readable beats failing at the end of a long run


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(value: Any) -> str:
    """Display form of a table cell: floats to at most 4 decimals (no trailing zeros), None as a dash."""
    if value is None:
        return "\u2014"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 1000:
            return f"{value:,.1f}"
        # "12.3" and "100" read better than "12.3000" and "100.0000" in timing tables.
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10000:
        return f"{value:,}"
    return str(value)


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))


def _dict_table(data: Mapping[str, Any]) -> dict[str, Any]:
    """A dict as a table.

    A dict of dicts (e.g. split -> stat -> value) becomes a grid with one row per outer key and one
    column per inner key; anything else becomes key/value rows, with nested values shown as text.
    """
    data = report_to_json_safe(data)
    if data and all(isinstance(v, dict) and all(_is_scalar(x) for x in v.values()) for v in data.values()):
        columns = list(dict.fromkeys(k for v in data.values() for k in v))
        rows = [[key, *(inner.get(c) for c in columns)] for key, inner in data.items()]
        return {"header": ["", *columns], "rows": rows}
    rows = [[key, value if _is_scalar(value) else _compact(value)] for key, value in data.items()]
    return {"header": ["key", "value"], "rows": rows}


def _compact(value: Any) -> str:
    """One-line text for a nested value inside a key/value table."""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_fmt(v) if _is_scalar(v) else _compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(_fmt(v) if _is_scalar(v) else _compact(v) for v in value)
    return _fmt(value)


def _report_rows(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-class rows then accuracy / macro / weighted rows, formatted like the text report."""
    n = int(metrics["n"])
    rows = [
        {
            "name": label,
            "avg": False,
            "cells": [f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}", m["support"]],
        }
        for label, m in metrics["per_class"].items()
    ]
    weighted = [metrics.get(f"weighted_{k}") for k in ("precision", "recall")]
    rows += [
        {"name": "accuracy", "avg": True, "cells": ["", "", f"{metrics['accuracy']:.4f}", n]},
        {
            "name": "macro avg",
            "avg": True,
            "cells": [
                f"{metrics['macro_precision']:.4f}",
                f"{metrics['macro_recall']:.4f}",
                f"{metrics['macro_f1']:.4f}",
                n,
            ],
        },
        {
            "name": "weighted avg",
            "avg": True,
            "cells": [
                *(_fmt(w) if w is not None else "" for w in weighted),
                f"{metrics['weighted_f1']:.4f}",
                n,
            ],
        },
    ]
    return rows


def _split_section(name: str, metrics: Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows for one scored split (cards, report, plots).

    Classification metrics (``per_class`` + ``confusion_matrix``) get the full report, confusion matrix
    and reliability diagram; any other task gets cards of its scalar metrics (its own plots come as
    extra sections).
    """
    if "per_class" not in metrics or "confusion_matrix" not in metrics:
        cards = [(k, _fmt(v)) for k, v in metrics.items() if _is_scalar(v) and v is not None and not isinstance(v, str)
                 and not isinstance(v, bool)][:10]
        return {"name": name, "cards": cards, "report": None}
    cards = [
        ("accuracy", f"{metrics['accuracy']:.4f}"),
        ("macro-F1", f"{metrics['macro_f1']:.4f}"),
        ("ECE", f"{metrics['ece']:.4f}"),
        ("n", f"{int(metrics['n']):,}"),
    ]
    return {
        "name": name,
        "cards": cards,
        "report": _report_rows(metrics),
        "cm_img": _data_uri(plot_confusion_matrix(metrics["confusion_matrix"], metrics["labels"])),
        "rel_img": _data_uri(plot_reliability(metrics["calibration"])),
        "ece": f"{metrics['ece']:.4f}",
        "log_loss": _fmt(metrics.get("log_loss")),
    }


def _issue_rows(issues: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """Issues with row lists cut to the first :data:`MAX_ISSUE_ROWS` numbers (a count of the rest)."""
    out = []
    for issue in issues:
        rows = list(issue.get("rows") or [])
        shown = ", ".join(str(r) for r in rows[:MAX_ISSUE_ROWS])
        if len(rows) > MAX_ISSUE_ROWS:
            shown += f" \u2026 (+{len(rows) - MAX_ISSUE_ROWS} more)"
        out.append(
            {
                "severity": str(issue.get("severity", "")).lower(),
                "check": str(issue.get("check", "")),
                "message": str(issue.get("message", "")),
                "file": str(issue.get("file") or ""),
                "rows": shown,
            }
        )
    return out


def _data_section(data_stats: Mapping[str, Any]) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    """Label-distribution plot (if ``label_counts`` is present) and one table per statistic."""
    label_counts = data_stats.get("label_counts")
    img = (
        _data_uri(plot_class_distribution(label_counts))
        if isinstance(label_counts, Mapping) and label_counts
        else None
    )
    tables = []
    for key, raw in data_stats.items():
        value = raw
        if key == "label_counts" and isinstance(raw, Mapping):
            # Transpose to label rows x split columns: 35 labels read better down than across.
            labels = list(dict.fromkeys(str(lb) for split in raw.values() for lb in split))
            value = {lb: {split: raw[split].get(lb, 0) for split in raw} for lb in labels}
        table = (
            _dict_table(value)
            if isinstance(value, Mapping)
            else {"header": ["value"], "rows": [[_compact(value)]]}
        )
        tables.append((str(key).replace("_", " "), table))
    return img, tables


def write_html_report(
    path: str | Path,
    *,
    title: str,
    test_metrics: dict[str, Any] | None,
    valid_metrics: dict[str, Any] | None,
    history: list[dict[str, Any]],
    recipe_yaml: str,
    data_stats: dict[str, Any],
    data_issues: list[dict[str, Any]],
    timing: dict[str, Any],
    hardware: dict[str, Any],
    extra_sections: list[tuple[str, str]] | None = None,
    lang: str = "en",
) -> Path:
    """Write a self-contained HTML report of one run, atomically.

    Args:
        path: destination file; parent directories are created.
        title: page title (escaped).
        test_metrics: metrics of the test split from ``classification_metrics``, or ``None``.
        valid_metrics: metrics of the validation split, or ``None``.
        history: training log records (``step``, ``train_loss``, ``valid_loss``, ``valid_<metric>``).
        recipe_yaml: the resolved recipe, shown verbatim.
        data_stats: statistics about the data; ``label_counts`` (split -> label -> count) is plotted,
            every key is shown as a table.
        data_issues: dicts with ``severity``, ``check``, ``message``, ``file`` and ``rows``.
        timing: durations and throughputs (seconds, samples/s...).
        hardware: description of the machine.
        extra_sections: ``(heading, html_fragment)`` pairs appended at the end. The heading is
            escaped; the fragment is trusted HTML inserted as-is, so callers must build it safely.
        lang: value of the ``<html lang>`` attribute.

    Returns:
        The path written.
    """
    splits = [
        _split_section(name, m)
        for name, m in (("test", test_metrics), ("validation", valid_metrics))
        if m is not None
    ]
    dist_img, data_tables = _data_section(data_stats)
    html = _ENV.from_string(_TEMPLATE).render(
        lang=lang,
        title=title,
        css=Markup(_CSS),
        generated=_dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z"),
        fmt=_fmt,
        splits=splits,
        loss_img=_data_uri(plot_loss_curves(history)) if history else None,
        dist_img=dist_img,
        data_tables=data_tables,
        issues=_issue_rows(data_issues),
        recipe_yaml=recipe_yaml,
        timing=_dict_table(timing) if timing else None,
        hardware=_dict_table(hardware) if hardware else None,
        extra=[(heading, Markup(fragment)) for heading, fragment in (extra_sections or [])],
    )
    path = Path(path)
    atomic_write_text(path, html)
    return path
