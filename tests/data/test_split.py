"""Stratified, seeded splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taskfit.data.split import stratified_split


def _frame() -> pd.DataFrame:
    counts = {"a": 50, "b": 23, "c": 7, "d": 2, "solo": 1}
    labels = [lab for lab, n in counts.items() for _ in range(n)]
    rng = np.random.default_rng(123)
    labels = list(rng.permutation(labels))
    return pd.DataFrame({"text": [f"row {i}" for i in range(len(labels))], "label": labels})


@pytest.mark.parametrize("fraction", [0.1, 0.2, 0.35])
def test_each_class_share_within_one_row(fraction: float) -> None:
    df = _frame()
    rest, held = stratified_split(df, "label", fraction, seed=0)
    assert len(rest) + len(held) == len(df)
    assert set(rest.index).isdisjoint(held.index)
    assert sorted([*rest.index, *held.index]) == list(df.index)
    for lab, n in df["label"].value_counts().items():
        got = int((held["label"] == lab).sum())
        if n >= 2:
            assert abs(got - n * fraction) <= 1, (lab, n, got)
            assert 1 <= got <= n - 1  # both sides keep the class
        else:
            assert got == 0


def test_deterministic_for_a_seed_and_different_across_seeds() -> None:
    df = _frame()
    _, h1 = stratified_split(df, "label", 0.2, seed=7)
    _, h2 = stratified_split(df, "label", 0.2, seed=7)
    _, h3 = stratified_split(df, "label", 0.2, seed=8)
    assert h1.index.tolist() == h2.index.tolist()
    assert h1.index.tolist() != h3.index.tolist()
    # Different seeds still hold out the same number of rows per class.
    assert h1["label"].value_counts().to_dict() == h3["label"].value_counts().to_dict()


def test_singleton_class_stays_in_train() -> None:
    df = _frame()
    for seed in range(5):
        rest, held = stratified_split(df, "label", 0.5, seed=seed)
        assert (rest["label"] == "solo").sum() == 1
        assert (held["label"] == "solo").sum() == 0


def test_zero_fraction_holds_nothing_out() -> None:
    df = _frame()
    rest, held = stratified_split(df, "label", 0.0, seed=0)
    assert len(held) == 0 and len(rest) == len(df)


def test_non_default_index_is_respected() -> None:
    # Frames that were already filtered (e.g. after a previous split) have gaps in their index.
    df = _frame().iloc[::2]
    rest, held = stratified_split(df, "label", 0.2, seed=0)
    assert sorted([*rest.index, *held.index]) == sorted(df.index)
