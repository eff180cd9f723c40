"""MicroBatcher with a plain-Python slow model function: coalescing, order, bounds, failures, shutdown."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future, wait

import pytest

from taskfit.serve.batching import BatchError, MicroBatcher, QueueFull, ShuttingDown


class SlowModel:
    """Doubles numbers, taking ``delay`` seconds per call; records every batch it saw. A call can be held
    until ``release`` is set, so tests fill the queue deterministically."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None) -> None:
        self.delay, self.fail_on = delay, fail_on
        self.batches: list[list[int]] = []
        self.release = threading.Event()
        self.release.set()
        self.started = threading.Event()

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.started.set()
        self.release.wait(10)
        time.sleep(self.delay)
        if self.fail_on is not None and self.fail_on in items:
            raise RuntimeError(f"cannot score {self.fail_on}")
        return [2 * x for x in items]


def test_concurrent_requests_share_forward_passes_and_keep_their_order() -> None:
    model = SlowModel(delay=0.02)
    sizes: list[int] = []
    batcher = MicroBatcher(model, max_batch=16, max_wait_ms=50, queue_size=512,
                           on_batch=lambda n, s: sizes.append(n))
    try:
        requests = [list(range(10 * i, 10 * i + (i % 3) + 1)) for i in range(40)]
        futures: list[Future[list[int]]] = [batcher.submit(r) for r in requests]
        wait(futures, timeout=10)
        for req, fut in zip(requests, futures, strict=True):
            assert fut.result() == [2 * x for x in req]  # own outputs, in order
        total = sum(len(r) for r in requests)
        assert sum(sizes) == total and sizes == [len(b) for b in model.batches]
        assert len(model.batches) < len(requests) / 3  # coalesced, not one pass per request
        assert max(sizes) <= 16
        for batch in model.batches:  # a request's items are contiguous in one batch
            for req in requests:
                hit = [x for x in batch if x in req]
                assert hit in ([], req)
    finally:
        batcher.close()


def test_lone_request_waits_at_most_max_wait() -> None:
    batcher = MicroBatcher(SlowModel(), max_batch=32, max_wait_ms=30)
    try:
        start = time.perf_counter()
        assert batcher.submit([1, 2]).result(timeout=5) == [2, 4]
        assert time.perf_counter() - start < 0.03 + 0.5  # not stuck waiting for a full batch
    finally:
        batcher.close()


def test_request_larger_than_max_batch_runs_alone_and_whole() -> None:
    model = SlowModel()
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=1, queue_size=64)
    try:
        assert batcher.submit(list(range(10))).result(timeout=5) == [2 * x for x in range(10)]
        assert model.batches == [list(range(10))]
    finally:
        batcher.close()


def test_full_queue_refuses_at_once() -> None:
    model = SlowModel()
    model.release.clear()  # the worker holds the first batch until released
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0, queue_size=5)
    try:
        first = batcher.submit([1, 2])
        assert model.started.wait(5)
        queued = batcher.submit([3, 4, 5])
        assert batcher.depth == 3
        start = time.perf_counter()
        with pytest.raises(QueueFull, match=r"3 inputs queued \(queue_size 5\)"):
            batcher.submit([6, 7, 8])
        assert time.perf_counter() - start < 0.05
        small = batcher.submit([9, 10])  # still fits exactly
        model.release.set()
        assert first.result(5) == [2, 4] and queued.result(5) == [6, 8, 10] and small.result(5) == [18, 20]
    finally:
        model.release.set()
        batcher.close()


