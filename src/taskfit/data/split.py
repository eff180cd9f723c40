"""Stratified, seeded train/valid/test splits."""

from __future__ import annotations

import numpy as np
import pandas as pd


def stratified_split(
    df: pd.DataFrame, label_col: str, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split ``df`` into (rest, held_out) with ``fraction`` of each label held out.

    Every class with at least 2 rows keeps at least one row on each side, so a rare class is never
    missing from training. The split depends only on the data and ``seed``.
    """
    if fraction <= 0:
        return df, df.iloc[0:0]
    rng = np.random.default_rng(seed)
    held: list[int] = []
    for _, idx in sorted(df.groupby(label_col, sort=True).indices.items(), key=lambda kv: str(kv[0])):
        idx = np.array(idx)
        rng.shuffle(idx)
        n = round(len(idx) * fraction)
        if len(idx) >= 2:
            n = min(max(n, 1), len(idx) - 1)
        else:
            n = 0
        held.extend(idx[:n].tolist())
    mask = np.zeros(len(df), dtype=bool)
    mask[held] = True
    return df[~mask], df[mask]
