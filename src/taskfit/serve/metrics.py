"""Prometheus metrics of one service (own CollectorRegistry, so several apps in one process never collide).

Names (all prefixed ``taskfit_``): ``http_requests_total{route,method,status}``,
``http_request_seconds{route}`` (histogram), ``batch_size{model,version}`` and ``batch_seconds{model,version}``
(histograms), ``queue_depth{model,version}`` (gauge), ``predictions_total{model,version,label}``,
``rejected_total{model,version,reason}`` (queue full / shutting down), ``log_dropped_total`` (records the
request log could not keep up with). Routes are labelled by their template (``/v1/predict``), never by the raw
path, so a scanner cannot blow up the label set.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "MetricsMiddleware", "ServeMetrics"]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
                   Awaitable[None]]


class ServeMetrics:
    """The service's collectors in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("taskfit_http_requests", "HTTP requests answered.", ["route", "method", "status"],
                                registry=r)
        self.latency = Histogram("taskfit_http_request_seconds", "Time to answer an HTTP request.", ["route"],
                                 buckets=_LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("taskfit_batch_size", "Inputs per forward pass.", ["model", "version"],
                                    buckets=_BATCH_BUCKETS, registry=r)
        self.batch_seconds = Histogram("taskfit_batch_seconds", "Time of one forward pass.", ["model", "version"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("taskfit_queue_depth", "Inputs waiting for a forward pass.", ["model", "version"],
                                 registry=r)
        self.predictions = Counter("taskfit_predictions", "Answered inputs by top label.",
                                   ["model", "version", "label"], registry=r)
        self.rejected = Counter("taskfit_rejected", "Requests refused before the model ran.",
                                ["model", "version", "reason"], registry=r)
        self.log_dropped = Counter("taskfit_log_dropped", "Prediction records dropped because the request log "
                                   "fell behind.", registry=r)

    def track_queue(self, model: str, version: str, depth: Callable[[], float]) -> None:
        """The queue-depth gauge of a model reads ``depth()`` at each scrape."""
        self.queue_depth.labels(model, version).set_function(depth)

    def batch_observer(self, model: str, version: str) -> Callable[[int, float], None]:
        """A MicroBatcher ``on_batch`` callback recording batch size and time."""
        size, seconds = self.batch_size.labels(model, version), self.batch_seconds.labels(model, version)

        def observe(n: int, elapsed: float) -> None:
            size.observe(n)
            seconds.observe(elapsed)

        return observe

    def render(self) -> bytes:
        """The text exposition format of every collector."""
        return generate_latest(self.registry)


class MetricsMiddleware:
    """ASGI middleware counting every HTTP answer by route template, method and status, with its latency.

    Args:
        app: the wrapped ASGI app.
        metrics: where to count.
        route_of: maps a request scope to its route template (``"unmatched"`` for unknown paths).
    """

    def __init__(self, app: ASGIApp, metrics: ServeMetrics, route_of: Callable[[Scope], str]) -> None:
        self.app, self.metrics, self.route_of = app, metrics, route_of

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start, status = time.perf_counter(), [500]

        async def send_status(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = self.route_of(scope)
            self.metrics.requests.labels(route, scope.get("method", ""), str(status[0])).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - start)
