"""The REST service: ``create_app(settings)`` → a FastAPI app serving one or more trained models.

Routes: ``POST /v1/predict`` (one text or a batch; picks ``model``/``version``), ``GET /v1/models``,
``GET /healthz`` and ``GET /readyz`` (no key), ``GET /metrics`` (Prometheus), the admin routes of
:mod:`taskfit.serve.admin`, the feedback / drift / alert routes of :mod:`taskfit.serve.monitor`, and
``/docs`` + ``/openapi.json``. Each model version has its own :class:`MicroBatcher`; answered inputs become
:class:`PredictionRecord` s that a background thread hands to the request log and the monitor, so neither
database writes nor drift statistics sit on the request path.

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the endpoint signatures
at run time, and the request model is built per app (its limits come from the settings).
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, MutableMapping, Sequence
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, FastAPI
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, model_validator
from starlette.routing import Match

from taskfit.errors import TaskfitError
from taskfit.serve.auth import Auth
from taskfit.serve.batching import BatchError, QueueFull, ShuttingDown
from taskfit.serve.db import Store
from taskfit.serve.limits import BodyLimitMiddleware
from taskfit.serve.metrics import CONTENT_TYPE_LATEST, MetricsMiddleware, ServeMetrics
from taskfit.serve.records import PredictionRecord, RequestIds
from taskfit.serve.runtime import ModelTable, RecordSink, UnknownModel, load_models
from taskfit.serve.settings import ServeSettings

__all__ = ["create_app"]

log = logging.getLogger("taskfit.serve")

THREADPOOL_SIZE = 4  # AnyIO worker threads for sync dependencies and routes (see lifespan)

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "Missing or invalid API key."},
    403: {"description": "The key lacks the scope."},
    413: {"description": "Request body larger than max_request_bytes."},
    429: {"description": "Queue full, key rate limit or quota reached (see Retry-After)."},
    500: {"description": "The model failed on the batch this request was in."},
    503: {"description": "The service is shutting down."},
    504: {"description": "Not answered within request_timeout_s."},
}


def _text_check(value: str) -> str:
    if not value.strip():
        raise ValueError("text is blank; give at least one non-space character")
    return value


def _request_model(settings: ServeSettings) -> type[BaseModel]:
    """The /v1/predict body, with this service's limits in its schema (so /docs and clients see them)."""
    text_type = Annotated[str, StringConstraints(min_length=1, max_length=settings.max_text_chars),
                          AfterValidator(_text_check)]

    class PredictRequest(BaseModel):
        """One text (``text``) or a batch (``texts``), for an optional model name and version."""

        model_config = ConfigDict(extra="forbid", json_schema_extra={
            "examples": [{"text": "The striker scored twice in the final."},
                         {"texts": ["Shares fell 3% after the results.", "股市今天大涨。"], "top_k": 2}]})

        text: text_type | None = Field(None, description="One input text.")  # type: ignore[valid-type]
        texts: list[text_type] | None = Field(  # type: ignore[valid-type]
            None, min_length=1, max_length=settings.max_items, description="Several input texts, answered in order.")
        model: str | None = Field(None, max_length=100, description="Served model name (GET /v1/models); "
                                  "optional when one model is served.")
        version: str | None = Field(None, max_length=50, description="Model version; default: the registry's "
                                    "production version, else the only served one.")
        top_k: int = Field(3, ge=1, le=settings.max_top_k, description="How many labels with scores to return.")

        @model_validator(mode="after")
        def _one_input(self) -> "PredictRequest":
            if (self.text is None) == (self.texts is None):
                raise ValueError("give exactly one of 'text' (one input) or 'texts' (a list of inputs)")
            return self

        def inputs(self) -> list[str]:
            return [self.text] if self.text is not None else list(self.texts or [])

    return PredictRequest


class LabelScore(BaseModel):
    label: str
    score: float


