"""Poisson-sampled batches for DP-SGD.

The privacy accountants (RDP, PRV) bound the privacy loss of the *subsampled* Gaussian mechanism: every
batch must include each training row independently with probability ``q``. Shuffled fixed-size batches
(taskfit's length-bucketed batcher) give a different, weaker guarantee, so DP runs replace the batcher
with this plan. Batch sizes vary around ``q × rows``; a batch is a pure function of (seed, epoch, draw),
so ``--resume`` replays the same batches.

An empty draw (no row picked, probability ``(1 − q)^rows``) cannot be run through the model and is
skipped. Skipping is an event that depends on the data only through whether *other* rows were picked,
which adds at most ``steps × (1 − q)^(rows − 1)`` to δ; :meth:`PoissonBatcher.delta_slack` reports it
(about 1e-14 for 32 expected rows a batch).
"""

from __future__ import annotations

import math

import numpy as np


class PoissonBatcher:
    """Batches whose rows are drawn independently with probability ``sample_rate``.

    Args:
        n_rows: training rows N.
        sample_rate: q = expected batch size / N, in (0, 1).
        seed: run seed (``train.seed``); the draws of epoch ``e`` depend on (seed, e) only.

    An epoch is ``round(1 / q)`` draws, so one epoch sees each row once on average, as a shuffled epoch
    does, and the loop's ``epochs`` means the same thing with and without DP.
    """

    def __init__(self, n_rows: int, sample_rate: float, seed: int = 0) -> None:
        if n_rows < 1:
            raise ValueError(f"n_rows must be >= 1, got {n_rows}")
        if not 0.0 < sample_rate < 1.0:
            raise ValueError(f"sample_rate must be in (0, 1), got {sample_rate}")
        self.n_rows, self.sample_rate, self.seed = n_rows, sample_rate, seed
        self.draws = max(1, round(1.0 / sample_rate))
        self.empty_skipped: dict[int, int] = {}  # epoch -> empty draws skipped (for the summary)

    def __len__(self) -> int:
        """Draws per epoch (the loop plans its steps with this; empty draws are rare and skipped)."""
        return self.draws

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """The batches of ``epoch``: sorted int64 row indices, each of length Binomial(N, q), none empty."""
        # A fresh generator per epoch: resuming in the middle of epoch e redraws exactly its batches.
        rng = np.random.default_rng([self.seed, epoch, 0x44505347])  # last word: "DPSG", separates the stream
        batches: list[np.ndarray] = []
        empty = 0
        for _ in range(self.draws):
            # Binomial size + a uniform subset of that size is the same law as N independent coin flips,
            # at O(batch) cost instead of O(N) per draw.
            k = int(rng.binomial(self.n_rows, self.sample_rate))
            if k == 0:
                empty += 1
                continue
            batches.append(np.sort(rng.choice(self.n_rows, size=k, replace=False)).astype(np.int64))
        self.empty_skipped[epoch] = empty
        return batches

    def delta_slack(self, steps: int) -> float:
        """Upper bound on the δ that skipping empty draws adds over ``steps`` draws: steps × (1 − q)^(N − 1)."""
        return float(steps * math.exp((self.n_rows - 1) * math.log1p(-self.sample_rate)))
