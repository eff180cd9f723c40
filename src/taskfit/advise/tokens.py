"""Tokens per row of a user's data file, per model (tokenizers differ), for the estimates.

Reading the data is optional (``taskfit advise --data FILE``); without it advice assumes every row fills
``--tokens`` tokens (default: the recipe default ``data.max_length`` = 128, an upper bound).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from taskfit.advise.estimate import Workload
from taskfit.errors import ConfigError, DataError


@dataclass(frozen=True)
class DataTokens:
    """Rows of the file and, per model, mean and largest tokens per row after truncation to ``max_length``, and
    every row's token count (for the batches the training loop will form, see :func:`batch_shapes`)."""

    rows: int
    mean: dict[str, float]
    longest: dict[str, int]
    lengths: dict[str, list[int]] = field(default_factory=dict)
    #: generation: the loop packs each batch's examples into rows of this many tokens (``data.max_length``)
    pack: int | None = None

    def workload(self, work: Workload) -> Workload:
        """``work`` with these counts: mean and longest tokens and the largest batches, per model."""
        batches = {m: batch_shapes(n, work.train_rows, work.batch_size, pack=self.pack)
                   for m, n in self.lengths.items()}
        return dataclasses.replace(work, tokens=dict(self.mean), longest=dict(self.longest), batches=batches)


def batch_shapes(lengths: Sequence[int], train_rows: int, batch_size: int, seed: int = 0,
                 cap: int = 200_000, pack: int | None = None) -> tuple[tuple[int, int], ...]:
    """The (rows, padded length) shapes of one epoch of the training loop's length-bucketed batches over
    ``train_rows`` rows drawn from ``lengths`` (without replacement when there are enough, else with), keeping
    only shapes no other batch exceeds in both rows and length — peak memory comes with one of them.

    Why not simply ``batch_size × longest``: bucketing sorts rows by length before cutting batches, so the
    longest rows share a batch, which is often the window's short remainder (e.g. 16 rows of 128 tokens and
    32 rows of ~40): that guess over-estimated activations by half on BBC news.

    With ``pack`` (generation), each batch's examples are laid end to end in rows of at most ``pack`` tokens, as
    the generation task's collate does (first-fit decreasing): the shape is (packed rows, longest packed row)."""
    import numpy as np

    from taskfit.config import TrainConfig
    from taskfit.data.batching import BucketBatcher

    rng = np.random.default_rng(seed)
    pool = np.asarray(lengths)
    n = min(max(1, train_rows), cap)
    sample = rng.choice(pool, size=n, replace=n > len(pool))
    batcher = BucketBatcher(sample, batch_size, bucket_size=TrainConfig().bucket_size, seed=seed)
    if pack is None:
        shapes = {(len(b), int(sample[b].max())) for b in batcher.epoch(0)}
    else:
        from taskfit.tasks.generation_data import first_fit

        shapes = set()
        for b in batcher.epoch(0):
            sizes = [int(x) for x in sample[b]]
            bins = first_fit(sizes, pack)
            shapes.add((len(bins), max(sum(sizes[i] for i in row) for row in bins)))
    return tuple(sorted(s for s in shapes if not any(o != s and o[0] >= s[0] and o[1] >= s[1] for o in shapes)))


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


def data_tokens(path: Path, column: str, models: Sequence[str], max_length: int = 128,
                task: str = "text_classification") -> DataTokens:
    """Tokenise every text with each model's tokenizer (no model weights are loaded).

    For ``task="generation"`` a row is a conversation (prompt/response or messages columns, as training reads
    them) and its tokens are those the generation task trains on: the chat template around prompt and response;
    ``column`` is not used."""
    from transformers import AutoTokenizer

    from taskfit.models import resolve_model

    if task == "generation":
        return _conversation_tokens(path, models, max_length)
    texts = read_texts(path, column)
    per_row = {}
    for model in models:
        tok = AutoTokenizer.from_pretrained(resolve_model(model))
        per_row[model] = [min(len(ids), max_length)
                          for ids in tok(texts, truncation=True, max_length=max_length)["input_ids"]]
    return _counted(len(texts), per_row)


def _counted(rows: int, per_row: dict[str, list[int]], pack: int | None = None) -> DataTokens:
    """Mean and longest tokens per model from every row's count."""
    return DataTokens(rows, {m: sum(n) / len(n) for m, n in per_row.items()}, {m: max(n) for m, n in per_row.items()},
                      per_row, pack=pack)


def _conversation_tokens(path: Path, models: Sequence[str], max_length: int) -> DataTokens:
    """Tokens per training example of a generation file, encoded by the generation task itself."""
    from taskfit.config import DataConfig, GenerationOptions
    from taskfit.data.readers import read_table
    from taskfit.models import resolve_model
    from taskfit.tasks.generation import Generation
    from taskfit.tasks.generation_data import read_conversations

    if not path.is_file():
        raise ConfigError(f"--data {str(path)!r} does not exist.")
    columns = [str(c) for c in read_table(path, limit=1).columns]
    if {"prompt", "response"} <= set(columns):
        opts = GenerationOptions()
    elif "messages" in columns:
        opts = GenerationOptions(messages="messages")
    else:
        raise DataError(f"a generation file for advice needs 'prompt' and 'response' columns (or 'messages'); its "
                        f"columns are {columns}. Rename them for --data.", source=path)
    frame = read_conversations(path, opts, DataConfig(train=str(path), max_length=max_length))
    if not len(frame):
        raise DataError("the data file has no rows.", source=path)
    per_row = {}
    for model in models:
        task = Generation(opts, max_length=max_length)
        enc = task.encode(frame, task.load_processor(resolve_model(model)), [])
        if not len(enc.lengths):
            raise DataError(f"every row's prompt fills --max-length {max_length} with {model}'s chat template, so "
                            "no response token is left to train on; raise --max-length.", source=path)
        per_row[model] = [int(n) for n in enc.lengths]
    return _counted(len(frame), per_row, pack=max_length)


def image_rows(path: Path, image_column: str = "image") -> int:
    """Images in a folder-per-class dataset (``path`` a directory) or rows of a table with an image-path column,
    as ``task.image`` reads them; images are not decoded (their cost depends on the trained side only)."""
    from taskfit.tasks.image_data import class_folders, folder_problems, read_image_table

    if path.is_dir():
        problems = folder_problems(path, "train")
        if problems:
            raise DataError(problems[0].replace("data.train:", "--data:"), source=path)
        return sum(len(files) for files in class_folders(path).values())
    if not path.is_file():
        raise ConfigError(f"--data {str(path)!r} does not exist (for images: a folder with one sub-folder per "
                          "class, or a table with an image-path column).")
    from taskfit.data.readers import read_table

    columns = [str(c) for c in read_table(path, limit=1).columns]
    if image_column not in columns:
        raise DataError(f"an image table for advice needs an {image_column!r} column of image paths; its columns are "
                        f"{columns}. Rename the column, or give --rows instead of --data.", source=path)
    rows = len(read_image_table(path, None, image_column, None))
    if not rows:
        raise DataError("the data file has no rows.", source=path)
    return rows
