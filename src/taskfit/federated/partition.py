"""Splitting the training rows across federated clients.

Three ways, all pure functions of the rows and a seed (every process of a federation recomputes the same
split, so no row list is ever sent over the network):

* ``iid``: a seeded random permutation cut into near-equal shares;
* ``dirichlet``: label skew as in Hsu et al. (2019): for each label, the shares of its rows going to each
  client are drawn from Dirichlet(alpha); small alpha gives clients that see few labels;
* ``column``: the data already names each row's owner (a branch, a hospital, a region); each distinct
  value goes to one client, and when there are more values than clients the values are packed onto the
  clients so that row counts stay balanced.

Each function returns one sorted int array of row positions per client; together they cover every row
exactly once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from taskfit.config import FederatedConfig
from taskfit.errors import DataError

#: draws of the Dirichlet shares before giving up on a split that leaves a client with no rows
_DIRICHLET_TRIES = 200


def _check_rows(n: int, clients: int, how: str) -> None:
    if n < clients:
        raise DataError(f"federated.clients is {clients} but the training split has only {n} row(s); "
                        f"partition {how!r} needs at least one row per client. Lower federated.clients or "
                        "give more data (raise data.limit).")


def iid_partition(n: int, clients: int, seed: int) -> list[np.ndarray]:
    """Random near-equal shares of ``n`` rows.

    Args:
        n: number of rows.
        clients: number of shares.
        seed: seed of the permutation.

    Returns:
        ``clients`` sorted int arrays of row positions (sizes differ by at most one).
    """
    _check_rows(n, clients, "iid")
    order = np.random.default_rng([seed, 7001]).permutation(n)
    return [np.sort(part) for part in np.array_split(order, clients)]


def dirichlet_partition(labels: Sequence[str] | np.ndarray, clients: int, alpha: float,
                        seed: int) -> list[np.ndarray]:
    """Label-skewed shares: per label, client shares ~ Dirichlet(alpha · 1).

    Args:
        labels: the label of each row, length N.
        clients: number of shares.
        alpha: concentration; large (100) is close to iid, small (0.1) gives one or two labels per client.
        seed: seed of the draws.

    Returns:
        ``clients`` sorted int arrays of row positions, none empty.

    Raises:
        DataError: when no draw gives every client a row (too few rows for this alpha).
    """
    y = np.asarray(labels)
    _check_rows(len(y), clients, "dirichlet")
    rng = np.random.default_rng([seed, 7002])
    classes = sorted(set(y.tolist()), key=str)
    for _ in range(_DIRICHLET_TRIES):
        parts: list[list[int]] = [[] for _ in range(clients)]
        for c in classes:
            idx = np.flatnonzero(y == c)
            rng.shuffle(idx)
            shares = rng.dirichlet(np.full(clients, alpha))
            # cumulative cut points; rounding keeps every row (the last cut is len(idx))
            cuts = np.round(np.cumsum(shares)[:-1] * len(idx)).astype(int)
            for k, chunk in enumerate(np.split(idx, cuts)):
                parts[k].extend(chunk.tolist())
        if all(parts):
            return [np.sort(np.asarray(p, dtype=np.int64)) for p in parts]
    raise DataError(f"partition 'dirichlet' with alpha {alpha:g} left a client without rows in "
                    f"{_DIRICHLET_TRIES} draws ({len(y)} rows, {clients} clients). Raise "
                    "federated.dirichlet_alpha, lower federated.clients, or give more rows.")


def column_partition(values: Sequence[str] | np.ndarray, clients: int, column: str,
                     source: str | None = None) -> tuple[list[np.ndarray], dict[str, int]]:
    """Shares by the value of a column: all rows with one value go to the same client.

    With more distinct values than clients, values are assigned largest first to the client with the fewest
    rows so far (ties: lowest client number), which keeps shares balanced and the result deterministic.

    Args:
        values: the column's value for each row, length N.
        clients: number of shares.
        column: the column name (for messages).
        source: the data file (for messages).

    Returns:
        (``clients`` sorted int arrays of row positions, value → client number).

    Raises:
        DataError: fewer distinct values than clients (naming the values).
    """
    v = np.asarray([str(x) for x in values])
    _check_rows(len(v), clients, "column")
    distinct, counts = np.unique(v, return_counts=True)
    if len(distinct) < clients:
        shown = ", ".join(repr(str(d)) for d in distinct[:20])
        raise DataError(f"federated.partition_column {column!r} has {len(distinct)} distinct value(s) "
                        f"({shown}) but federated.clients is {clients}: each client needs at least one value. "
                        f"Set federated.clients to {len(distinct)} or fewer, or partition by another column.",
                        source=source, column=column)
    order = sorted(range(len(distinct)), key=lambda i: (-counts[i], str(distinct[i])))
    load = [0] * clients
    owner: dict[str, int] = {}
    for i in order:
        k = min(range(clients), key=lambda j: (load[j], j))
        owner[str(distinct[i])] = k
        load[k] += int(counts[i])
    client_of = np.array([owner[x] for x in v], dtype=np.int64)
    return [np.flatnonzero(client_of == k) for k in range(clients)], owner


def partition_rows(frame: pd.DataFrame, cfg: FederatedConfig, label: str | None, seed: int,
                   source: str | None = None) -> tuple[list[np.ndarray], dict[str, int] | None]:
    """The client shares of a training frame as the ``federated`` block asks.

    Args:
        frame: the training split (rows in order).
        cfg: the federated settings (``partition``, ``clients``, ``dirichlet_alpha``, ``partition_column``).
        label: the label column (needed by ``dirichlet``).
        seed: base seed of the split.
        source: the training file (for messages).

    Returns:
        (one sorted int array of positions in ``frame`` per client, value → client for ``column`` else None).

    Raises:
        DataError: a missing column, too few rows or values for the number of clients.
    """
    if cfg.partition == "iid":
        return iid_partition(len(frame), cfg.clients, seed), None
    if cfg.partition == "dirichlet":
        if label is None or label not in frame:
            raise DataError("partition 'dirichlet' skews clients by label, but the training rows have no label "
                            "column; use partition 'iid' or 'column'.", source=source)
        return dirichlet_partition(frame[label].to_numpy(), cfg.clients, cfg.dirichlet_alpha, seed), None
    column = str(cfg.partition_column)
    if column not in frame:
        shown = ", ".join(c for c in frame.columns if not str(c).startswith("_"))
        raise DataError(f"federated.partition_column {column!r} is not a column of the training data; "
                        f"available columns: {shown}.", source=source, column=column)
    return column_partition(frame[column].to_numpy(), cfg.clients, column, source)
