"""``taskfit scan-pii FILE``: count personal data per column and type in a data file, and optionally write a
masked copy (placeholders such as ``<PHONE>``) that is safe to train on or share. Values found are never
printed: only counts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from taskfit.commands.common import console, fail, offline_defaults
from taskfit.errors import DataError, TaskfitError

if TYPE_CHECKING:
    import pandas as pd


def _text_columns(frame: pd.DataFrame) -> list[str]:
    """Columns with at least one string (or list of strings) value; ids and numbers are skipped."""
    import numpy as np

    cols = []
    for col in frame.columns:
        values = frame[col].dropna()
        if any(isinstance(v, str) or (isinstance(v, (list, tuple, np.ndarray)) and any(isinstance(x, str) for x in v))
               for v in values.head(200)):
            cols.append(str(col))
    return cols


def _write(frame: pd.DataFrame, dest: Path) -> None:
    """Write ``frame`` atomically in the format ``dest``'s suffix names (temp file, then rename)."""
    from taskfit.data.readers import FORMATS
    from taskfit.utils.io import atomic_save

    fmt = FORMATS.get(dest.suffix.lower())
    if fmt not in ("csv", "tsv", "jsonl", "json", "parquet"):
        raise DataError(f"--mask: cannot write a {dest.suffix or 'suffix-less'!r} file; give a path ending in "
                        ".csv, .tsv, .jsonl or .parquet.", source=dest)
    writers = {
        "csv": lambda p: frame.to_csv(p, index=False),
        "tsv": lambda p: frame.to_csv(p, index=False, sep="\t"),
        "jsonl": lambda p: frame.to_json(p, orient="records", lines=True, force_ascii=False),
        "json": lambda p: frame.to_json(p, orient="records", force_ascii=False),
        "parquet": lambda p: frame.to_parquet(p, index=False),
    }
    atomic_save(dest, writers[fmt])


def register(app: typer.Typer) -> None:
    """Add ``taskfit scan-pii``."""

    @app.command("scan-pii")
    def scan_pii(
        file: Path = typer.Argument(..., help="Data file: .csv, .tsv, .jsonl/.json or .parquet."),
        column: list[str] | None = typer.Option(None, "--column", "-c", help="Column to scan (repeatable); "
                                                "default: every text column."),
        mask: Path | None = typer.Option(None, "--mask", help="Write a copy with personal data replaced by "
                                         "<TYPE> placeholders here (format from the suffix; written atomically)."),
        as_json: bool = typer.Option(False, "--json", help="Print the counts as JSON instead of a table."),
    ) -> None:
        """Count e-mails, phone numbers, Chinese IDs, bank cards, IP addresses and person names per column
        (Chinese and English), without printing any of them."""
        offline_defaults()
        from taskfit.data.readers import read_table
        from taskfit.trust.pii import check_dependencies

        try:
            check_dependencies("scan-pii")
            frame = read_table(file)
            available = [str(c) for c in frame.columns]
            missing = [c for c in column or [] if c not in available]
            if missing:
                raise DataError(f"--column {', '.join(map(repr, missing))} not found; available columns: "
                                f"{', '.join(available)}.", source=file)
            columns = list(column) if column else _text_columns(frame)
            if mask is not None and mask.resolve() == file.resolve():
                raise DataError("--mask must name a new file, not the input (the original stays as it is).",
                                source=file)
            from taskfit.trust.pii import TYPES, engines, mask_frame, scan_frame

            engines()  # start-up (Presidio, jieba's dictionary) is not scanning time
            if mask is not None:
                masked, counts = mask_frame(frame, columns)
                _write(masked, mask)
            else:
                counts = scan_frame(frame, columns)
        except TaskfitError as e:
            fail(e)
        summary = {"file": str(file), "rows": counts["rows"], "rows_with_pii": counts["rows_with_pii"],
                   "columns": counts["by_column"], "seconds": counts["seconds"], "rows_per_s": counts["rows_per_s"],
                   "masked_copy": str(mask) if mask else None}
        if as_json:
            print(json.dumps(summary, ensure_ascii=False))
            return
        _print_table(summary, [t for t in TYPES if t in counts["by_type"]])


def _print_table(summary: dict[str, object], types: list[str]) -> None:
    from rich.markup import escape
    from rich.table import Table

    counts: dict[str, dict[str, int]] = summary["columns"]  # type: ignore[assignment]
    table = Table(title=f"PII in {escape(str(summary['file']))}")
    table.add_column("column")
    for t in types:
        table.add_column(t, justify="right")
    table.add_column("total", justify="right", style="bold")
    for col, by_type in counts.items():
        table.add_row(escape(col), *[str(by_type.get(t, 0)) for t in types], str(sum(by_type.values())))
    console.print(table)
    console.print(f"{summary['rows_with_pii']} of {summary['rows']} rows contain personal data; scanned in "
                  f"{summary['seconds']} s ({summary['rows_per_s']} rows/s).", highlight=False)
    if summary["masked_copy"]:
        console.print(f"masked copy: {escape(str(summary['masked_copy']))}", highlight=False)
