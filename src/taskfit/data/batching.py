"""Length-bucketed batches: little padding, yet a random order every epoch.

Each epoch: shuffle all rows (seeded by ``seed`` and the epoch number), cut the shuffled order into
windows of ``bucket_size`` batches, sort each window by length, cut it into batches (a fixed number
of rows, or as many rows as fit a token budget), then shuffle the batches. Rows of similar length
share a batch, so padding nearly vanishes, while every batch still holds a random draw of rows.

The order is a pure function of (seed, epoch): resuming only needs the epoch and batch position.
"""

from __future__ import annotations

import numpy as np


class BucketBatcher:
    """Deterministic, seedable length-bucketing batch sampler.

    Args:
        lengths: token count of each row, shape [N].
        batch_size: rows per batch (used when ``batch_tokens`` is None).
        batch_tokens: token budget per batch: rows × padded length ≤ budget.
        bucket_size: batches per sorting window; 1 = no bucketing (plain random batches).
        seed: base seed of the order.
        shuffle: False gives length-sorted batches in a fixed order (evaluation).
    """

    def __init__(
        self,
        lengths: np.ndarray,
        batch_size: int = 32,
        batch_tokens: int | None = None,
        bucket_size: int = 64,
        seed: int = 0,
        shuffle: bool = True,
    ) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
        self.bucket_size = bucket_size
        self.seed = seed
        self.shuffle = shuffle

    def epoch(self, epoch: int) -> list[np.ndarray]:
        """All batches (arrays of row indices) of epoch ``epoch``, in training order."""
        n = len(self.lengths)
        if not self.shuffle:
            order = np.argsort(self.lengths, kind="stable")
            return self._cut(order)
        rng = np.random.default_rng([self.seed, epoch])
        order = rng.permutation(n)
        window = self.bucket_size * (self.batch_size if self.batch_tokens is None else self._rows_per_budget())
        batches: list[np.ndarray] = []
        for start in range(0, n, window):
            chunk = order[start : start + window]
            chunk = chunk[np.argsort(self.lengths[chunk], kind="stable")]
            batches.extend(self._cut(chunk))
        perm = rng.permutation(len(batches))
        return [batches[i] for i in perm]

    def __len__(self) -> int:
        return len(self.epoch(0))

    def _rows_per_budget(self) -> int:
        assert self.batch_tokens is not None
        return max(1, int(self.batch_tokens // max(1.0, float(np.mean(self.lengths)))))

    def _cut(self, order: np.ndarray) -> list[np.ndarray]:
        if self.batch_tokens is None:
            return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]
        # Token budget: grow a batch while (rows + 1) × longest row still fits.
        batches, start, longest = [], 0, 0
        for i, idx in enumerate(order):
            longest_next = max(longest, int(self.lengths[idx]))
            if i > start and longest_next * (i - start + 1) > self.batch_tokens:
                batches.append(order[start:i])
                start, longest_next = i, int(self.lengths[idx])
            longest = longest_next
        if start < len(order):
            batches.append(order[start:])
        return batches
