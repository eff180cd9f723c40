"""Reading and checking token-classification (NER) data: CoNLL files and token-list tables.

Two input shapes give the same frame (one row per sentence, columns ``tokens``, ``tags``, ``_row``,
``_source``):

* CoNLL-style text (``.conll``, ``.bio``, ``.iob``, ``.txt``): one token per line, whitespace-separated
  columns, the tag in column ``tag_column`` (default the last), a blank line between sentences,
  ``-DOCSTART-`` lines skipped. ``_row`` is the 1-based line number of the sentence's first token.
* Tables (``.jsonl``, ``.json``, ``.csv``, ``.parquet``): a token-list column and a tag-list column
  (lists may be JSON strings, as they must be in CSV). ``_row`` is the table's row number.

Tag schemes: BIO (``O``, ``B-X``, ``I-X``) and BIOES (also ``E-X``, ``S-X``). A tag outside the scheme
is an error naming file, sentence, line and tag; an ``I-X`` that continues nothing is only a warning
(seqeval reads it as the start of an entity, as conlleval does).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskfit.data.checks import SOURCE
from taskfit.data.readers import ROW, read_table
from taskfit.errors import DataError

CONLL_SUFFIXES = (".conll", ".bio", ".iob", ".txt")
TOKENS, TAGS = "tokens", "tags"
#: per sentence: the 1-based line of each token (CoNLL) — lets a tag error name its exact line
LINES = "_lines"
PREFIXES = {"BIO": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
MAX_LISTED = 8


def is_conll(path: Path) -> bool:
    return path.suffix.lower() in CONLL_SUFFIXES


def read_conll(path: Path, tag_column: int = -1, limit: int | None = None) -> pd.DataFrame:
    """Read a CoNLL-style file into one row per sentence.

    Raises:
        DataError: a line without a tag column (naming its line number), or a file with no sentence.
    """
    sentences: list[tuple[list[str], list[str], list[int]]] = []
    toks: list[str] = []
    tags: list[str] = []
    lines: list[int] = []
    bad: list[str] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise DataError(f"Not UTF-8 text ({e.reason} at byte {e.start}). Save the file as UTF-8.",
                        source=path) from None
    for no, line in enumerate(text.splitlines(), start=1):
        parts = line.split()
        if not parts or parts[0] == "-DOCSTART-":
            if toks:
                sentences.append((toks, tags, lines))
                toks, tags, lines = [], [], []
                if limit is not None and len(sentences) >= limit:
                    break
            continue
        if len(parts) < 2 or not -len(parts) <= tag_column < len(parts) or tag_column % len(parts) == 0:
            if len(bad) < MAX_LISTED:
                bad.append(f"line {no} {line.strip()[:40]!r} has {len(parts)} column(s)")
            continue
        toks.append(parts[0])
        tags.append(parts[tag_column])
        lines.append(no)
    if toks and (limit is None or len(sentences) < limit):
        sentences.append((toks, tags, lines))
    if bad:
        raise DataError(
            "malformed line(s): " + "; ".join(bad) + f". Expected a token then its tag (tag column {tag_column}), "
            "separated by spaces or tabs, and an empty line between sentences.", source=path)
    if not sentences:
        raise DataError("The file holds no sentence (expected token/tag lines).", source=path)
    frame = pd.DataFrame({TOKENS: [s[0] for s in sentences], TAGS: [s[1] for s in sentences],
                          LINES: [s[2] for s in sentences]})
    frame[ROW] = [s[2][0] for s in sentences]
    return frame


def _as_list(value: Any) -> list[str] | None:
    """A token/tag list from a table cell (a list, an array, or a JSON string holding a list)."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return None
    if isinstance(value, (list, tuple, np.ndarray)):
        return [str(v) for v in value]
    return None


