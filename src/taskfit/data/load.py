"""From a recipe's ``data`` block to checked train/valid/test frames and the label set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from taskfit.config import DataConfig
from taskfit.data.checks import SOURCE, CheckResult, check_rows, check_sets
from taskfit.data.readers import ROW, read_table
from taskfit.data.split import stratified_split
from taskfit.errors import DataError


@dataclass
class Splits:
    """Checked data ready for tokenisation."""

    frames: dict[str, pd.DataFrame]  # "train", "valid" and maybe "test"; columns text[, text_pair], label
    labels: list[str]
    issues: list[dict[str, Any]]

    def stats(self, text: str, label: str) -> dict[str, Any]:
        """Row counts, label counts and text length statistics per split (for the report)."""
        out: dict[str, Any] = {"rows": {}, "label_counts": {}, "text_chars": {}}
        for split, df in self.frames.items():
            out["rows"][split] = len(df)
            out["label_counts"][split] = {lab: int((df[label] == lab).sum()) for lab in self.labels}
            lengths = df[text].str.len()
            if len(lengths):
                out["text_chars"][split] = {
                    "mean": round(float(lengths.mean()), 1), "p50": int(lengths.median()),
                    "p95": int(lengths.quantile(0.95)), "max": int(lengths.max()),
                }
        return out


def required_columns(cfg: DataConfig) -> list[str]:
    return [c for c in (cfg.text, cfg.text_pair, cfg.label) if c]


def check_columns(path: Path, columns: list[str], key: str, required: list[str]) -> list[str]:
    """Return one problem line per required column missing from ``columns``."""
    problems = []
    for col in required:
        if col not in columns:
            problems.append(
                f"data.{key}: column {col!r} not found in {path}; available columns: {', '.join(columns)}."
            )
    return problems


def read_split(path: Path, cfg: DataConfig, key: str, labelled: bool = True) -> pd.DataFrame:
    """Read one file, check its columns and normalise text and label values to strings."""
    df = read_table(path, limit=cfg.limit, row_numbers=True)
    required = required_columns(cfg) if labelled else [c for c in (cfg.text, cfg.text_pair) if c]
    problems = check_columns(path, [c for c in df.columns if c != ROW], key, required)
    if problems:
        raise DataError(" ".join(problems), source=path)
    # Extra columns (fairness groups, federated partitions) are carried along when the file has them;
    # the consumer that needs one checks for it and names the file.
    keep = list(required) + [c for c in cfg.keep_columns if c in df.columns and c not in required]
    out = df[keep].copy()
    for col in keep:
        missing = out[col].isna()
        if col == cfg.label:
            # An empty CSV field is "" (not NaN): it must not become a class called ''.
            missing |= out[col].map(lambda v: isinstance(v, str) and not v.strip())
            if missing.any():
                raise DataError("Missing label value(s); every training row needs a label.", source=path,
                                column=col, rows=[int(r) for r in df.loc[missing, ROW]])
        out[col] = out[col].where(~missing, "").map(_to_text)
    out[ROW] = df[ROW].to_numpy()
    out[SOURCE] = str(path)
    return out


def _to_text(v: Any) -> str:
    # 1.0 read from JSON/Parquet would otherwise become "1.0" while the CSV says "1".
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v).strip()


def load_splits(cfg: DataConfig) -> Splits:
    """Read, split and check the data of a recipe.

    Raises:
        DataError: unreadable files, missing columns, or fatal check findings.
    """
    files = {"train": read_split(cfg.train, cfg, "train")}
    for key in ("valid", "test"):
        if getattr(cfg, key) is not None:
            files[key] = read_split(getattr(cfg, key), cfg, key)
    rows = check_rows(files, cfg.text, cfg.label, cfg.checks)
    train = rows.frames["train"]
    frames: dict[str, pd.DataFrame] = {}
    if cfg.test is not None:
        frames["test"] = rows.frames["test"]
    elif cfg.test_fraction > 0:
        train, frames["test"] = stratified_split(train, cfg.label, cfg.test_fraction, cfg.split_seed)
    if cfg.valid is not None:
        frames["valid"] = rows.frames["valid"]
    else:
        frac = cfg.valid_fraction / (1 - (0 if cfg.test is not None else cfg.test_fraction))
        train, frames["valid"] = stratified_split(train, cfg.label, frac, cfg.split_seed + 1)
    frames = {"train": train, **frames}
    labels = list(cfg.labels) if cfg.labels else sorted(set(train[cfg.label]))
    if len(labels) < 2:
        raise DataError(f"Only {len(labels)} label value(s) found in train ({labels}); classification "
                        "needs at least 2.", source=cfg.train, column=cfg.label)
    checked = check_sets(CheckResult(frames, rows.issues), cfg.text, cfg.label, labels, cfg.checks)
    return Splits(frames=checked.frames, labels=labels, issues=checked.issues)
