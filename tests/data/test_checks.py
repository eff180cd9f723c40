"""Data quality checks: every finding names its file and its 1-based data rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from taskfit.config import ChecksConfig, DataConfig
from taskfit.data.checks import ROW, SOURCE, check_splits
from taskfit.data.load import load_splits
from taskfit.errors import DataError

POS = ["great phone, love it", "这个手机很好用", "battery lasts two days", "物流很快，包装完好", "works as advertised"]
NEG = ["screen cracked in a week", "质量太差了，不推荐", "refund took a month", "客服态度很差", "stopped charging"]


def _csv(path: Path, rows: list[tuple[str, str]], header: tuple[str, str] = ("text", "label")) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(header)
        w.writerows(rows)
    return path


def _balanced() -> list[tuple[str, str]]:
    return [(t, "pos") for t in POS] + [(t, "neg") for t in NEG]


def _files(tmp_path: Path, train: list[tuple[str, str]], valid: list[tuple[str, str]] | None = None,
           test: list[tuple[str, str]] | None = None) -> dict[str, Path]:
    """Explicit train/valid/test files, so no random split moves rows around."""
    valid = valid if valid is not None else [("valid positive 好评", "pos"), ("valid negative 差评", "neg")]
    test = test if test is not None else [("test positive 很好", "pos"), ("test negative 很差", "neg")]
    return {"train": _csv(tmp_path / "train.csv", train), "valid": _csv(tmp_path / "valid.csv", valid),
            "test": _csv(tmp_path / "test.csv", test)}


def _cfg(files: dict[str, Path], **checks: Any) -> DataConfig:
    return DataConfig(**files, checks=ChecksConfig(**checks))


def _issue(issues: list[dict[str, Any]], check: str) -> dict[str, Any]:
    found = [i for i in issues if i["check"] == check]
    assert len(found) == 1, issues
    return found[0]


def test_clean_data_has_no_issues(tmp_path: Path) -> None:
    splits = load_splits(_cfg(_files(tmp_path, _balanced())))
    assert splits.issues == []
    assert splits.labels == ["neg", "pos"]
    assert {k: len(v) for k, v in splits.frames.items()} == {"train": 10, "valid": 2, "test": 2}
    # Rows are numbered from 1 in file order, and carry their source file.
    train = splits.frames["train"]
    assert train[ROW].tolist() == list(range(1, 11))
    assert set(train[SOURCE]) == {str(tmp_path / "train.csv")}


def test_empty_text_dropped_by_default_and_reported(tmp_path: Path) -> None:
    rows = _balanced()
    rows.insert(2, ("", "pos"))  # data row 3
    rows.insert(5, ("   ", "neg"))  # data row 6 (whitespace only)
    files = _files(tmp_path, rows)
    splits = load_splits(_cfg(files))
    issue = _issue(splits.issues, "empty_text")
    assert issue["rows"] == [3, 6]
    assert issue["file"] == str(files["train"])
    assert issue["severity"] == "info" and "dropped" in issue["message"]
    train = splits.frames["train"]
    assert len(train) == 10
    assert 3 not in train[ROW].tolist() and 6 not in train[ROW].tolist()
    assert (train["text"].str.strip() != "").all()


def test_empty_text_as_error(tmp_path: Path) -> None:
    rows = [*_balanced(), ("", "pos")]
    with pytest.raises(DataError, match="empty text") as info:
        load_splits(_cfg(_files(tmp_path, rows), empty_text="error"))
    assert "rows 11" in str(info.value)


def test_duplicates_warned_with_rows(tmp_path: Path) -> None:
    rows = [*_balanced(), (POS[1], "pos"), (NEG[0], "neg"), (POS[1], "pos")]  # rows 11, 12, 13 repeat 2, 6, 2
    splits = load_splits(_cfg(_files(tmp_path, rows)))
    issue = _issue(splits.issues, "duplicates")
    assert issue["severity"] == "warning"
    assert issue["rows"] == [11, 12, 13]  # the first occurrence is not a duplicate
    assert len(splits.frames["train"]) == 13  # warn keeps them


def test_duplicates_dropped(tmp_path: Path) -> None:
    rows = [*_balanced(), (POS[1], "pos"), (NEG[0], "neg")]
    splits = load_splits(_cfg(_files(tmp_path, rows), duplicates="drop"))
    train = splits.frames["train"]
    assert len(train) == 10
    assert not train.duplicated(["text", "label"]).any()
    assert train[ROW].tolist() == list(range(1, 11))


def test_conflicting_labels_fatal_by_default(tmp_path: Path) -> None:
    rows = [*_balanced(), (POS[0], "neg")]  # row 11 contradicts row 1
    with pytest.raises(DataError) as info:
        load_splits(_cfg(_files(tmp_path, rows)))
    msg = str(info.value)
    assert "different label" in msg
    assert "rows 1, 11" in msg
    assert str(tmp_path / "train.csv") in msg


def test_conflicting_labels_dropped(tmp_path: Path) -> None:
    rows = [*_balanced(), (NEG[1], "pos")]  # row 11 contradicts row 7 (Chinese)
    splits = load_splits(_cfg(_files(tmp_path, rows), conflicting_labels="drop"))
    issue = _issue(splits.issues, "conflicting_labels")
    assert issue["rows"] == [7, 11]
    train = splits.frames["train"]
    assert NEG[1] not in train["text"].tolist()
    assert len(train) == 9


def test_conflicting_labels_in_train_found_whatever_the_split(tmp_path: Path) -> None:
    rows = [(f"good item number {i}", "pos") for i in range(20)] + [(f"bad item number {i}", "neg") for i in range(20)]
    rows += [("same text 同样的文字", "pos"), ("same text 同样的文字", "neg")]
    train = _csv(tmp_path / "train.csv", rows)
    missed = []
    for seed in range(8):
        try:
            load_splits(DataConfig(train=train, split_seed=seed))
        except DataError as e:
            assert "different label" in str(e)
        else:
            missed.append(seed)
    assert missed == []


def test_unknown_label_in_test_file(tmp_path: Path) -> None:
    test = [("test positive", "pos"), ("test neutral 一般般", "neutral"), ("test negative", "neg")]
    files = _files(tmp_path, _balanced(), test=test)
    with pytest.raises(DataError) as info:
        load_splits(_cfg(files))
    msg = str(info.value)
    assert "'neutral'" in msg
    assert "rows 2]" in msg
    assert str(files["test"]) in msg


def test_label_set_from_recipe_rejects_other_train_labels(tmp_path: Path) -> None:
    files = _files(tmp_path, _balanced())
    with pytest.raises(DataError, match="'neg'"):
        load_splits(DataConfig(**files, labels=["pos", "negative"]))


def test_class_below_min_class_count(tmp_path: Path) -> None:
    rows = [*_balanced(), ("only one of these", "rare")]
    with pytest.raises(DataError, match="fewer than 2 rows") as info:
        load_splits(_cfg(_files(tmp_path, rows)))
    assert "rare" in str(info.value)
    # Raising the threshold catches the bigger classes too.
    with pytest.raises(DataError, match="fewer than 6 rows"):
        load_splits(_cfg(_files(tmp_path, _balanced()), min_class_count=6))


def test_label_listed_but_absent_from_train(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fewer than"):
        load_splits(DataConfig(**_files(tmp_path, _balanced()), labels=["neg", "pos", "neutral"]))


def test_imbalance_warning(tmp_path: Path) -> None:
    rows = [(f"positive review {i} 好", "pos") for i in range(20)] + [(NEG[0], "neg"), (NEG[1], "neg")]
    splits = load_splits(_cfg(_files(tmp_path, rows)))
    issue = _issue(splits.issues, "imbalance")
    assert issue["severity"] == "warning"
    assert "10.0" in issue["message"]
    # Below the threshold there is no warning.
    assert not [i for i in load_splits(_cfg(_files(tmp_path, rows), imbalance_ratio=11)).issues
                if i["check"] == "imbalance"]


def test_leakage_warning(tmp_path: Path) -> None:
    test = [("unseen positive", "pos"), (NEG[1], "neg"), (POS[4], "pos")]  # rows 2 and 3 are in train
    files = _files(tmp_path, _balanced(), test=test)
    splits = load_splits(_cfg(files))
    issue = _issue(splits.issues, "leakage")
    assert issue["severity"] == "warning"
    assert issue["rows"] == [2, 3]
    assert issue["file"] == str(files["test"])
    assert len(splits.frames["test"]) == 3
    with pytest.raises(DataError, match="also appear in train"):
        load_splits(_cfg(files, leakage="error"))
    assert load_splits(_cfg(files, leakage="ignore")).issues == []


def test_missing_column_lists_available(tmp_path: Path) -> None:
    train = _csv(tmp_path / "train.csv", _balanced(), header=("review", "label"))
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=train))
    msg = str(info.value)
    assert "'text'" in msg
    assert "available columns: review, label" in msg


def test_missing_label_value_jsonl(tmp_path: Path) -> None:
    path = tmp_path / "train.jsonl"
    records: list[dict[str, Any]] = [{"text": t, "label": lab} for t, lab in _balanced()]
    records.insert(3, {"text": "没有标签", "label": None})  # data row 4
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in records) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="Missing label") as info:
        load_splits(DataConfig(train=path))
    assert info.value.rows == [4]
    assert info.value.column == "label"


def test_missing_label_value_csv(tmp_path: Path) -> None:
    rows = _balanced()
    rows[3:3] = [("no label 1", ""), ("no label 2", ""), ("no label 3", "")]  # data rows 4-6
    files = _files(tmp_path, rows)
    with pytest.raises(DataError, match="Missing label") as info:
        load_splits(_cfg(files))
    assert info.value.rows == [4, 5, 6]


def test_row_numbers_consistent_with_blank_lines(tmp_path: Path) -> None:
    train = tmp_path / "train.csv"
    lines = ["text,label", *[f"p{i},pos" for i in range(3)], "", *[f"n{i},neg" for i in range(3)], "n0,neg"]
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    # With an extra malformed row, the reader names it by counting the blank line as a row...
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines, "x,y,z"]) + "\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_splits(DataConfig(train=bad, valid=train, test_fraction=0))
    assert info.value.rows == [9]
    # ...so the duplicate "n0,neg" on the line before it is data row 8 in that same numbering.
    files = {"train": train, "valid": _csv(tmp_path / "v.csv", [("v1", "pos"), ("v2", "neg")])}
    splits = load_splits(DataConfig(**files, test_fraction=0))
    assert _issue(splits.issues, "duplicates")["rows"] == [8]


def test_several_fatal_findings_reported_together(tmp_path: Path) -> None:
    rows = [*_balanced(), (POS[0], "neg")]
    test = [("测试", "neutral")]
    with pytest.raises(DataError) as info:
        load_splits(_cfg(_files(tmp_path, rows, test=test)))
    msg = str(info.value)
    assert "different label" in msg and "'neutral'" in msg


def test_check_splits_directly() -> None:
    def frame(rows: list[tuple[str, str]], source: str) -> pd.DataFrame:
        df = pd.DataFrame(rows, columns=["t", "y"])
        df[ROW] = range(1, len(df) + 1)
        df[SOURCE] = source
        return df

    frames = {"train": frame([*_balanced(), ("", "pos"), (POS[0], "pos")], "tr.csv"),
              "valid": frame([(POS[2], "pos"), ("新的", "neg")], "va.csv")}
    res = check_splits(frames, "t", "y", ["neg", "pos"], ChecksConfig())
    by_check = {i["check"]: i for i in res.issues}
    assert by_check["empty_text"]["rows"] == [11]
    assert by_check["duplicates"]["rows"] == [12]
    assert by_check["leakage"]["rows"] == [1] and by_check["leakage"]["file"] == "va.csv"
    assert len(res.frames["train"]) == 11  # empty dropped, duplicate kept (warn)
    assert len(frames["train"]) == 12  # the input frames are not modified


def test_min_class_count_message_is_plain() -> None:
    frames = {"train": pd.DataFrame({"t": [*POS, "唯一"], "y": ["pos"] * 5 + ["rare"], ROW: range(1, 7),
                                     SOURCE: "tr.csv"})}
    with pytest.raises(DataError) as info:
        check_splits(frames, "t", "y", ["pos", "rare"], ChecksConfig())
    assert "{'rare': 1}" in str(info.value)
    assert "np." not in str(info.value)
