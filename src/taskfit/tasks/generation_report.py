"""Scoring generated replies (exact match, token F1) and showing samples in report.html and the terminal.

Both scores compare normalised text: lower-cased, punctuation (ASCII and CJK) removed, whitespace
collapsed. Token F1 is the SQuAD-style overlap of the two bags of tokens, where a token is a run of
letters/digits, or a single Han / kana character (Chinese has no spaces, so characters are its words).
"""

from __future__ import annotations

import html
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+")


def normalise(text: str) -> str:
    """Lower-case, drop punctuation and symbols, collapse whitespace."""
    kept = "".join(" " if unicodedata.category(c)[0] in "PS" else c for c in text.lower())
    return " ".join(kept.split())


def tokens(text: str) -> list[str]:
    return _TOKEN.findall(normalise(text))


def exact_match(prediction: str, reference: str) -> float:
    return float(normalise(prediction) == normalise(reference))


def token_f1(prediction: str, reference: str) -> float:
    """Harmonic mean of token precision and recall (1.0 when both are empty)."""
    pred, ref = tokens(prediction), tokens(reference)
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    p, r = common / len(pred), common / len(ref)
    return 2 * p * r / (p + r)


def generation_scores(samples: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Mean exact match and token F1 over samples holding ``generated`` and ``reference``."""
    if not samples:
        return {}
    em = [exact_match(s["generated"], s["reference"]) for s in samples]
    f1 = [token_f1(s["generated"], s["reference"]) for s in samples]
    return {"exact_match": sum(em) / len(em), "token_f1": sum(f1) / len(f1)}


def _fmt(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else html.escape(str(v))


def html_section(split: str, metrics: Mapping[str, Any], limit: int = 12) -> str:
    """Trusted HTML: perplexity line plus a table of held-out prompts, references and generated replies
    (every user string escaped)."""
    head = (f"<p>{html.escape(split)}: perplexity <b>{_fmt(metrics.get('perplexity', ''))}</b> on "
            f"{metrics.get('tokens', 0)} answer tokens; exact match <b>{_fmt(metrics.get('exact_match', '-'))}</b>, "
            f"token F1 <b>{_fmt(metrics.get('token_f1', '-'))}</b> on {len(metrics.get('samples', []))} "
            "generated replies (greedy).</p>")
    rows = []
    for s in list(metrics.get("samples", []))[:limit]:
        cells = [str(s.get("row", "")), s["prompt"], s["reference"], s["generated"],
                 f"{token_f1(s['generated'], s['reference']):.2f}"]
        rows.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return head + "<p class=\"muted\">No replies were generated (task.eval_prompts is 0).</p>"
    return (head + "<table><tr><th>row</th><th>prompt</th><th>reference</th><th>generated</th><th>token F1</th></tr>"
            + "".join(rows) + "</table>")


def render_samples(console: Any, metrics: Mapping[str, Any], title: str, limit: int = 5) -> None:
    """A rich table of a few held-out prompts with reference and generated replies."""
    from rich.markup import escape
    from rich.table import Table

    line = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("loss", "perplexity", "exact_match", "token_f1")
                     if isinstance(metrics.get(k), float))
    console.print(f"[bold]{escape(title)}[/bold]  {line}  n {metrics.get('n', '')}")
    samples = list(metrics.get("samples", []))[:limit]
    if not samples:
        return
    table = Table(title="held-out prompts (greedy replies)", show_lines=True)
    for col in ("prompt", "reference", "generated"):
        table.add_column(col, overflow="fold", max_width=48)
    for s in samples:
        table.add_row(escape(s["prompt"]), escape(s["reference"]), escape(s["generated"]))
    console.print(table)
