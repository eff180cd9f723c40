"""Reading, checking and splitting (query, answer[, hard negatives]) rows for the retrieval task.

Rows come from CSV/TSV/JSONL/Parquet. Every finding names its file and 1-based rows; empty queries or
answers stop the run (or are dropped when ``data.checks.empty_text`` says 'drop'), duplicate pairs and
valid/test queries also seen in train are reported. Without valid/test files the held-out splits are
drawn by *query*: all rows of one query text land in the same split, so a held-out query was never
trained on (an FAQ bot meets new phrasings, not the training ones).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from taskfit.config import ChecksConfig, DataConfig
from taskfit.data.checks import SOURCE, CheckResult
from taskfit.data.load import check_columns
from taskfit.data.readers import ROW, read_table
from taskfit.errors import DataError
from taskfit.tasks.regression import flag_rows, raise_fatal

#: separator between several hard negatives in one cell (a JSON list also works in JSONL/Parquet)
NEG_SEP = " || "


def _text(v: object) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return ""
    return str(v).strip()


def _negatives(v: object) -> list[str]:
    """Hard negatives of one cell: a list (JSONL/Parquet) or texts joined by ``' || '``."""
    if isinstance(v, (list, tuple, np.ndarray)):
        items = [_text(x) for x in v]
    else:
        items = [s.strip() for s in _text(v).split(NEG_SEP.strip())]
    return [s for s in items if s]


def read_pairs(path: Path, key: str, query: str, answer: str, negatives: str | None,
               limit: int | None = None, labelled: bool = True) -> pd.DataFrame:
    """Read one file into columns query, answer (and a list column of negatives), ``_row``, ``_source``.

    Raises:
        DataError: unreadable file or missing columns (naming the columns that exist).
    """
    df = read_table(path, limit=limit, row_numbers=True)
    required = [query, answer] if labelled else [query]
    if negatives and labelled:
        required.append(negatives)
    problems = check_columns(Path(path), [c for c in df.columns if c != ROW], key, required)
    if problems:
        raise DataError(" ".join(problems) + " Set task.query / task.answer to the right column names.",
                        source=path)
    out = pd.DataFrame({c: df[c].map(_text) for c in required if c != negatives})
    if negatives and labelled:
        out[negatives] = df[negatives].map(_negatives)
    out[ROW] = df[ROW].to_numpy()
    out[SOURCE] = str(path)
    return out


def check_empty(res: CheckResult, columns: list[str], action: str) -> None:
    """Empty queries or answers: dropped (reported) when ``action`` is 'drop', else a DataError naming rows.

    A pair with an empty side cannot train a bi-encoder, so 'warn' is treated as 'error' here.
    """
    for split in list(res.frames):
        for col in columns:
            df = res.frames[split]
            empty = df[col].map(lambda t: not t)
            if not empty.any():
                continue
            if action == "drop":
                flag_rows(res, split, empty, "drop", "empty_text", f"row(s) with an empty {col!r}")
                continue
            raise DataError(f"{int(empty.sum())} row(s) have an empty {col!r}; every row needs a non-empty "
                            f"query and answer. Fill or remove these rows, or set data.checks.empty_text: drop.",
                            source=df[SOURCE].iloc[0], column=col, rows=[int(r) for r in df.loc[empty, ROW]])


def check_pairs(res: CheckResult, query: str, answer: str, checks: ChecksConfig) -> None:
    """Duplicate (query, answer) pairs per file, and valid/test queries that also appear in train."""
    for split in list(res.frames):
        df = res.frames[split]
        flag_rows(res, split, df.duplicated(subset=[query, answer], keep="first"), checks.duplicates,
                  "duplicates", "duplicate (query, answer) pair(s)")
    if checks.leakage == "ignore":
        return
    seen = set(res.frames["train"][query])
    for split in ("valid", "test"):
        if split in res.frames:
            leak = res.frames[split][query].isin(seen)
            flag_rows(res, split, leak, checks.leakage, "leakage",
                      "query(ies) also appear in train; their scores overstate how new questions fare")


def split_by_query(df: pd.DataFrame, query: str, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded (rest, held-out) split of distinct query texts; all rows of a query go to one side."""
    queries = df[query].unique()
    order = np.random.default_rng(seed).permutation(len(queries))
    n_held = max(1, round(fraction * len(queries)))
    held_q = set(queries[order[:n_held]])
    mask = df[query].isin(held_q)
    return df[~mask], df[mask]


def load_pair_splits(data: DataConfig, query: str, answer: str, negatives: str | None
                     ) -> tuple[dict[str, pd.DataFrame], list[dict[str, object]]]:
    """Read, check and split; returns (frames train/valid[/test], findings).

    Raises:
        DataError: missing columns, empty texts, too few queries or answers, fatal check findings.
    """
    files = {"train": read_pairs(data.train, "train", query, answer, negatives, data.limit)}
    for key in ("valid", "test"):
        if getattr(data, key) is not None:
            files[key] = read_pairs(getattr(data, key), key, query, answer, negatives, data.limit)
    res = CheckResult(files)
    check_empty(res, [query, answer], data.checks.empty_text)
    train = res.frames["train"]
    n_queries = train[query].nunique()
    held_parts = (data.test is None and data.test_fraction > 0) + (data.valid is None)
    if n_queries < 2 + held_parts:
        raise DataError(f"train has {n_queries} distinct quer{'y' if n_queries == 1 else 'ies'}; retrieval needs "
                        f"at least {2 + held_parts} (some are held out for valid/test). Add rows.",
                        source=data.train, column=query)
    frames: dict[str, pd.DataFrame] = {}
    if data.test is None and data.test_fraction > 0:
        train, frames["test"] = split_by_query(train, query, data.test_fraction, data.split_seed)
    if data.valid is None:
        frac = data.valid_fraction / (1 - (0 if data.test is not None else data.test_fraction))
        train, frames["valid"] = split_by_query(train, query, frac, data.split_seed + 1)
    res.frames = {"train": train, **{k: v for k, v in res.frames.items() if k != "train"}, **frames}
    check_pairs(res, query, answer, data.checks)
    raise_fatal(res)
    if res.frames["train"][answer].nunique() < 2:
        raise DataError("train has fewer than 2 distinct answers; contrastive training needs other answers as "
                        "negatives. Check task.answer names the answer column.", source=data.train, column=answer)
    order = [s for s in ("train", "valid", "test") if s in res.frames]
    return {s: res.frames[s] for s in order}, res.issues
