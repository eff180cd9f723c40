"""Client shares: sizes, disjoint, every row once, reproducible by seed, and clear errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from taskfit.config import FederatedConfig, parse_recipe
from taskfit.errors import ConfigError, DataError
from taskfit.federated.partition import column_partition, dirichlet_partition, iid_partition, partition_rows


def _covers_once(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n and len(np.unique(joined)) == n  # disjoint and every row
    assert all(np.all(np.diff(p) > 0) for p in parts)  # sorted positions


def test_iid_shares_are_near_equal_disjoint_and_seeded():
    parts = iid_partition(103, 4, seed=0)
    assert [len(p) for p in parts] == [26, 26, 26, 25]
    _covers_once(parts, 103)
    assert all(np.array_equal(a, b) for a, b in zip(parts, iid_partition(103, 4, seed=0), strict=True))
    assert not np.array_equal(parts[0], iid_partition(103, 4, seed=1)[0])


def test_dirichlet_small_alpha_skews_labels_large_alpha_does_not():
    labels = np.repeat(["a", "b", "c", "d", "e"], 60)

    def label_share(parts: list[np.ndarray]) -> float:
        """Mean over clients of the share of the client's rows in its most common label."""
        return float(np.mean([pd.Series(labels[p]).value_counts(normalize=True).iloc[0] for p in parts]))

    skewed = dirichlet_partition(labels, 3, alpha=0.1, seed=0)
    even = dirichlet_partition(labels, 3, alpha=1000.0, seed=0)
    for parts in (skewed, even):
        _covers_once(parts, 300)
        assert all(len(p) > 0 for p in parts)
    assert label_share(skewed) > 0.5 > label_share(even)  # 5 labels: near-iid clients are ~0.2 per label
    again = dirichlet_partition(labels, 3, alpha=0.1, seed=0)
    assert all(np.array_equal(a, b) for a, b in zip(skewed, again, strict=True))


def test_column_keeps_each_value_on_one_client_and_balances_rows():
    values = ["bj"] * 50 + ["sh"] * 30 + ["gz"] * 20 + ["sz"] * 15 + ["cd"] * 5
    parts, owners = column_partition(values, 2, "city")
    _covers_once(parts, len(values))
    assert owners == {"bj": 0, "sh": 1, "gz": 1, "sz": 0, "cd": 1}  # largest first onto the lighter client
    assert [len(p) for p in parts] == [65, 55]
    for k, part in enumerate(parts):
        assert {values[i] for i in part} == {v for v, c in owners.items() if c == k}


def test_column_with_fewer_values_than_clients_names_the_values():
    with pytest.raises(DataError) as e:
        column_partition(["北京", "上海", "北京"], 3, "city", source="train.csv")
    msg = str(e.value)
    assert "2 distinct value(s) ('上海', '北京')" in msg and "federated.clients is 3" in msg
    assert "train.csv" in msg and "'city'" in msg


def test_more_clients_than_rows_is_a_clear_error():
    with pytest.raises(DataError, match=r"federated.clients is 5 but the training split has only 3 row\(s\)"):
        iid_partition(3, 5, seed=0)


def test_partition_rows_missing_column_lists_the_available_ones():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "x"], "_row": [1, 2, 3]})
    cfg = FederatedConfig(clients=2, partition="column", partition_column="branch")
    with pytest.raises(DataError, match=r"'branch' is not a column of the training data; available columns: "
                       r"text, label\."):
        partition_rows(frame, cfg, "label", seed=0)


def test_recipe_block_keeps_the_partition_column_and_checks_itself(tmp_path):
    tree = {"data": {"train": str(tmp_path / "t.csv")}, "federated": {"partition": "column",
                                                                      "partition_column": "branch"}}
    assert "branch" in parse_recipe(tree).data.keep_columns
    tree["federated"] = {"clients": 2, "min_fit_clients": 3}
    with pytest.raises(ConfigError, match=r"min_fit_clients 3 is more than federated\.clients 2"):
        parse_recipe(tree)
    tree["federated"] = {"partition": "column"}
    with pytest.raises(ConfigError, match="partition_column is not set"):
        parse_recipe(tree)
