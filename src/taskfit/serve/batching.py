"""Dynamic micro-batching: many small requests, one forward pass.

A :class:`MicroBatcher` owns a bounded queue and one worker thread per served model. The worker takes the
oldest request, waits at most ``max_wait_ms`` for more to join it until ``max_batch`` inputs are collected,
runs the model function once over all of them, and resolves each request's future with its own slice of
the outputs. The wait adapts to the traffic: while requests come one at a time (the last batch held a single
request and nothing else is queued) a request runs at once instead of waiting ``max_wait_ms`` for company
that is not coming; as soon as a batch gathers two or more requests the worker waits again.
Why a thread and not the event loop: the forward pass holds the CPU for milliseconds (PyTorch
and ONNX Runtime release the GIL while they compute), so the event loop keeps accepting and answering.

Guarantees:
- a request's inputs stay together, in order, in one batch (a request larger than ``max_batch`` runs alone);
- a full queue refuses at once (:class:`QueueFull`, the service answers 429) instead of queueing latency;
- after :meth:`MicroBatcher.close` new requests are refused (:class:`ShuttingDown`, 503), queued ones are still
  answered (or failed with ShuttingDown after the drain timeout) — no future is left pending;
- an exception in the model function fails that batch's requests only (:class:`BatchError`); the worker goes on.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["BatchError", "MicroBatcher", "QueueFull", "ShuttingDown"]

In = TypeVar("In")
Out = TypeVar("Out")


class QueueFull(Exception):
    """The queue holds ``queue_size`` inputs already; try again shortly (HTTP 429)."""


class ShuttingDown(Exception):
    """The batcher is closed or closing (HTTP 503)."""


class BatchError(Exception):
    """The model function failed on the batch this request was part of (HTTP 500)."""


@dataclass
class _Request(Generic[In, Out]):
    items: list[In]
    future: Future[list[Out]]
    enqueued: float = field(default_factory=time.perf_counter)


class MicroBatcher(Generic[In, Out]):
    """Coalesces concurrent requests into batches for ``fn`` on one worker thread.

    Args:
        fn: the model function: a list of N inputs → a list of N outputs, in the same order.
        max_batch: most inputs per call of ``fn`` (a single larger request still runs, alone).
        max_wait_ms: how long the first request of a batch waits for others to join it.
        queue_size: most inputs waiting; :meth:`submit` raises QueueFull beyond it.
        name: shown in thread names and error messages (e.g. ``"intents v2"``).
        on_batch: called after each batch with (number of inputs, seconds in ``fn``) — for metrics.
    """

    def __init__(self, fn: Callable[[list[In]], Sequence[Out]], max_batch: int = 32, max_wait_ms: float = 5.0,
                 queue_size: int = 256, name: str = "model",
                 on_batch: Callable[[int, float], None] | None = None) -> None:
        if max_batch < 1 or queue_size < 1 or max_wait_ms < 0:
            raise ValueError(f"max_batch and queue_size must be ≥ 1 and max_wait_ms ≥ 0, got {max_batch}, "
                             f"{queue_size}, {max_wait_ms}.")
        self.fn, self.name, self.on_batch = fn, name, on_batch
        self.max_batch, self.max_wait, self.queue_size = max_batch, max_wait_ms / 1000.0, queue_size
        self._queue: deque[_Request[In, Out]] = deque()
        self._queued_items = 0
        self._cond = threading.Condition()
        self._closing = False
        self._concurrent = True  # did the last batch gather several requests? (start by waiting for company)
        self._thread = threading.Thread(target=self._run, name=f"taskfit-batcher[{name}]", daemon=True)
        self._thread.start()

    # ---- client side -------------------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Inputs waiting in the queue (not counting the batch running now)."""
        return self._queued_items

    @property
    def running(self) -> bool:
        """True while requests are accepted."""
        return not self._closing and self._thread.is_alive()

    def submit(self, items: Sequence[In]) -> Future[list[Out]]:
        """Queue one request's inputs; its future resolves to their outputs, in order.

        Raises:
            QueueFull: the queue has no room for ``len(items)`` more inputs.
            ShuttingDown: :meth:`close` was called.
        """
        future: Future[list[Out]] = Future()
        if not items:
            future.set_result([])
            return future
        with self._cond:
            if self._closing:
                raise ShuttingDown(f"{self.name} is shutting down and takes no new requests.")
            if self._queued_items + len(items) > self.queue_size:
                self._drop_cancelled()
            if self._queued_items + len(items) > self.queue_size:
                raise QueueFull(f"{self.name} has {self._queued_items} inputs queued (queue_size "
                                f"{self.queue_size}); retry shortly.")
            self._queue.append(_Request(list(items), future))
            self._queued_items += len(items)
            self._cond.notify()
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new requests, answer the queued ones (for at most ``timeout`` s), then stop the worker.

        Requests still queued after the timeout fail with ShuttingDown, so no caller waits forever.
        """
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(timeout)
        with self._cond:
            left = list(self._queue)
            self._queue.clear()
            self._queued_items = 0
        for req in left:
            if req.future.set_running_or_notify_cancel():
                req.future.set_exception(ShuttingDown(f"{self.name} shut down before answering this request."))

    # ---- worker side -------------------------------------------------------------------------------------
    def _take(self) -> list[_Request[In, Out]] | None:
        """The next batch: the oldest request plus whoever arrives within max_wait, up to max_batch inputs.
        None when closing and the queue is empty."""
        with self._cond:
            while not self._queue:
                if self._closing:
                    return None
                self._cond.wait()
            batch = [self._pop()]
            size = len(batch[0].items)
            # Lone traffic (previous batch one request, none queued now): no company is coming, go at once.
            wait = self.max_wait if (self._concurrent or self._queue) else 0.0
            deadline = time.perf_counter() + wait
            while size < self.max_batch:
                if not self._queue:
                    left = deadline - time.perf_counter()
                    if left <= 0 or self._closing:
                        break
                    self._cond.wait(left)
                    continue
                if size + len(self._queue[0].items) > self.max_batch:
                    break  # it stays whole for the next batch rather than being split across two
                nxt = self._pop()
                batch.append(nxt)
                size += len(nxt.items)
            self._concurrent = len(batch) > 1
        # A caller that gave up (timeout → future cancelled) is skipped: no forward pass for nobody.
        return [r for r in batch if r.future.set_running_or_notify_cancel()]

    def _drop_cancelled(self) -> None:
        """Free the room of requests whose callers gave up (timed out) before their turn."""
        kept = deque(r for r in self._queue if not r.future.cancelled())
        self._queued_items = sum(len(r.items) for r in kept)
        self._queue = kept

    def _pop(self) -> _Request[In, Out]:
        req = self._queue.popleft()
        self._queued_items -= len(req.items)
        return req

    def _run(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._process(batch)

    def _process(self, batch: list[_Request[In, Out]]) -> None:
        items = [x for r in batch for x in r.items]
        start = time.perf_counter()
        try:
            outputs = list(self.fn(items))
            if len(outputs) != len(items):
                raise RuntimeError(f"the model function returned {len(outputs)} outputs for {len(items)} inputs")
        except Exception as e:  # any failure of the model answers this batch, never the worker
            err = BatchError(f"{self.name} failed on a batch of {len(items)} input(s) from {len(batch)} "
                             f"request(s): {type(e).__name__}: {e}")
            err.__cause__ = e
            for r in batch:
                r.future.set_exception(err)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(len(items), time.perf_counter() - start)
        at = 0
        for r in batch:
            r.future.set_result(outputs[at:at + len(r.items)])
            at += len(r.items)
