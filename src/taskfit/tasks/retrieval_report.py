"""Ranking metrics, report sections and terminal rendering of the retrieval task.

Metrics use binary relevance: a corpus answer is relevant to a query when the data pairs them (a query
may have several answers, e.g. "How are you?" → "Fine" / "Good"). Every user text shown in the HTML
report is escaped; plots are PNG data URIs from the shared :mod:`taskfit.evaluate.plots` helpers.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: the recall curve of the report runs k = 1..CURVE_K
CURVE_K = 20


def first_relevant_ranks(scores: np.ndarray, relevant: Sequence[Sequence[int]]) -> np.ndarray:
    """1-based rank of the best-ranked relevant item of each query.

    Args:
        scores: float [Q, M] similarity of each query to each corpus item (higher is better).
        relevant: per query, the corpus indices that count as correct (at least one).

    Returns:
        int [Q] ranks: 1 + the number of items scored strictly higher than the best relevant one.
    """
    ranks = np.empty(len(relevant), dtype=np.int64)
    for i, rel in enumerate(relevant):
        best = scores[i, list(rel)].max()
        ranks[i] = 1 + int((scores[i] > best).sum())
    return ranks


def ndcg_at(scores: np.ndarray, relevant: Sequence[Sequence[int]], k: int = 10) -> float:
    """Mean nDCG@k with binary relevance. ``scores`` float [Q, M]."""
    if not len(relevant):
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    total = 0.0
    for i, rel in enumerate(relevant):
        hit = np.isin(top[i], list(rel))
        ideal = discounts[: min(len(rel), k)].sum()
        total += float((hit * discounts).sum() / ideal)
    return total / len(relevant)


def ranking_metrics(scores: np.ndarray, relevant: Sequence[Sequence[int]], recall_at: Sequence[int]
                    ) -> dict[str, Any]:
    """recall@k for each k, MRR, nDCG@10 and the recall curve k = 1..20.

    Args:
        scores: float [Q, M] query-to-corpus similarities.
        relevant: per query, its relevant corpus indices.
        recall_at: the k of the ``recall@k`` entries.
    """
    ranks = first_relevant_ranks(scores, relevant)
    out: dict[str, Any] = {f"recall@{k}": float((ranks <= k).mean()) if len(ranks) else float("nan")
                           for k in sorted(set(recall_at))}
    out["mrr"] = float((1.0 / ranks).mean()) if len(ranks) else float("nan")
    out["ndcg@10"] = ndcg_at(scores, relevant, 10)
    out["recall_curve"] = [float((ranks <= k).mean()) if len(ranks) else float("nan")
                           for k in range(1, CURVE_K + 1)]
    out["median_rank"] = float(np.median(ranks)) if len(ranks) else float("nan")
    return out


def failures(scores: np.ndarray, relevant: Sequence[Sequence[int]], queries: Sequence[str],
             corpus: Sequence[str], limit: int = 20) -> list[dict[str, Any]]:
    """Up to ``limit`` queries whose top-1 answer is wrong: query, expected answer, retrieved top-1."""
    out: list[dict[str, Any]] = []
    for i, rel in enumerate(relevant):
        top = int(np.argmax(scores[i]))
        if top in rel:
            continue
        expected = max(rel, key=lambda j: scores[i, j])
        out.append({"query": queries[i], "expected": corpus[expected], "retrieved": corpus[top],
                    "score": round(float(scores[i, top]), 4)})
        if len(out) >= limit:
            break
    return out


def _num(v: Any) -> str:
    return f"{v:.4f}" if isinstance(v, float) and math.isfinite(v) else "—"


def retrieval_sections(scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
    """The recall@k curve of every split, and a table of sample failures per split."""
    from taskfit.evaluate.report import _data_uri
    from taskfit.tasks.report_plots import plot_recall_curve

    curves = {s: m["recall_curve"] for s, m in scores.items() if m.get("recall_curve")}
    out = [("Retrieval: recall@k", f'<img alt="recall at k" src="{_data_uri(plot_recall_curve(curves))}">')]
    for split, m in scores.items():
        rows = m.get("failures") or []
        if not rows:
            continue
        cells = "".join(
            f"<tr><td>{html.escape(str(r['query']))}</td><td>{html.escape(str(r['expected']))}</td>"
            f"<td>{html.escape(str(r['retrieved']))}</td><td>{r['score']:.3f}</td></tr>" for r in rows)
        out.append((f"Retrieval failures: {split}",
                    f"<p>{len(rows)} sample queries whose top-1 answer is wrong (corpus of "
                    f"{int(m.get('corpus_size', 0))} answers).</p><table><tr><th>query</th><th>expected</th>"
                    f"<th>retrieved top-1</th><th>score</th></tr>{cells}</table>"))
    return out


def render_retrieval(console: Any, metrics: Mapping[str, Any], title: str, max_failures: int = 5) -> None:
    """Print the ranking metrics and a few failures with rich (user text escaped)."""
    from rich.markup import escape
    from rich.table import Table

    keys = [k for k in metrics if k.startswith("recall@")] + ["mrr", "ndcg@10", "loss"]
    table = Table(title=f"{escape(title)}: retrieval over {metrics.get('corpus_size', '?')} answers",
                  title_justify="left")
    table.add_column("n", justify="right")
    for k in keys:
        table.add_column(k, justify="right")
    table.add_row(str(metrics.get("n", "")), *[_num(metrics.get(k)) for k in keys])
    console.print(table)
    rows = (metrics.get("failures") or [])[:max_failures]
    if rows:
        fails = Table(title="sample failures", title_justify="left")
        for col in ("query", "expected", "retrieved top-1"):
            fails.add_column(col, overflow="fold")
        for r in rows:
            fails.add_row(escape(str(r["query"])), escape(str(r["expected"])), escape(str(r["retrieved"])))
        console.print(fails)
