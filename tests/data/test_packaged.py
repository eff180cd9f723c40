"""Packaged real datasets written out as text,label CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from taskfit.data.packaged import DATASETS, write_dataset
from taskfit.data.readers import read_table
from taskfit.errors import DataError

EXPECTED_LABELS = {
    "bbc_news": {"business", "entertainment", "politics", "sports", "tech"},
    "zh_sentiment": {"pos", "neg"},
}


@pytest.mark.parametrize("name", sorted(EXPECTED_LABELS))
def test_full_dataset_has_expected_labels(tmp_path: Path, name: str) -> None:
    path = write_dataset(name, tmp_path / f"{name}.csv")
    with open(path, encoding="utf-8", newline="") as fh:
        header = next(csv.reader(fh))
    assert header == ["text", "label"]
    df = read_table(path)  # the CSV the writer produced reads back without malformed rows
    assert set(df["label"]) == EXPECTED_LABELS[name]
    assert (df["text"].str.strip() != "").all()
    assert not df.duplicated(["text", "label"]).any()
    # Every class is represented by a real amount of data, not a stray row.
    assert df["label"].value_counts().min() >= 100


def test_zh_sentiment_is_chinese(tmp_path: Path) -> None:
    df = read_table(write_dataset("zh_sentiment", tmp_path / "zh.csv", n=50))
    has_cjk = df["text"].map(lambda t: any("\u4e00" <= ch <= "\u9fff" for ch in t))
    assert has_cjk.mean() > 0.9


@pytest.mark.parametrize("name", sorted(EXPECTED_LABELS))
def test_sample_n_rows(tmp_path: Path, name: str) -> None:
    a = read_table(write_dataset(name, tmp_path / "a.csv", n=40, seed=1))
    b = read_table(write_dataset(name, tmp_path / "b.csv", n=40, seed=1))
    c = read_table(write_dataset(name, tmp_path / "c.csv", n=40, seed=2))
    assert len(a) == 40
    assert a.equals(b)  # same seed, same sample
    assert not a.equals(c)
    assert set(a["label"]) <= EXPECTED_LABELS[name]


def test_n_larger_than_dataset_writes_everything(tmp_path: Path) -> None:
    full = read_table(write_dataset("zh_sentiment", tmp_path / "full.csv"))
    big = read_table(write_dataset("zh_sentiment", tmp_path / "big.csv", n=len(full) + 1000))
    assert len(big) == len(full)


def test_unknown_dataset(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        write_dataset("imdb", tmp_path / "x.csv")
    for name in DATASETS:
        assert name in str(info.value)
    assert not (tmp_path / "x.csv").exists()


def test_fixtures_are_real_samples(bbc_csv: Path, zh_csv: Path) -> None:
    assert len(read_table(bbc_csv)) == 300
    assert set(read_table(zh_csv)["label"]) == {"pos", "neg"}
