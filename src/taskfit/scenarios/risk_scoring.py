"""risk-scoring: a regression score of text with a per-group fairness audit.

Data (real): the VADER ground truth (Hutto & Gilbert, ICWSM 2014; MIT, vaderSentiment; snippet texts from
their sources, research use): tweets, movie-review, product-review and news-editorial snippets, each with the
mean rating of independent human raters on −4 (very negative) .. +4 (very positive). The scenario scores
*escalation risk* as the negativity of a message: ``risk = −rating`` (so +4 = most negative, the sign flip
is the only change). The ``domain`` column says where each text comes from and is the fairness group: does
the score serve every kind of text equally well?

Written files:
    data/risk.csv: ``text,risk,domain``: :data:`PER_DOMAIN` seeded rows of each of the 4 domains, so every
        group has enough test rows for its error to mean something.
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from taskfit.data.packaged.groups import DOMAINS, _tsv_rows
from taskfit.data.packaged.text import write_rows_csv
from taskfit.scenarios import Scenario, register_scenario

PER_DOMAIN = 500


def risk_rows(seed: int) -> list[tuple[str, str, str]]:
    """(text, risk = −mean human rating as text, domain), :data:`PER_DOMAIN` per domain (seeded)."""
    raw = [("tweets", score, text) for _, score, text in _tsv_rows("vader_tweets.tsv.gz", 3)]
    raw += [(src, score, text) for src, _, score, text in _tsv_rows("vader_snippets.tsv.gz", 4)]
    by_domain: dict[str, dict[str, str]] = defaultdict(dict)
    for src, score, text in raw:
        text = " ".join(text.split())
        if text:  # one rating per text: the first seen (a few snippets repeat with the same rating)
            by_domain[DOMAINS[src]].setdefault(text, f"{-float(score):.4g}")
    rng = random.Random(seed)
    rows = []
    for domain in sorted(by_domain):
        items = sorted(by_domain[domain].items())
        for text, risk in rng.sample(items, min(PER_DOMAIN, len(items))):
            rows.append((text, risk, domain))
    return rows


def build(folder: Path, seed: int) -> list[Path]:
    """Write ``data/risk.csv``."""
    return [write_rows_csv(list(risk_rows(seed)), ["text", "risk", "domain"], folder / "data" / "risk.csv", None,
                           seed)]


SCENARIO = register_scenario(Scenario(
    name="risk-scoring",
    summary="Regression risk score of text (human-rated negativity) with a per-group fairness audit "
            "(fairness.group_column + taskfit audit)",
    template="risk_scoring",
    build=build,
    next_steps=("taskfit train {dir}/recipe.yaml", "taskfit audit runs/risk-scoring --skip robustness,explanations"),
    data_note="real: VADER human ratings of tweets and review/editorial snippets (MIT); risk = −rating",
))
