"""Tokens per row of a user's data file, per model (tokenizers differ), for the estimates.

Reading the data is optional (``taskfit advise --data FILE``); without it advice assumes every row fills
``--tokens`` tokens (default: the recipe default ``data.max_length`` = 128, an upper bound).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from taskfit.errors import ConfigError, DataError


@dataclass(frozen=True)
class DataTokens:
    """Rows of the file and, per model, mean and largest tokens per row after truncation to ``max_length``."""

    rows: int
    mean: dict[str, float]
    longest: dict[str, int]


def read_texts(path: Path, column: str) -> list[str]:
    """The ``column`` of a CSV, TSV, JSONL or Parquet file as strings."""
    import pandas as pd

    if not path.is_file():
        raise ConfigError(f"--data {str(path)!r} does not exist.")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        frame = pd.read_json(path, lines=suffix == ".jsonl", dtype=False)
    elif suffix == ".parquet":
        frame = pd.read_parquet(path)
    else:
        frame = pd.read_csv(path, sep="\t" if suffix == ".tsv" else ",", dtype=str, keep_default_na=False)
    if column not in frame.columns:
        raise DataError(f"--text-column {column!r} is not a column of the data; columns: "
                        f"{', '.join(map(str, frame.columns))}. Name the text column with --text-column.",
                        source=path, column=column)
    texts = [str(t) for t in frame[column].tolist()]
    if not texts:
        raise DataError("the data file has no rows.", source=path)
    return texts


def data_tokens(path: Path, column: str, models: Sequence[str], max_length: int = 128) -> DataTokens:
    """Tokenise every text with each model's tokenizer (no model weights are loaded)."""
    from transformers import AutoTokenizer

    from taskfit.models import resolve_model

    texts = read_texts(path, column)
    mean: dict[str, float] = {}
    longest: dict[str, int] = {}
    for model in models:
        tok = AutoTokenizer.from_pretrained(resolve_model(model))
        lengths = [min(len(ids), max_length) for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
        mean[model] = sum(lengths) / len(lengths)
        longest[model] = max(lengths)
    return DataTokens(len(texts), mean, longest)