def read_token_table(path: Path, tokens: str, tags: str | None, limit: int | None = None) -> pd.DataFrame:
    """Read a JSONL/JSON/CSV/Parquet file with a token-list column (and a tag-list column).

    Raises:
        DataError: a missing column, a cell that is not a list, or tokens/tags of different lengths.
    """
    df = read_table(path, limit=limit, row_numbers=True)
    cols = [c for c in (tokens, tags) if c]
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise DataError(f"column(s) {missing} not found; available columns: "
                        f"{', '.join(c for c in df.columns if c != ROW)}. Set task.tokens / task.tags.", source=path)
    out = pd.DataFrame({ROW: df[ROW].to_numpy()})
    problems: list[str] = []
    for col in cols:
        values = [_as_list(v) for v in df[col]]
        for i, v in enumerate(values):
            if v is None and len(problems) < MAX_LISTED:
                problems.append(f"sentence {i + 1} (row {df[ROW].iloc[i]}): column {col!r} holds "
                                f"{str(df[col].iloc[i])[:40]!r}, not a list")
        out[TOKENS if col == tokens else TAGS] = values
    if problems:
        raise DataError("; ".join(problems) + '. Each cell must be a list such as ["John", "lives"] '
                        "(a JSON string of a list in CSV).", source=path)
    if tags:
        for i, (tk, tg, row) in enumerate(zip(out[TOKENS], out[TAGS], out[ROW], strict=True)):
            if len(tk) != len(tg) and len(problems) < MAX_LISTED:
                problems.append(f"sentence {i + 1} (row {row}) has {len(tk)} tokens but {len(tg)} tags")
        if problems:
            raise DataError("; ".join(problems) + ". Give exactly one tag per token.", source=path)
    return out


def read_sentences(path: Path, tokens: str, tags: str | None, tag_column: int = -1,
                   limit: int | None = None) -> pd.DataFrame:
    """Either reader by suffix; checks for empty sentences and empty tokens, and tags ``_source``."""
    frame = read_conll(path, tag_column, limit) if is_conll(path) else read_token_table(path, tokens, tags, limit)
    problems = []
    for i, (tk, row) in enumerate(zip(frame[TOKENS], frame[ROW], strict=True)):
        if not tk:
            problems.append(f"sentence {i + 1} (row {row}) is empty")
        elif any(not t.strip() for t in tk):
            problems.append(f"sentence {i + 1} (row {row}) has an empty token at position "
                            f"{next(j for j, t in enumerate(tk) if not t.strip()) + 1}")
        if len(problems) >= MAX_LISTED:
            break
    if problems:
        raise DataError("; ".join(problems) + ". Every sentence needs at least one non-empty token; remove "
                        "empty rows.", source=path)
    frame[SOURCE] = str(path)
    return frame


# ---- tag schemes -----------------------------------------------------------------------------------------


def split_tag(tag: str) -> tuple[str, str]:
    """``"B-PER"`` → ``("B", "PER")``; ``"O"`` → ``("O", "")``; anything else → ``("", tag)``."""
    if tag == "O":
        return "O", ""
    prefix, sep, kind = tag.partition("-")
    if sep and kind and prefix in ("B", "I", "E", "S"):
        return prefix, kind
    return "", tag


def _where(frame: pd.DataFrame, i: int, j: int, what: str) -> str:
    """'sentence 3 (line 17)' for CoNLL, 'sentence 3 (row 3, token 5)' for tables."""
    if LINES in frame:
        return f"sentence {i + 1} (line {frame[LINES].iloc[i][j]}){what}"
    row = f"row {frame[ROW].iloc[i]}, " if ROW in frame else ""
    return f"sentence {i + 1} ({row}token {j + 1}){what}"


def scheme_violations(frame: pd.DataFrame, scheme: str) -> tuple[list[str], int]:
    """Tags outside ``scheme`` (one message each, with its place) and the number of broken continuations.

    A broken continuation is an ``I-X``/``E-X`` not preceded by ``B-X``/``I-X`` of the same type, or (BIOES)
    a ``B-X``/``I-X`` not followed by ``I-X``/``E-X``.
    """
    allowed = PREFIXES[scheme]
    errors: list[str] = []
    broken = 0
    expected = "O, B-<type> or I-<type>" if scheme == "BIO" else "O, B-/I-/E-/S-<type>"
    for i, tags in enumerate(frame[TAGS]):
        prev_p, prev_k = "O", ""
        for j, tag in enumerate(tags):
            p, k = split_tag(tag)
            if p not in ("O", *allowed):
                hint = (" (an E-/S- tag belongs to BIOES; set task.scheme: BIOES if the whole file is BIOES)"
                        if p in ("E", "S") else " (a tag needs a B-/I- prefix, e.g. B-PER)" if p == "" else "")
                errors.append(_where(frame, i, j, f": tag {tag!r} is not a {scheme} tag; expected {expected}{hint}"))
                prev_p, prev_k = "O", ""
                continue
            if p in ("I", "E") and not (prev_p in ("B", "I") and prev_k == k):
                broken += 1
            if scheme == "BIOES" and prev_p in ("B", "I") and not (p in ("I", "E") and k == prev_k):
                broken += 1
            prev_p, prev_k = p, k
        if scheme == "BIOES" and prev_p in ("B", "I"):
            broken += 1
    return errors, broken