class Prediction(BaseModel):
    """One answered input: the task's output (label, score, top... for classifiers) and its request id."""

    model_config = ConfigDict(extra="allow")
    request_id: str = Field(description="Id of this input, for POST /v1/feedback.")
    label: str | None = None
    score: float | None = None
    top: list[LabelScore] | None = None


class PredictResponse(BaseModel):
    model: str
    version: str
    predictions: list[Prediction]


def warm_up_masking() -> None:
    """Build the PII engines (Presidio, jieba) now, before the server says it is ready. Built lazily, they
    would load during the first logged requests and hold the interpreter for seconds while traffic runs.
    Without the PII libraries nothing happens here; logging reports that error where it arises."""
    from taskfit.serve.db import mask_record

    with contextlib.suppress(TaskfitError):
        mask_record("warm-up 预热 user@example.com")


def create_app(settings: ServeSettings, store: Store | None = None, extra_routers: Sequence[APIRouter] = ()) \
        -> FastAPI:
    """Load the models, open the store and build the app (models load here, before the server listens).

    Args:
        settings: what to serve and how.
        store: an open Store (the caller closes it); default: open ``settings.default_db_url()`` (closed at
            shutdown).
        extra_routers: more routers to include (the web console).

    Raises:
        TaskfitError: a model cannot be loaded or does not match its backend (before anything is served).
    """
    from taskfit.serve.admin import admin_router
    from taskfit.serve.monitor import monitor_router

    if settings.threads is not None:
        import torch

        torch.set_num_threads(settings.threads)  # process-wide: every model's worker thread uses it
    own_store = store is None
    store = store if store is not None else Store(settings.default_db_url())
    auth = Auth(store, settings.require_keys)
    metrics = ServeMetrics()
    try:
        served, monitors = load_models(settings, store, metrics)
    except BaseException:
        if own_store:
            store.close()
        raise
    table = ModelTable(served, store)
    if settings.log_sample_rate > 0 and served:  # a console without models logs no predictions
        warm_up_masking()
    sink = RecordSink(store, monitors, settings.log_sample_rate, metrics)
    request_ids = RequestIds()
    state = {"ready": True}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # Sync dependencies (key checks) run in AnyIO's thread pool, 40 threads by default. Under many concurrent
        # requests those threads and the batch workers convoy on the GIL and throughput collapses; a few
        # threads are enough for key lookups that take well under a millisecond.
        anyio.to_thread.current_default_thread_limiter().total_tokens = THREADPOOL_SIZE
        for monitor in monitors.values():
            monitor.start()  # alert rules every check_every_s
        yield
        state["ready"] = False  # /readyz says 503 while the queues drain
        for m in served:
            await asyncio.to_thread(m.batcher.close, settings.request_timeout_s)
        await asyncio.to_thread(sink.close)
        for monitor in monitors.values():
            monitor.stop()
        if own_store:
            store.close()

    app = FastAPI(title="taskfit serve", version="1", lifespan=lifespan,
                  description="Predictions from fine-tuned taskfit models, with API keys, a model registry, "
                  "request logs, feedback, drift monitoring and Prometheus metrics.")
    app.state.settings, app.state.store, app.state.auth, app.state.models = settings, store, auth, table
    app.state.metrics, app.state.monitors = metrics, monitors
    PredictRequest = _request_model(settings)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Any, exc: RequestValidationError) -> Response:
        # ensure_ascii: an input echoed back may hold a lone surrogate ("\ud800"), which UTF-8 cannot encode
        body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(TaskfitError)
    async def _user_error(_: Any, exc: TaskfitError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=422)

    @app.get("/healthz", tags=["operations"], summary="The process is up.")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Models loaded and accepting requests (503 otherwise).",
             responses={503: {"description": "Not ready (shutting down)."}})
    async def readyz() -> JSONResponse:
        ok = state["ready"] and all(m.batcher.running for m in served)
        body = {"status": "ready" if ok else "not ready", "models": [m.key for m in served]}
        return JSONResponse(body, status_code=200 if ok else 503)

    predict_scope = Depends(auth.require("predict"))

    @app.get("/v1/models", tags=["predict"], summary="Served models and versions.",
             responses={k: v for k, v in _ERRORS.items() if k in (401, 403, 429)})
    async def list_models(_: Any = predict_scope) -> dict[str, Any]:
        return {"models": await asyncio.to_thread(table.describe)}

    @app.post("/v1/predict", tags=["predict"], response_model=PredictResponse, responses=_ERRORS,
              summary="Predict for one text ({'text'}) or several ({'texts'}).")
    async def predict(body: PredictRequest, caller: Any = predict_scope) -> Any:  # type: ignore[valid-type]
        texts = body.inputs()  # type: ignore[attr-defined]
        try:
            # inline: only a multi-version name reads the registry, at most every 2 s
            model = table.resolve(body.model, body.version)  # type: ignore[attr-defined]
        except UnknownModel as e:
            raise RequestValidationError([{"loc": ("body", e.field), "msg": str(e), "type": "value_error",
                                           "input": e.value}]) from None
        start = time.perf_counter()
        try:
            future = model.batcher.submit([(t, body.top_k) for t in texts])  # type: ignore[attr-defined]
        except QueueFull as e:
            metrics.rejected.labels(*model.key, "queue_full").inc()
            return JSONResponse({"detail": str(e)}, status_code=429, headers={"Retry-After": "1"})
        except ShuttingDown as e:
            metrics.rejected.labels(*model.key, "shutting_down").inc()
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "5"})
        try:
            outputs = await asyncio.wait_for(asyncio.wrap_future(future), settings.request_timeout_s)
        except TimeoutError:
            future.cancel()
            return JSONResponse({"detail": f"{model.name} did not answer within {settings.request_timeout_s:g} s "
                                 f"({len(texts)} input(s)); the service is overloaded, retry later."},
                                status_code=504)
        except ShuttingDown as e:
            return JSONResponse({"detail": str(e)}, status_code=503, headers={"Retry-After": "5"})
        except BatchError as e:
            if isinstance(e.__cause__, TaskfitError):
                return JSONResponse({"detail": str(e.__cause__)}, status_code=422)
            log.error("%s", e, exc_info=e.__cause__)
            return JSONResponse({"detail": str(e)}, status_code=500)
        latency_ms = (time.perf_counter() - start) * 1000.0
        preds, records = [], []
        for text, out in zip(texts, outputs, strict=True):
            rid = request_ids.next()
            preds.append({"request_id": rid, **out})
            label = out.get("label") if isinstance(out.get("label"), str) else None
            score = out.get("score") if isinstance(out.get("score"), int | float) else None
            records.append(PredictionRecord(rid, model.name, model.version, text, label, score, out, latency_ms,
                                            getattr(caller, "name", None)))
            metrics.predictions.labels(*model.key, label if label is not None else "").inc()
        sink.put(records)
        return {"model": model.name, "version": model.version, "predictions": preds}

    metrics_deps = [] if settings.public_metrics else [Depends(auth.require("admin"))]

    @app.get("/metrics", tags=["operations"], dependencies=metrics_deps, response_class=Response,
             summary="Prometheus metrics (scope admin unless public_metrics).")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.include_router(admin_router(store, auth))
    app.include_router(monitor_router(monitors, store, auth))
    for router in extra_routers:
        app.include_router(router)

    def route_of(scope: MutableMapping[str, Any]) -> str:
        for route in app.router.routes:
            match, _ = route.matches(scope)
            if match != Match.NONE:
                return str(getattr(route, "path", "unmatched"))
        return "unmatched"

    app.add_middleware(BodyLimitMiddleware, limit=settings.max_request_bytes)
    app.add_middleware(MetricsMiddleware, metrics=metrics, route_of=route_of)
    log.info("serving %s", ", ".join(f"{n} v{v}" for n, v in (m.key for m in served)) or "no models")
    return app

