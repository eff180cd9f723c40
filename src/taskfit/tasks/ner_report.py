"""Scoring and showing NER results: entity spans, seqeval scores, the report section and the console table.

Entity-level scores follow seqeval: an entity counts as found only when its type and its exact word span
match. BIO data is scored in seqeval's default (conlleval-compatible) mode, where an ``I-X`` that
continues nothing starts an entity; BIOES data in strict mode with the IOBES scheme, where only
well-formed B…E / S entities count.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from taskfit.tasks.ner_data import split_tag


def spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """Entities of one tag sequence as ``(type, start, end)`` word indices (``end`` exclusive).

    Lenient like conlleval: ``B-``/``S-`` start an entity, ``I-``/``E-`` continue one of the same type or
    else start one, ``E-``/``S-`` close it; ``O`` and unknown tags close it.
    """
    out: list[tuple[str, int, int]] = []
    cur: list[Any] | None = None  # [type, start, end]
    for j, tag in enumerate(tags):
        p, k = split_tag(tag)
        if p in ("O", ""):
            cur = None
            continue
        if p in ("B", "S") or cur is None or cur[0] != k:
            cur = [k, j, j + 1]
            out.append((k, j, j + 1))
        else:
            cur[2] = j + 1
            out[-1] = (k, cur[1], j + 1)
        if p in ("E", "S"):
            cur = None
    return out


def entity_scores(gold: Sequence[Sequence[str]], pred: Sequence[Sequence[str]], scheme: str) -> dict[str, Any]:
    """Entity-level precision/recall/F1, micro and macro over types, and per type (seqeval).

    Args:
        gold, pred: per sentence, one tag per word (equal lengths).
        scheme: "BIO" (seqeval default mode) or "BIOES" (strict mode, IOBES scheme).

    Returns:
        ``precision``, ``recall``, ``f1`` (micro), ``macro_precision``, ``macro_recall``, ``macro_f1``,
        ``n_entities`` (gold), ``n_predicted`` and ``per_type`` {type: {precision, recall, f1, support}}.
    """
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOBES

    y_true, y_pred = [list(s) for s in gold], [list(s) for s in pred]
    n_gold = sum(len(spans(s)) for s in y_true)
    n_pred = sum(len(spans(s)) for s in y_pred)
    out: dict[str, Any] = {"precision": 0.0, "recall": 0.0, "f1": 0.0, "macro_precision": 0.0, "macro_recall": 0.0,
                           "macro_f1": 0.0, "n_entities": n_gold, "n_predicted": n_pred, "per_type": {}}
    if n_gold == 0 and n_pred == 0:
        return out  # seqeval cannot average over zero types; nothing to find and nothing found
    kwargs: dict[str, Any] = {"mode": "strict", "scheme": IOBES} if scheme == "BIOES" else {}
    rep = classification_report(y_true, y_pred, output_dict=True, zero_division=0, **kwargs)
    for key, m in rep.items():
        row = {"precision": float(m["precision"]), "recall": float(m["recall"]), "f1": float(m["f1-score"]),
               "support": int(m["support"])}
        if key == "micro avg":
            out.update(precision=row["precision"], recall=row["recall"], f1=row["f1"])
        elif key == "macro avg":
            out.update(macro_precision=row["precision"], macro_recall=row["recall"], macro_f1=row["f1"])
        elif key != "weighted avg":
            out["per_type"][key] = row
    return out


def html_section(split: str, metrics: Mapping[str, Any]) -> str:
    """Per-type P/R/F1/support table plus the F1 bar plot, as trusted HTML (user text escaped)."""
    import base64

    rows = []
    for name, m in metrics.get("per_type", {}).items():
        rows.append(f"<tr><td>{html.escape(str(name))}</td>" + "".join(
            f'<td class="num">{m[k]:.4f}</td>' for k in ("precision", "recall", "f1")) +
            f'<td class="num">{int(m["support"])}</td></tr>')
    for label, prefix in (("micro avg", ""), ("macro avg", "macro_")):
        rows.append(f'<tr class="avg"><td>{label}</td>' + "".join(
            f'<td class="num">{float(metrics.get(prefix + k, 0.0)):.4f}</td>' for k in ("precision", "recall", "f1"))
            + f'<td class="num">{int(metrics.get("n_entities", 0))}</td></tr>')
    from taskfit.tasks.report_plots import plot_type_f1

    png = base64.b64encode(plot_type_f1(metrics.get("per_type", {}), f"Entity F1 per type ({split})")).decode()
    return ("<table><tr><th>type</th><th>precision</th><th>recall</th><th>F1</th><th>support</th></tr>"
            + "".join(rows) + "</table>"
            + f"<p>Token accuracy: <b>{float(metrics.get('token_accuracy', 0.0)):.4f}</b> &middot; sentences: "
            f"{int(metrics.get('n', 0))} &middot; truncated: {int(metrics.get('truncated', 0))}</p>"
            + f'<img alt="entity F1 per type {html.escape(split)}" src="data:image/png;base64,{png}">')


def render_table(console: Any, metrics: Mapping[str, Any], title: str) -> None:
    """Per-type table with rich, then micro/macro rows and token accuracy."""
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"{escape(title)}: entities", title_justify="left")
    table.add_column("type")
    for name in ("precision", "recall", "f1", "support"):
        table.add_column(name, justify="right")
    for name, m in metrics.get("per_type", {}).items():
        table.add_row(Text(str(name)), f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
                      str(m["support"]))
    table.add_section()
    for label, prefix in (("micro avg", ""), ("macro avg", "macro_")):
        table.add_row(label, *(f"{float(metrics.get(prefix + k, 0.0)):.4f}" for k in ("precision", "recall", "f1")),
                      str(metrics.get("n_entities", "")), style="bold" if not prefix else None)
    console.print(table)
    console.print(f"token accuracy {float(metrics.get('token_accuracy', 0.0)):.4f}  loss "
                  f"{float(metrics.get('loss', 0.0)):.4f}  sentences {metrics.get('n', '')}", highlight=False)
