"""Reading tabular files (CSV, TSV, JSONL, JSON, Parquet) into pandas with row-precise errors.

Row numbers in every message are 1-based *data* rows (the header is not counted), which is what a
user sees when they open the file in a spreadsheet and subtract the header line.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from taskfit.errors import DataError

ROW = "_row"  # column holding each row's 1-based data row number in its source file

FORMATS = {".csv": "csv", ".tsv": "tsv", ".txt": "tsv", ".jsonl": "jsonl", ".json": "json", ".parquet": "parquet"}


def detect_format(path: Path) -> str:
    """Return the format name from the file suffix or raise DataError listing the supported ones."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"Unsupported file type {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}.", source=path
        )
    return fmt


def _read_delimited(path: Path, sep: str) -> pd.DataFrame:
    # Parse with the csv module first so a malformed row is reported with its number instead of
    # pandas' "Error tokenizing data. C error: Expected 2 fields in line 7, saw 3".
    with open(path, encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        try:
            header = next(reader)
        except StopIteration:
            raise DataError("The file is empty (no header row).", source=path) from None
        rows, numbers, bad = [], [], []
        for i, row in enumerate(reader, start=1):
            if not row:
                continue  # blank line: still counted, so numbers match what an editor shows
            if len(row) != len(header):
                bad.append(i)
            else:
                rows.append(row)
                numbers.append(i)
    if bad:
        raise DataError(
            f"{len(bad)} malformed row(s): expected {len(header)} fields ({', '.join(header)}) per row. "
            "Quote fields that contain the delimiter or line breaks.",
            source=path,
            rows=bad,
        )
    df = pd.DataFrame(rows, columns=header, dtype=object)
    df[ROW] = numbers
    return df


def _read_jsonl(path: Path) -> pd.DataFrame:
    records, numbers, bad = [], [], []
    with open(path, encoding="utf-8-sig") as fh:
        for i, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                bad.append(i)
                continue
            if not isinstance(obj, dict):
                bad.append(i)
                continue
            records.append(obj)
            numbers.append(i)
    if bad:
        raise DataError(
            f"{len(bad)} line(s) are not JSON objects; each line must be one object like "
            '{"text": "...", "label": "..."}.',
            source=path,
            rows=bad,
        )
    if not records:
        raise DataError("The file is empty (no JSON lines).", source=path)
    df = pd.DataFrame.from_records(records)
    df[ROW] = numbers
    return df


def read_table(path: str | Path, limit: int | None = None, row_numbers: bool = False) -> pd.DataFrame:
    """Read a data file into a DataFrame of objects.

    Args:
        path: the file; its suffix decides the format.
        limit: keep only the first ``limit`` rows.
        row_numbers: add a ``_row`` column with each row's 1-based number in the file (blank lines
            counted), which every data error and check finding quotes.

    Raises:
        DataError: the file is missing, of an unknown type, empty or malformed.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError("File not found. Check the path: relative paths start at the current directory "
                        "(in a recipe, at the recipe's folder).", source=path)
    fmt = detect_format(path)
    try:
        if fmt in ("csv", "tsv"):
            df = _read_delimited(path, "," if fmt == "csv" else "\t")
        elif fmt == "jsonl":
            df = _read_jsonl(path)
        elif fmt == "json":
            df = pd.read_json(path, dtype=False)
        else:
            df = pd.read_parquet(path)
    except UnicodeDecodeError as e:
        raise DataError(f"Not UTF-8 text ({e.reason} at byte {e.start}). Save the file as UTF-8.",
                        source=path) from None
    except (ValueError, OSError) as e:
        if isinstance(e, DataError):
            raise
        raise DataError(f"Cannot read the file as {fmt}: {e}", source=path) from None
    if ROW not in df.columns:
        df[ROW] = range(1, len(df) + 1)
    if limit is not None:
        df = df.iloc[:limit]
    if not row_numbers:
        df = df.drop(columns=[ROW])
    return df.reset_index(drop=True)


def read_columns(path: str | Path) -> list[str]:
    """Return the column names of a data file, reading as little as possible (for `taskfit validate`)."""
    path = Path(path)
    fmt = detect_format(path)
    if fmt in ("csv", "tsv"):
        with open(path, encoding="utf-8-sig", newline="") as fh:
            return next(csv.reader(fh, delimiter="," if fmt == "csv" else "\t"), [])
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    return list(read_table(path, limit=50).columns)