def test_failure_answers_its_batch_only_and_the_worker_goes_on() -> None:
    model = SlowModel(fail_on=13)
    model.release.clear()
    batcher = MicroBatcher(model, max_batch=4, max_wait_ms=20, queue_size=64, name="news v1")
    try:
        blocker = batcher.submit([1, 2, 3, 4])  # fills batch 1 while the next ones queue up together
        assert model.started.wait(5)
        bad, neighbour = batcher.submit([13]), batcher.submit([5])
        later = batcher.submit([6, 7, 8, 9])  # does not fit with them: next batch
        model.release.set()
        assert blocker.result(5) == [2, 4, 6, 8]
        for fut in (bad, neighbour):
            with pytest.raises(BatchError, match=r"news v1 failed on a batch of 2 input\(s\) from 2 request\(s\): "
                                                 r"RuntimeError: cannot score 13"):
                fut.result(5)
        assert later.result(5) == [12, 14, 16, 18]
    finally:
        batcher.close()


def test_wrong_number_of_outputs_is_a_batch_error() -> None:
    batcher = MicroBatcher(lambda items: items[:-1], max_batch=8, max_wait_ms=1)
    try:
        with pytest.raises(BatchError, match="returned 1 outputs for 2 inputs"):
            batcher.submit([1, 2]).result(5)
    finally:
        batcher.close()


def test_close_answers_queued_requests_then_refuses_new_ones() -> None:
    model = SlowModel(delay=0.01)
    model.release.clear()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0, queue_size=64)
    first = batcher.submit([1])
    assert model.started.wait(5)
    queued = [batcher.submit([i]) for i in range(2, 8)]
    closer = threading.Thread(target=batcher.close, args=(10,))
    closer.start()
    time.sleep(0.05)
    with pytest.raises(ShuttingDown, match="shutting down"):
        batcher.submit([99])
    assert not batcher.running
    model.release.set()
    closer.join(10)
    assert first.result(1) == [2]
    assert [f.result(1) for f in queued] == [[2 * i] for i in range(2, 8)]  # drained, not dropped


def test_close_timeout_fails_leftovers_instead_of_hanging() -> None:
    model = SlowModel()
    model.release.clear()  # the model never finishes within the drain timeout
    batcher = MicroBatcher(model, max_batch=1, max_wait_ms=0, queue_size=8)
    running = batcher.submit([1])
    assert model.started.wait(5)
    left = batcher.submit([2])
    batcher.close(timeout=0.1)
    with pytest.raises(ShuttingDown, match="shut down before answering"):
        left.result(1)
    model.release.set()
    assert running.result(5) == [2]


def test_cancelled_request_is_skipped_and_frees_its_room() -> None:
    model = SlowModel()
    model.release.clear()
    batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0, queue_size=2)
    try:
        batcher.submit([1])
        assert model.started.wait(5)
        gone = batcher.submit([2, 3])
        assert gone.cancel()  # the caller timed out before its turn
        kept = batcher.submit([4, 5])  # fits: the cancelled request no longer holds the queue
        model.release.set()
        assert kept.result(5) == [8, 10]
        assert model.batches == [[1], [4, 5]]
    finally:
        batcher.close()


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch and queue_size must be ≥ 1"):
        MicroBatcher(lambda x: x, max_batch=0)


def test_requests_one_at_a_time_do_not_wait_but_concurrent_ones_still_coalesce() -> None:
    """After a lone request the next lone one runs at once (no max_wait for company that is not coming);
    a burst still shares forward passes."""
    model = SlowModel(delay=0.0)
    batcher = MicroBatcher(model, max_batch=32, max_wait_ms=200)
    try:
        assert batcher.submit([1]).result(timeout=5) == [2]  # the first one may wait (no history yet)
        start = time.perf_counter()
        for i in range(5):
            assert batcher.submit([i]).result(timeout=5) == [2 * i]
        assert time.perf_counter() - start < 0.2  # five sequential requests, far below 5 × 200 ms
        slow = SlowModel(delay=0.05)
        burst = MicroBatcher(slow, max_batch=32, max_wait_ms=20)
        try:
            futures = [burst.submit([i]) for i in range(20)]
            wait(futures, timeout=10)
            assert [f.result() for f in futures] == [[2 * i] for i in range(20)]
            assert len(slow.batches) <= 4  # coalesced while the first pass ran
        finally:
            burst.close()
    finally:
        batcher.close()
