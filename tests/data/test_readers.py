"""Reading CSV / TSV / JSONL / JSON / Parquet with row-precise errors."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from taskfit.data.readers import FORMATS, read_columns, read_table
from taskfit.errors import DataError

ROWS = [
    {"text": "Stocks rose, then fell.\nAnalysts were \"surprised\".", "label": "business"},
    {"text": "这个手机很好用，电池也耐用", "label": "正面"},
    {"text": "plain text", "label": "tech"},
    {"text": "tab\there", "label": "tech"},
]


def _write(df: pd.DataFrame, path: Path) -> Path:
    suffix = path.suffix
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".tsv":
        df.to_csv(path, sep="\t", index=False)
    elif suffix == ".jsonl":
        df.to_json(path, orient="records", lines=True, force_ascii=False)
    elif suffix == ".json":
        df.to_json(path, orient="records", force_ascii=False)
    elif suffix == ".parquet":
        df.to_parquet(path)
    else:
        raise AssertionError(suffix)
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path: Path, suffix: str) -> None:
    path = _write(pd.DataFrame(ROWS), tmp_path / f"data{suffix}")
    df = read_table(path)
    assert list(df.columns) == ["text", "label"]
    assert df.to_dict("records") == ROWS
    assert list(df.index) == list(range(len(ROWS)))
    assert read_columns(path) == ["text", "label"]


def test_csv_quoted_comma_and_newline_is_one_field(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text('text,label\n"a, b\nc",x\nd,y\n', encoding="utf-8")
    df = read_table(path)
    assert df["text"].tolist() == ["a, b\nc", "d"]
    assert df["label"].tolist() == ["x", "y"]


def test_csv_values_stay_strings(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("text,label\n007,1\nNA,0\n", encoding="utf-8")
    df = read_table(path)
    # No numeric or NA coercion: "007" keeps its zeros and "NA" is text, as in the file.
    assert df["text"].tolist() == ["007", "NA"]
    assert df["label"].tolist() == ["1", "0"]


def test_csv_with_bom_has_clean_header(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes("text,label\nx,y\n".encode("utf-8-sig"))
    assert list(read_table(path).columns) == ["text", "label"]
    assert read_columns(path) == ["text", "label"]


def test_txt_is_tab_separated(tmp_path: Path) -> None:
    path = tmp_path / "d.txt"
    path.write_text("text\tlabel\na, b\tx\n", encoding="utf-8")
    assert read_table(path).to_dict("records") == [{"text": "a, b", "label": "x"}]


def test_malformed_csv_rows_are_numbered(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    # data rows: 1 ok, 2 has 3 fields, 3 ok (quoted newline is one record), 4 has 1 field
    path.write_text('text,label\na,x\nb,y,z\n"q\nr",x\nc\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_table(path)
    err = info.value
    assert err.rows == [2, 4]
    assert err.source == str(path)
    assert "rows 2, 4" in str(err)
    assert "expected 2 fields" in str(err)


def test_malformed_jsonl_line_number(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    lines = [json.dumps({"text": "ok", "label": "a"}), "{not json", json.dumps(["a", "list"]),
             json.dumps({"text": "好", "label": "b"}, ensure_ascii=False)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.rows == [2, 3]
    assert "rows 2, 3" in str(info.value)


def test_jsonl_blank_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"text": "a", "label": "x"}\n\n{"text": "b", "label": "y"}\n', encoding="utf-8")
    assert read_table(path)["text"].tolist() == ["a", "b"]


def test_unsupported_suffix_lists_formats(tmp_path: Path) -> None:
    path = tmp_path / "d.xlsx"
    path.write_bytes(b"PK")
    with pytest.raises(DataError) as info:
        read_table(path)
    for suffix in FORMATS:
        assert suffix in str(info.value)
    with pytest.raises(DataError, match="Unsupported"):
        read_columns(path)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.csv"
    with pytest.raises(DataError, match="File not found") as info:
        read_table(path)
    assert info.value.source == str(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".json", ".parquet"])
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(DataError) as info:
        read_table(path)
    assert info.value.source == str(path)


def test_empty_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.jsonl"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        read_table(path)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".json"])
def test_non_utf8_bytes(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"latin{suffix}"
    if suffix in (".csv", ".tsv"):
        sep = "," if suffix == ".csv" else "\t"
        text = f"text{sep}label\ncafé crème{sep}pos\n"
    elif suffix == ".jsonl":
        text = '{"text": "café", "label": "pos"}\n'
    else:
        text = '[{"text": "café", "label": "pos"}]'
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match="UTF-8") as info:
        read_table(path)
    assert info.value.source == str(path)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".parquet"])
def test_limit(tmp_path: Path, suffix: str) -> None:
    df = pd.DataFrame({"text": [f"row {i}" for i in range(10)], "label": ["a", "b"] * 5})
    path = _write(df, tmp_path / f"d{suffix}")
    out = read_table(path, limit=3)
    assert out["text"].tolist() == ["row 0", "row 1", "row 2"]
    assert len(read_table(path, limit=100)) == 10
