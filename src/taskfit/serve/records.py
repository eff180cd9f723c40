"""The record of one served prediction, passed from the service to the request log and the monitor."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["PredictionRecord", "RequestIds"]


@dataclass(frozen=True)
class PredictionRecord:
    """One input answered by ``/v1/predict``.

    Attributes:
        request_id: id returned to the caller (one per input row, so feedback can name the row).
        model: served model name; ``version`` its registry version.
        text: the input text as received (the request log masks PII before storing it).
        label: the top predicted label (``None`` for tasks without labels, e.g. regression).
        confidence: probability of ``label`` (``None`` when the task has none).
        outputs: the full JSON answer for the row (top-k labels, scores, ...).
        latency_ms: time from enqueue to answer for this row.
        key_name: the API key's name (``None`` when keys are off).
        created_at: UTC time of the answer.
    """

    request_id: str
    model: str
    version: str
    text: str
    label: str | None
    confidence: float | None
    outputs: dict[str, Any]
    latency_ms: float
    key_name: str | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))


class RequestIds:
    """Unguessable request ids (32 hex characters, 128 random bits each, like ``uuid4().hex``) drawn from the OS
    random source 256 at a time: one ``getrandom`` call per id releases the GIL on every served input, and under
    load the event loop then waits for the worker threads to hand it back."""

    def __init__(self, per_draw: int = 256) -> None:
        self._per_draw = per_draw
        self._pool: list[str] = []
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            if not self._pool:
                raw = os.urandom(16 * self._per_draw).hex()
                self._pool = [raw[i:i + 32] for i in range(0, len(raw), 32)]
            return self._pool.pop()
