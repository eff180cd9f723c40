"""FAQ / retrieval datasets from chatterbot-corpus 1.3.3, written as ``query,answer,category`` CSV.

| name | source | rows | licence |
|---|---|---|---|
| faq_en | ``chatterbot_corpus/data/english/*.yml`` | ~2,400 pairs, 21 categories | BSD-3-Clause (chatterbot-corpus) |
| faq_zh | ``chatterbot_corpus/data/chinese/*.yml`` | ~550 pairs, 17 categories | BSD-3-Clause (chatterbot-corpus) |

Each file lists conversations (lists of utterances); every (utterance, next utterance) pair becomes one
(query, answer) row with the file's category. Exact duplicate rows are removed.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import yaml

from taskfit.data.packaged import PackagedDataset, package_dir, register_dataset
from taskfit.data.packaged.text import write_rows_csv

_INSTALL = "pip install chatterbot-corpus==1.3.3"


def faq_rows(language: str) -> list[tuple[str, str, str]]:
    """(query, answer, category) pairs of one language folder ("english" or "chinese")."""
    root = package_dir("chatterbot_corpus", _INSTALL) / "data" / language
    rows: list[tuple[str, str, str]] = []
    for f in sorted(root.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        category = str((doc.get("categories") or [f.stem])[0])
        for conv in doc.get("conversations") or []:
            turns = [str(t).strip() for t in conv if t is not None and str(t).strip()]
            rows += [(q, a, category) for q, a in pairwise(turns)]
    return list(dict.fromkeys(rows))


def _writer(language: str) -> Callable[[Path, int | None, int], Path]:
    def write(dest: Path, n: int | None, seed: int) -> Path:
        return write_rows_csv(list(faq_rows(language)), ["query", "answer", "category"], dest, n, seed)

    return write


register_dataset(PackagedDataset(
    "faq_en", "retrieval", "en", "English FAQ / small-talk question → answer pairs, 21 categories (chatterbot-corpus)",
    "BSD-3-Clause (chatterbot-corpus 1.3.3)", _writer("english"),
    recipe={"task": {"name": "retrieval", "query": "query", "answer": "answer"},
            "model": {"name": "all-MiniLM-L6-v2"}, "data": {"max_length": 64},
            "train": {"lr": 5e-5, "batch_size": 32, "epochs": 2}},
))
register_dataset(PackagedDataset(
    "faq_zh", "retrieval", "zh", "Chinese FAQ / small-talk question → answer pairs, 17 categories (chatterbot-corpus)",
    "BSD-3-Clause (chatterbot-corpus 1.3.3)", _writer("chinese"),
    # MiniLM's English vocabulary maps most Chinese characters to [UNK]; the multilingual E5 reads them
    # (its "query: " / "passage: " prefixes are added automatically).
    recipe={"task": {"name": "retrieval", "query": "query", "answer": "answer"},
            "model": {"name": "multilingual-e5-small"}, "data": {"max_length": 64},
            "train": {"lr": 3e-5, "batch_size": 32, "epochs": 2}},
))
