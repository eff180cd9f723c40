"""Regression (scoring) datasets, written as ``text,score`` CSV.

- ``vader_tweets``: VADER ground truth, 4,200 tweets, each with the mean human sentiment rating on
  −4..+4 (Hutto & Gilbert, ICWSM 2014); MIT.

The VADER ratings ship only in the *source* archive of vaderSentiment 3.3.2 on PyPI
(``additional_resources/hutto_ICWSM_2014.tar.gz``), not in its wheel, so the tweets file is vendored
here unchanged (gzipped, with the MIT licence as a ``#`` header): nothing is downloaded at run time.
"""

from __future__ import annotations

import gzip
from pathlib import Path

from taskfit.data.packaged import PackagedDataset, register_dataset
from taskfit.data.packaged.text import write_rows_csv

ASSETS = Path(__file__).with_name("assets")


def vader_tweet_rows() -> list[tuple[str, str]]:
    """(tweet, mean rating) pairs; the rating is kept as written in the source (a decimal string)."""
    rows = []
    with gzip.open(ASSETS / "vader_tweets.tsv.gz", "rt", encoding="utf-8") as fh:
        lines = [ln.rstrip("\n") for ln in fh if not ln.startswith("#")]
    for line in lines[1:]:  # the first non-comment line is the column header
        if line.strip():
            _, score, text = line.split("\t", 2)
            rows.append((text.strip(), score))
    return rows


def _write_vader(dest: Path, n: int | None, seed: int) -> Path:
    return write_rows_csv(list(vader_tweet_rows()), ["text", "score"], dest, n, seed)


register_dataset(PackagedDataset(
    "vader_tweets", "regression", "en",
    "English tweets with mean human sentiment ratings -4..+4 (VADER, ICWSM 2014)",
    "MIT (vaderSentiment, C.J. Hutto)", _write_vader,
    recipe={"task": {"name": "regression", "normalize": True}, "model": {"name": "all-MiniLM-L6-v2"},
            "data": {"text": "text", "label": "score"},
            "train": {"lr": 1e-4, "batch_size": 32, "epochs": 2}},
))
