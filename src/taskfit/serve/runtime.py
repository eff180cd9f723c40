"""What the service holds at run time: the loaded model versions (each behind a MicroBatcher), how a request
picks one (:class:`ModelTable`), and the background sink that hands answered inputs to the request log and
the monitor (:class:`RecordSink`)."""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskfit.errors import IncompatibleError
from taskfit.inference import Predictor, model_dir_of
from taskfit.serve.batching import MicroBatcher
from taskfit.serve.metrics import ServeMetrics
from taskfit.serve.records import PredictionRecord
from taskfit.serve.settings import ModelSpec, ServeSettings

if TYPE_CHECKING:
    from taskfit.serve.db import Store
    from taskfit.serve.monitor import Monitor

__all__ = ["ModelTable", "RecordSink", "ServedModel", "UnknownModel", "backend_of", "load_models"]

log = logging.getLogger("taskfit.serve")

Item = tuple[str, int]  # (text, top_k)


@dataclass
class ServedModel:
    """One loaded model version and its batcher."""

    spec: ModelSpec
    predictor: Predictor
    backend: str  # torch, torch-int8 or onnx: what the directory holds
    batcher: MicroBatcher[Item, dict[str, Any]]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def key(self) -> tuple[str, str]:
        return self.spec.name, self.spec.version


def backend_of(spec: ModelSpec) -> str:
    """What ``spec.path`` holds (torch, torch-int8, onnx), checked against ``spec.backend`` before loading.

    Raises:
        NotFittedError: no finished model there.
        IncompatibleError: the directory holds another backend than the one asked for.
    """
    meta = json.loads((model_dir_of(spec.path) / "taskfit.json").read_text(encoding="utf-8"))
    held = {"onnx": "onnx", "torch-int8": "torch-int8"}.get(str(meta.get("backend")), "torch")
    family = "onnx" if held == "onnx" else "torch"
    if spec.backend not in ("auto", family):
        fix = ("make an ONNX copy with `taskfit compress RUN_DIR --method onnx` (or onnx-int8) and serve that"
               if spec.backend == "onnx" else "serve the source run, or use --backend auto")
        raise IncompatibleError(f"model {spec.name!r} at {str(spec.path)!r} holds a {held} model, but backend "
                                f"{spec.backend!r} was asked for; {fix}.")
    return held


def _forward(predictor: Predictor) -> Callable[[list[Item]], list[dict[str, Any]]]:
    """The batch function: one predict call per distinct top_k in the batch (almost always one)."""
    def run(items: list[Item]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in items]
        groups: dict[int, list[int]] = {}
        for i, (_, k) in enumerate(items):
            groups.setdefault(k, []).append(i)
        for k, idx in groups.items():
            for i, pred in zip(idx, predictor.predict([items[i][0] for i in idx], top_k=k), strict=True):
                out[i] = pred
        return out

    return run


def read_headline(path: Path) -> dict[str, float]:
    """The numeric test (else validation) scores of a run's results.json, for its registry entry."""
    mdir = model_dir_of(path)
    found = next((p for p in (mdir.parent / "results.json", mdir / "results.json") if p.is_file()), None)
    if found is None:
        return {}
    results = json.loads(found.read_text(encoding="utf-8"))
    split = results.get("test") or results.get("valid") or {}
    return {k: float(v) for k, v in split.items() if isinstance(v, int | float) and not isinstance(v, bool)}


def load_models(settings: ServeSettings, store: Store, metrics: ServeMetrics) \
        -> tuple[list[ServedModel], dict[str, Monitor]]:
    """Check every backend first (cheap), then load each model, warm it up, register it in the store if
    missing, start its batcher and build one Monitor per model name."""
    from taskfit.serve.monitor import Monitor

    backends = [backend_of(spec) for spec in settings.models]
    served: list[ServedModel] = []
    monitors: dict[str, Monitor] = {}
    try:
        for spec, backend in zip(settings.models, backends, strict=True):
            predictor = Predictor.load(spec.path)
            if not predictor.task.text_input:
                raise IncompatibleError(f"model {spec.name!r} is a {predictor.task.name} model; taskfit serve "
                                        "answers text inputs only.")
            predictor.predict(["warm-up 预热"], top_k=1)  # first-call allocations off the first request
            registered = {v.version: v for v in store.model_versions(spec.name)}
            path = str(spec.path.resolve())
            if spec.version not in registered:
                store.register_model(spec.name, spec.version, path, metrics=read_headline(spec.path))
            elif registered[spec.version].path != path:
                log.warning("registry: %s v%s is registered at %s; serving %s", spec.name, spec.version,
                            registered[spec.version].path, path)
            batcher: MicroBatcher[Item, dict[str, Any]] = MicroBatcher(
                _forward(predictor), settings.max_batch, settings.max_wait_ms, settings.queue_size,
                name=f"{spec.name} v{spec.version}", on_batch=metrics.batch_observer(spec.name, spec.version))
            served.append(ServedModel(spec, predictor, backend, batcher))
            metrics.track_queue(spec.name, spec.version, _depth_of(batcher))
            if spec.name not in monitors:  # versions of one name share its monitor (the first one's reference)
                monitors[spec.name] = Monitor.for_model(spec.name, spec.path, settings.monitor, store, predictor)
    except BaseException:
        for m in served:
            m.batcher.close(0)
        raise
    return served, monitors


