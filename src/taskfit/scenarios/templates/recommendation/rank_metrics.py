"""Ranking metrics of a click model: AUC over all impressions and mean NDCG@k per user, against a random order.

Every held-out user's impressions are scored with the trained run (the probability of ``click`` for the pair
(item, history), through taskfit's Predictor) and sorted by that probability. Reported:

- AUC: the chance that a random clicked impression scores above a random skipped one (ties count half);
- NDCG@k (binary relevance: clicked = 1): the discounted gain of the clicks in the top k, divided by the
  best possible, averaged over users; the random baseline is the mean over seeded shuffles of each user's list.

Usage (from the folder you ran ``taskfit train`` in)::

    python rank_metrics.py --impressions data/test_impressions.csv [--run runs/recommendation] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path


def auc(labels: Sequence[int], scores: Sequence[float]) -> float:
    """Area under the ROC curve from ranks (Mann-Whitney U); tied scores share their average rank."""
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1  # 1-based average rank of the tie group
        i = j + 1
    pos = sum(1 for y in labels if y)
    neg = len(labels) - pos
    if pos == 0 or neg == 0:
        raise ValueError(f"AUC needs clicked and skipped impressions; got {pos} clicked, {neg} skipped.")
    rank_sum = sum(r for r, y in zip(ranks, labels, strict=True) if y)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def ndcg_at_k(relevance: Sequence[int], k: int) -> float:
    """NDCG@k of one ranked list (``relevance`` in the model's order, best first); 0 when nothing is relevant."""
    def dcg(rels: Sequence[int]) -> float:
        return sum(r / math.log2(i + 2) for i, r in enumerate(rels[:k]))

    ideal = dcg(sorted(relevance, reverse=True))
    return dcg(relevance) / ideal if ideal > 0 else 0.0


def rank_report(users: dict[str, list[tuple[float, int]]], ks: Sequence[int], shuffles: int = 200,
                seed: int = 0) -> dict[str, float]:
    """AUC, mean NDCG@k (model order) and random-order NDCG@k over ``users``: user → [(score, clicked)]."""
    rng = random.Random(seed)
    flat = [pair for rows in users.values() for pair in rows]
    out = {"users": float(len(users)), "impressions": float(len(flat)),
           "click_rate": sum(y for _, y in flat) / len(flat),
           "auc": auc([y for _, y in flat], [s for s, _ in flat])}
    for k in ks:
        model, rand = [], []
        for rows in users.values():
            ranked = [y for _, y in sorted(rows, key=lambda r: -r[0])]
            model.append(ndcg_at_k(ranked, k))
            rels = [y for _, y in rows]
            total = 0.0
            for _ in range(shuffles):
                rng.shuffle(rels)
                total += ndcg_at_k(rels, k)
            rand.append(total / shuffles)
        out[f"ndcg@{k}"] = sum(model) / len(model)
        out[f"random_ndcg@{k}"] = sum(rand) / len(rand)
    return out


def find_run(path: str) -> Path:
    """A run directory given relative to the current folder, or else to this script's folder."""
    for candidate in (Path(path), Path(__file__).resolve().parent / path):
        if candidate.exists():
            return candidate
    sys.exit(f"error: run directory {path!r} not found. Train it first (taskfit train recipe.yaml) or give --run.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--impressions", default="data/test_impressions.csv", help="CSV: user,item,history,label")
    p.add_argument("--run", default="runs/recommendation", help="run directory of recipe.yaml")
    p.add_argument("--k", default="5,10", help="comma-separated k of NDCG@k")
    p.add_argument("--positive", default="click", help="the label that counts as relevant")
    p.add_argument("--json", help="also write the metrics here as JSON")
    args = p.parse_args(argv)
    ks = [int(k) for k in args.k.split(",") if k.strip()]
    with open(args.impressions, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    need = {"user", "item", "history", "label"}
    if not rows or need - set(rows[0]):
        sys.exit(f"error: {args.impressions}: needs columns {sorted(need)} and at least one row.")

    from taskfit.inference import Predictor  # imported late: --help and file errors answer without torch

    model = Predictor.load(find_run(args.run))
    if args.positive not in model.labels:
        sys.exit(f"error: --positive {args.positive!r} is not a label of the model {model.labels}.")
    probs = model.predict_proba([r["item"] for r in rows], pairs=[r["history"] for r in rows])
    col = model.labels.index(args.positive)
    users: dict[str, list[tuple[float, int]]] = defaultdict(list)
    for r, pr in zip(rows, probs, strict=True):
        users[r["user"]].append((float(pr[col]), int(r["label"] == args.positive)))
    report = rank_report(users, ks)
    print(f"{int(report['users'])} users, {int(report['impressions'])} impressions, click rate "
          f"{report['click_rate']:.3f}\n{'metric':<10}{'model':>8}{'random':>8}")
    print(f"{'AUC':<10}{report['auc']:>8.3f}{0.5:>8.3f}")
    for k in ks:
        print(f"{f'NDCG@{k}':<10}{report[f'ndcg@{k}']:>8.3f}{report[f'random_ndcg@{k}']:>8.3f}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