def detect_scheme(frame: pd.DataFrame) -> str:
    """BIO or BIOES: the one under which the tags break fewer rules (BIO when no E-/S- tag is present).

    A BIO file with one stray ``E-`` tag thus stays BIO (and that tag is reported), while a real BIOES
    file, whose single-token entities are all ``S-``, comes out BIOES.
    """
    has_es = any(split_tag(t)[0] in ("E", "S") for tags in frame[TAGS] for t in tags)
    if not has_es:
        return "BIO"
    scores = {}
    for scheme in ("BIO", "BIOES"):
        errors, broken = scheme_violations(frame, scheme)
        scores[scheme] = len(errors) + broken
    return "BIOES" if scores["BIOES"] <= scores["BIO"] else "BIO"


def entity_types(tags: Sequence[Sequence[str]]) -> list[str]:
    return sorted({k for row in tags for t in row if (k := split_tag(t)[1]) and split_tag(t)[0]})


def label_set(types: Sequence[str], scheme: str) -> list[str]:
    """``O`` first, then for each type (sorted) every prefix of the scheme: B-, I- (E-, S-)."""
    return ["O"] + [f"{p}-{k}" for k in sorted(types) for p in PREFIXES[scheme]]


def unknown_tags(frame: pd.DataFrame, labels: Sequence[str]) -> list[str]:
    """One message per sentence holding tags outside ``labels`` (e.g. types train never had)."""
    known = set(labels)
    out = []
    for i, tags in enumerate(frame[TAGS]):
        bad = [j for j, t in enumerate(tags) if t not in known]
        if bad:
            seen = sorted({tags[j] for j in bad})
            out.append(_where(frame, i, bad[0], f": tag(s) {seen}"))
    return out


@dataclass
class SchemeReport:
    """The outcome of checking one file's tags."""

    errors: list[str] = field(default_factory=list)
    broken: int = 0


def check_tags(frame: pd.DataFrame, scheme: str, labels: Sequence[str] | None, split: str,
               path: Path) -> SchemeReport:
    """Scheme and label-set checks of one split; raises DataError on any tag error.

    Raises:
        DataError: tags outside the scheme, or (``labels`` given) tags the label set lacks.
    """
    errors, broken = scheme_violations(frame, scheme)
    if errors:
        more = f" (+{len(errors) - MAX_LISTED} more)" if len(errors) > MAX_LISTED else ""
        raise DataError(f"{len(errors)} tag(s) outside the {scheme} scheme: " + "; ".join(errors[:MAX_LISTED])
                        + more + ".", source=path)
    if labels is not None:
        unknown = unknown_tags(frame, labels)
        if unknown:
            types = ", ".join(entity_types([[t for t in row if t not in set(labels)] for row in frame[TAGS]]))
            raise DataError(
                f"{split}: {len(unknown)} sentence(s) have tags the training data never uses (types: {types}): "
                + "; ".join(unknown[:MAX_LISTED]) + ". Add sentences with these types to train, or list the "
                "full tag set in data.labels.", source=path)
    return SchemeReport(errors, broken)


def split_sentences(frame: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rest, held out): a seeded random ``fraction`` of sentences held out (at least one if any)."""
    if fraction <= 0 or len(frame) < 2:
        return frame, frame.iloc[0:0]
    n = min(max(1, round(len(frame) * fraction)), len(frame) - 1)
    order = np.random.default_rng(seed).permutation(len(frame))
    held = np.zeros(len(frame), dtype=bool)
    held[order[:n]] = True
    return frame[~held], frame[held]
