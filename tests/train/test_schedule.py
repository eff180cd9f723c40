"""Learning-rate schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from taskfit.train.schedule import make_scheduler, warmup_steps

PEAK = 0.5


def _lrs(kind: str, warmup: int, total: int) -> tuple[list[float], float]:
    """The lr used by each of ``total`` optimiser steps, and the lr after the last scheduler step."""
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=PEAK)
    sched = make_scheduler(opt, kind, warmup, total)
    used = []
    for _ in range(total):
        used.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return used, opt.param_groups[0]["lr"]


def test_linear_warmup_then_decay_to_zero() -> None:
    used, after = _lrs("linear", warmup=4, total=20)
    # Warm-up rises in equal steps and reaches the peak on its last step; it never starts at 0 (a wasted step).
    assert used[:4] == pytest.approx([PEAK * k / 4 for k in (1, 2, 3, 4)])
    assert used[4] == pytest.approx(PEAK)
    decay = used[4:]
    assert all(b < a for a, b in itertools.pairwise(decay))
    # Linear: constant decrement, landing on 0 exactly after the last step.
    diffs = [a - b for a, b in itertools.pairwise(decay)]
    assert diffs == pytest.approx([PEAK / 16] * len(diffs))
    assert used[-1] == pytest.approx(PEAK / 16)
    assert after == pytest.approx(0.0, abs=1e-12)


def test_linear_without_warmup_starts_at_peak() -> None:
    used, after = _lrs("linear", warmup=0, total=10)
    assert used[0] == pytest.approx(PEAK)
    assert used == pytest.approx([PEAK * (10 - s) / 10 for s in range(10)])
    assert after == pytest.approx(0.0, abs=1e-12)


def test_cosine() -> None:
    used, after = _lrs("cosine", warmup=2, total=22)
    assert used[:2] == pytest.approx([PEAK / 2, PEAK])
    decay = used[2:]
    expected = [PEAK * 0.5 * (1 + math.cos(math.pi * s / 20)) for s in range(20)]
    assert decay == pytest.approx(expected)
    assert decay[10] == pytest.approx(PEAK / 2)  # half-way down at half the decay
    assert after == pytest.approx(0.0, abs=1e-12)


def test_constant() -> None:
    used, after = _lrs("constant", warmup=3, total=10)
    assert used[:3] == pytest.approx([PEAK / 3, 2 * PEAK / 3, PEAK])
    assert used[3:] == pytest.approx([PEAK] * 7)
    assert after == pytest.approx(PEAK)


def test_schedule_scales_every_param_group() -> None:
    a, b = torch.nn.Parameter(torch.zeros(1)), torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([{"params": [a], "lr": 1.0}, {"params": [b], "lr": 0.1}])
    sched = make_scheduler(opt, "linear", 0, 4)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.75, 0.075])


@pytest.mark.parametrize(("warmup", "total", "expected"), [
    (0.1, 100, 10), (0.06, 50, 3), (0.0, 100, 0), (0.2, 7, 1),  # fractions of the total (rounded)
    (10, 100, 10), (1, 100, 1), (5.0, 3, 5),  # >= 1: a step count, independent of the total
])
def test_warmup_fraction_vs_steps(warmup: float, total: int, expected: int) -> None:
    assert warmup_steps(warmup, total) == expected