def _depth_of(batcher: MicroBatcher[Item, dict[str, Any]]) -> Callable[[], float]:
    return lambda: float(batcher.depth)


class UnknownModel(Exception):
    """A request names a model or version this service does not serve (answered 422)."""

    def __init__(self, message: str, field: str, value: str | None) -> None:
        super().__init__(message)
        self.field, self.value = field, value


class ModelTable:
    """Served versions by (name, version); a request without a version gets the registry's production version
    when it is served (looked up at most every ``ttl_s`` seconds, so a promotion takes effect without restart),
    else the only served version of that name."""

    def __init__(self, served: Sequence[ServedModel], store: Store, ttl_s: float = 2.0) -> None:
        self.served = list(served)
        self.by_key = {m.key: m for m in served}
        self.store, self.ttl_s = store, ttl_s
        self._production: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def names(self) -> list[str]:
        return list(dict.fromkeys(m.name for m in self.served))

    def versions(self, name: str) -> list[str]:
        return [m.version for m in self.served if m.name == name]

    def served_text(self) -> str:
        """``'news' (versions 1, 2), 'intents' (version 1)`` — for error messages."""
        parts = []
        for n in self.names():
            vs = self.versions(n)
            parts.append(f"{n!r} (version{'s' if len(vs) > 1 else ''} {', '.join(vs)})")
        return ", ".join(parts) or "no models"

    def production(self, name: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._production.get(name)
            if cached is not None and now - cached[0] < self.ttl_s:
                return cached[1]
        prod = self.store.production(name)
        version = prod.version if prod is not None else None
        with self._lock:
            self._production[name] = (now, version)
        return version

    def resolve(self, name: str | None, version: str | None) -> ServedModel:
        """The served model for a request. Raises UnknownModel naming what is served."""
        if name is None:
            names = self.names()
            if len(names) != 1:
                raise UnknownModel(f"this service serves {self.served_text()}; say which with 'model'.", "model",
                                   None)
            name = names[0]
        versions = self.versions(name)
        if not versions:
            raise UnknownModel(f"unknown model {name!r}; this service serves {self.served_text()}.", "model", name)
        if version is None:
            prod = self.production(name) if len(versions) > 1 else versions[0]
            if prod not in versions:
                raise UnknownModel(f"model {name!r} serves versions {', '.join(versions)} and none of them is in "
                                   "production; say which with 'version' (or promote one).", "version", None)
            version = prod
        if (name, version) not in self.by_key:
            raise UnknownModel(f"unknown version {version!r} of model {name!r}; served: {self.served_text()}.",
                               "version", version)
        return self.by_key[(name, version)]

    def describe(self) -> list[dict[str, Any]]:
        """GET /v1/models: every served version with its task, labels, backend, stage and default flag."""
        out = []
        for m in self.served:
            stages = {v.version: v.stage for v in self.store.model_versions(m.name)}
            default = len(self.versions(m.name)) == 1 or self.production(m.name) == m.version
            out.append({"name": m.name, "version": m.version, "task": m.predictor.task.name,
                        "labels": m.predictor.labels, "backend": m.backend, "stage": stages.get(m.version),
                        "default": default})
        return out


class RecordSink:
    """A background thread writing answered inputs to the request log (sampled) and the monitors (all). A full
    queue drops records (counted in ``taskfit_log_dropped_total``) rather than slowing answers down."""

    def __init__(self, store: Store, monitors: dict[str, Monitor], sample_rate: float, metrics: ServeMetrics,
                 maxsize: int = 20_000) -> None:
        self.store, self.monitors, self.sample_rate, self.metrics = store, monitors, sample_rate, metrics
        self._queue: queue.Queue[list[PredictionRecord] | None] = queue.Queue(maxsize)
        self._rng = random.Random(0)
        self._thread = threading.Thread(target=self._run, name="taskfit-record-sink", daemon=True)
        self._thread.start()

    def put(self, records: list[PredictionRecord]) -> None:
        """Queue records without waiting."""
        try:
            self._queue.put_nowait(records)
        except queue.Full:
            self.metrics.log_dropped.inc(len(records))

    def close(self, timeout: float = 10.0) -> None:
        """Write what is queued, then stop."""
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            batch, stop = list(first or []), first is None
            while not stop and len(batch) < 1000:  # one database transaction for whatever piled up
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                stop = more is None
                batch += more or []
            if batch:
                self._write(batch)
            if stop:
                return

    def _write(self, records: list[PredictionRecord]) -> None:
        sampled = records if self.sample_rate >= 1 else [r for r in records if self._rng.random() < self.sample_rate]
        try:
            if sampled:
                self.store.log_predictions(sampled)
        except Exception:  # a failing log must not stop the service; it is reported
            log.exception("request log: could not write %d records", len(sampled))
        for name, monitor in self.monitors.items():
            mine = [r for r in records if r.model == name]
            if mine:
                try:
                    monitor.observe(mine)
                except Exception:
                    log.exception("monitor %s: observe failed", name)
