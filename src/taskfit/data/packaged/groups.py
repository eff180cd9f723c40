"""Datasets with a real group column, for per-group (fairness) evaluation.

- ``vader_domains``: VADER ground truth (Hutto & Gilbert, ICWSM 2014): tweets, movie-review, product-review
  and news-editorial snippets rated by people. MIT (vaderSentiment); snippet texts from their sources,
  research use.

``vader_domains`` is binary sentiment (``pos`` / ``neg``) with a ``domain`` column naming where each text comes
from: ``tweet``, ``movie_review``, ``product_review`` or ``news_editorial``. The domain is a property of the
source, not something derived from the text, so per-domain accuracy and selection rates are a real (if
non-demographic) group analysis: does a model trained on the mix serve every kind of text equally well, and
does it call one kind "positive" more often? The human ratings (mean of independent raters, −4..+4) are
turned into labels by sign; near-neutral texts (|rating| < 0.5) are left out. Positive shares differ by
domain in the data itself (tweets ≈ 68% of polar rows, news editorials ≈ 40%), so even a perfect model has a
demographic-parity gap here while its equalized-odds gap is 0: a worked example of why both are reported.
The tweets come from ``assets/vader_tweets.tsv.gz``; 1,500 seeded rows of each other file are vendored in
``assets/vader_snippets.tsv.gz`` (the source archive is not in the wheel; nothing is downloaded).
"""

from __future__ import annotations

import gzip
from pathlib import Path

from taskfit.data.packaged import PackagedDataset, register_dataset
from taskfit.data.packaged.text import write_rows_csv

ASSETS = Path(__file__).with_name("assets")
DOMAINS = {"tweets": "tweet", "movieReviewSnippets": "movie_review", "amazonReviewSnippets": "product_review",
           "nytEditorialSnippets": "news_editorial"}
#: ratings closer to 0 than this are neither clearly positive nor clearly negative
NEUTRAL_BAND = 0.5


def _tsv_rows(name: str, columns: int) -> list[list[str]]:
    """Rows of a vendored TSV (``#`` comment lines and the header skipped); the last column keeps its tabs."""
    with gzip.open(ASSETS / name, "rt", encoding="utf-8") as fh:
        lines = [ln.rstrip("\r\n") for ln in fh if not ln.startswith("#")]
    return [ln.split("\t", columns - 1) for ln in lines[1:] if ln.strip()]


def vader_domain_rows() -> list[tuple[str, str, str]]:
    """(text, pos|neg, domain) triples, tweets first, then the other domains in file order."""
    raw = [("tweets", score, text) for _, score, text in _tsv_rows("vader_tweets.tsv.gz", 3)]
    raw += [(src, score, text) for src, _, score, text in _tsv_rows("vader_snippets.tsv.gz", 4)]
    rows = []
    for src, score, text in raw:
        value = float(score)
        if abs(value) >= NEUTRAL_BAND and text.strip():
            rows.append((text.strip(), "pos" if value > 0 else "neg", DOMAINS[src]))
    return rows


def _write(dest: Path, n: int | None, seed: int) -> Path:
    return write_rows_csv(list(vader_domain_rows()), ["text", "label", "domain"], dest, n, seed)


register_dataset(PackagedDataset(
    "vader_domains", "text_classification", "en",
    "English sentiment pos/neg with a real group column `domain` (tweet, movie/product review, news editorial; "
    "VADER ground truth)", "MIT (vaderSentiment, C.J. Hutto); snippet texts from their sources, research use",
    _write,
    recipe={"task": "text_classification", "model": {"name": "all-MiniLM-L6-v2"},
            "fairness": {"group_column": "domain", "mitigate": True},
            "train": {"lr": 1e-4, "batch_size": 32, "epochs": 1}},
    demo_rows=2000,
))
