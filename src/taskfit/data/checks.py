"""Data quality checks run before any training: every finding names its file and rows.

Findings are plain dicts (``severity``, ``check``, ``message``, ``file``, ``rows``) so they go into
the report and ``metrics.jsonl`` unchanged. Rows are 1-based data row numbers of the source file.
Fatal findings are collected over all files first and raised together as one :class:`DataError`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from taskfit.config import ChecksConfig
from taskfit.data.readers import ROW
from taskfit.errors import DataError

__all__ = ["ROW", "SOURCE", "CheckResult", "check_rows", "check_sets", "check_splits"]

SOURCE = "_source"


@dataclass
class CheckResult:
    """The cleaned splits and every finding."""

    frames: dict[str, pd.DataFrame]
    issues: list[dict[str, Any]] = field(default_factory=list)

    def add(self, severity: str, check: str, message: str, file: str | None, rows: list[int]) -> None:
        self.issues.append(
            {"severity": severity, "check": check, "message": message, "file": file, "rows": rows}
        )


def _rows(df: pd.DataFrame, mask: pd.Series) -> list[int]:
    return [int(r) for r in df.loc[mask, ROW].tolist()]


def _source(df: pd.DataFrame) -> str | None:
    return str(df[SOURCE].iloc[0]) if len(df) and SOURCE in df else None


def _apply(res: CheckResult, split: str, mask: pd.Series, action: str, check: str, what: str) -> None:
    df = res.frames[split]
    if not mask.any():
        return
    rows = _rows(df, mask)
    severity = {"error": "error", "warn": "warning", "drop": "info", "ignore": "info"}[action]
    verb = {"error": "", "warn": "", "drop": " (dropped)", "ignore": ""}[action]
    res.add(severity, check, f"{split}: {len(rows)} {what}{verb}", _source(df), rows)
    if action == "drop":
        res.frames[split] = df[~mask]


def check_splits(
    frames: dict[str, pd.DataFrame], text: str, label: str, labels: list[str], cfg: ChecksConfig
) -> CheckResult:
    """Check and clean the splits.

    Args:
        frames: split name → DataFrame with the text/label columns plus ``_row`` and ``_source``.
        text, label: column names.
        labels: the label set (from the recipe or from train).
        cfg: what to do with each kind of finding.

    Raises:
        DataError: if any finding is fatal; the message lists all of them.
    """
    return check_sets(check_rows(frames, text, label, cfg), text, label, labels, cfg)


def check_rows(frames: dict[str, pd.DataFrame], text: str, label: str, cfg: ChecksConfig) -> CheckResult:
    """Per-file checks (empty text, duplicates, conflicting labels); never raises.

    Run these on whole files *before* any split: a conflict whose two rows land in different splits
    would otherwise go unseen.
    """
    res = CheckResult(frames=dict(frames))
    for split in list(res.frames):
        df = res.frames[split]
        empty = df[text].map(lambda t: not str(t).strip())
        _apply(res, split, empty, cfg.empty_text, "empty_text", "row(s) with empty text")
        df = res.frames[split]
        dup = df.duplicated(subset=[text, label], keep="first")
        _apply(res, split, dup, cfg.duplicates, "duplicates", "duplicate row(s) (same text and label)")
        df = res.frames[split]
        n_labels = df.groupby(text)[label].transform("nunique")
        _apply(res, split, n_labels > 1, cfg.conflicting_labels, "conflicting_labels",
               "row(s) whose text also appears with a different label")
    return res


def check_sets(
    res: CheckResult, text: str, label: str, labels: list[str], cfg: ChecksConfig
) -> CheckResult:
    """Checks across splits (unknown labels, leakage, class sizes); raises on any fatal finding so far."""
    _check_labels(res, label, labels)
    _check_leakage(res, text, cfg)
    _check_balance(res, label, labels, cfg)
    fatal = [i for i in res.issues if i["severity"] == "error"]
    if fatal:
        lines = [f"{i['message']} [file {i['file']}" + (f", rows {_short(i['rows'])}]" if i["rows"] else "]")
                 for i in fatal]
        raise DataError(
            "The data failed checks (set data.checks.<name> to 'warn' or 'drop' to go on anyway):\n  - "
            + "\n  - ".join(lines)
        )
    return res


def _short(rows: list[int], n: int = 10) -> str:
    return ", ".join(map(str, rows[:n])) + (f" (+{len(rows) - n} more)" if len(rows) > n else "")


def _check_labels(res: CheckResult, label: str, labels: list[str]) -> None:
    known = set(labels)
    for split, df in res.frames.items():
        unknown = ~df[label].isin(known)
        if unknown.any():
            seen = sorted(set(df.loc[unknown, label].astype(str)))[:5]
            res.add("error", "unknown_label",
                    f"{split}: {int(unknown.sum())} row(s) have label(s) {seen} not in the label set "
                    f"{sorted(known)[:20]}", _source(df), _rows(df, unknown))


def _check_leakage(res: CheckResult, text: str, cfg: ChecksConfig) -> None:
    if cfg.leakage == "ignore" or "train" not in res.frames:
        return
    train_texts = set(res.frames["train"][text])
    for split in ("valid", "test"):
        df = res.frames.get(split)
        if df is None or not len(df):
            continue
        leak = df[text].isin(train_texts)
        if leak.any():
            sev = "error" if cfg.leakage == "error" else "warning"
            res.add(sev, "leakage", f"{split}: {int(leak.sum())} row(s) also appear in train; "
                    "their scores overstate accuracy", _source(df), _rows(df, leak))


def _check_balance(res: CheckResult, label: str, labels: list[str], cfg: ChecksConfig) -> None:
    train = res.frames.get("train")
    if train is None:
        return
    counts = train[label].value_counts().reindex(labels, fill_value=0)
    rare = counts[counts < cfg.min_class_count]
    if len(rare):
        small = {k: int(v) for k, v in rare.items()}
        res.add("error", "min_class_count",
                f"train: class(es) {small} have fewer than {cfg.min_class_count} rows; add data or "
                "remove them from data.labels", _source(train), [])
    elif counts.min() > 0 and counts.max() / counts.min() >= cfg.imbalance_ratio:
        res.add("warning", "imbalance",
                f"train: class imbalance {counts.idxmax()!r}={counts.max()} vs {counts.idxmin()!r}="
                f"{counts.min()} (ratio {counts.max() / counts.min():.1f}); watch macro-F1, not accuracy",
                _source(train), [])
