"""The service in-process (FastAPI TestClient / httpx ASGITransport) over a real trained run: predictions equal
the Predictor's, validation and size errors, keys and scopes, several models and versions, batching under
concurrency, failures answered 429/500/503/504 without hanging, request log, metrics, ONNX runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from conftest import tiny_recipe
from taskfit.errors import IncompatibleError
from taskfit.serve.app import create_app
from taskfit.serve.db import Store
from taskfit.serve.settings import ModelSpec, ServeSettings

TEXTS = ["The striker scored twice as United won the cup final.", "Shares fell sharply after the bank's results.",
         "The minister announced a new election date.", "股市今天大涨，投资者信心增强。"]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, bbc_csv: Path) -> Path:
    """A tiny BERT trained a few steps on real BBC rows (5 topics)."""
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    out = tmp_path_factory.mktemp("serve-runs")
    tree = tiny_recipe(bbc_csv, tiny_model_dir, out, max_steps=6, checkpoint_every=100)
    tree["output"]["name"] = "news"
    return Path(train_recipe(parse_recipe(tree)).run_dir)


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'serve.db'}")
    yield s
    s.close()


def settings(run: Path, **kw: Any) -> ServeSettings:
    models = kw.pop("models", [ModelSpec(name="news", path=run)])
    return ServeSettings(models=models, require_keys=kw.pop("require_keys", False), **kw)


@pytest.fixture()
def client(run: Path, store: Store) -> Iterator[TestClient]:
    with TestClient(create_app(settings(run, max_items=8, queue_size=64, max_text_chars=500), store)) as c:
        yield c


def test_predictions_equal_the_predictor_single_and_batch(client: TestClient, run: Path, store: Store) -> None:
    from taskfit.inference import Predictor

    expected = Predictor.load(run).predict(TEXTS, top_k=2)
    one = client.post("/v1/predict", json={"text": TEXTS[0], "top_k": 2})
    assert one.status_code == 200, one.text
    body = one.json()
    assert (body["model"], body["version"]) == ("news", "1") and len(body["predictions"]) == 1
    many = client.post("/v1/predict", json={"texts": TEXTS, "top_k": 2}).json()["predictions"]
    for got, want in zip([body["predictions"][0], *many], [expected[0], *expected], strict=True):
        assert got["label"] == want["label"] and [t["label"] for t in got["top"]] == [t["label"] for t in want["top"]]
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    ids = [p["request_id"] for p in [body["predictions"][0], *many]]
    assert len(set(ids)) == 5
    # the request log receives every answered input (off the request path: poll briefly)
    deadline = time.time() + 10
    while time.time() < deadline and store.prediction(ids[-1]) is None:
        time.sleep(0.05)
    logged = store.prediction(ids[-1])
    assert logged is not None and logged.label == many[-1]["label"] and logged.model == "news"


def test_models_health_and_openapi(client: TestClient, run: Path, store: Store) -> None:
    from taskfit.inference import Predictor

    models = client.get("/v1/models").json()["models"]
    assert models == [{"name": "news", "version": "1", "task": "text_classification",
                       "labels": Predictor.load(run).labels, "backend": "torch", "stage": "staging",
                       "default": True}]
    assert [(v.name, v.version) for v in store.model_versions()] == [("news", "1")]  # registered at start
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json() == {"status": "ready", "models": [["news", "1"]]}
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    req = schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]
    assert req["properties"]["texts"]["anyOf"][0]["maxItems"] == 8
    assert "/v1/admin/keys" in schema["paths"] and "/v1/feedback" in schema["paths"]


@pytest.mark.parametrize(("payload", "message"), [
    ({"texts": []}, "List should have at least 1 item"),
    ({"text": "   "}, "text is blank"),
    ({"texts": ["ok"] * 9}, "List should have at most 8 items"),
    ({"text": "x" * 501}, "String should have at most 500 characters"),
    ({"text": "a", "texts": ["b"]}, "give exactly one of 'text' (one input) or 'texts'"),
    ({}, "give exactly one of 'text'"),
    ({"text": "a", "top_k": 0}, "Input should be greater than or equal to 1"),
    ({"text": "a", "colour": "red"}, "Extra inputs are not permitted"),
    ({"text": "a", "model": "sport"}, "unknown model 'sport'; this service serves 'news' (version 1)."),
    ({"text": "a", "version": "7"}, "unknown version '7' of model 'news'; served: 'news' (version 1)."),
])
def test_bad_requests_are_422_with_clear_messages(client: TestClient, payload: dict, message: str) -> None:
    res = client.post("/v1/predict", json=payload)
    assert res.status_code == 422, res.text
    assert message in str(res.json()["detail"])


def test_lone_surrogate_is_422_not_a_crash(client: TestClient) -> None:
    res = client.post("/v1/predict", content=b'{"text": "a\\ud800b"}', headers={"content-type": "application/json"})
    assert res.status_code == 422 and "unable to parse raw data as a unicode string" in res.text


def test_oversized_body_is_413_before_parsing(run: Path, store: Store) -> None:
    with TestClient(create_app(settings(run, max_request_bytes=2048), store)) as c:
        big = c.post("/v1/predict", json={"text": "word " * 1000})
        assert big.status_code == 413 and "at most 2048 bytes" in big.json()["detail"]
        streamed = c.post("/v1/predict", content=iter([b'{"text": "', b"y" * 4000, b'"}']),
                          headers={"content-type": "application/json"})
        assert streamed.status_code == 413  # no Content-Length: counted while streaming
        assert c.post("/v1/predict", json={"text": "short"}).status_code == 200
        metrics = c.get("/metrics").text
        assert 'taskfit_http_requests_total{method="POST",route="/v1/predict",status="413"} 2.0' in metrics


def test_keys_scopes_and_metrics(run: Path, store: Store) -> None:
    user = store.create_key("app", scopes=("predict",))
    admin = store.create_key("ops", scopes=("admin",))
    with TestClient(create_app(settings(run, require_keys=True), store)) as c:
        assert c.get("/healthz").status_code == 200 and c.get("/readyz").status_code == 200  # no key needed
        missing = c.post("/v1/predict", json={"text": "a"})
        assert missing.status_code == 401 and "missing API key" in missing.json()["detail"]
        assert c.post("/v1/predict", json={"text": "a"}, headers={"X-API-Key": "tfk_nope"}).status_code == 401
        ok = c.post("/v1/predict", json={"texts": TEXTS[:3]}, headers={"Authorization": f"Bearer {user}"})
        assert ok.status_code == 200
        assert c.get("/metrics", headers={"X-API-Key": user}).status_code == 403  # predict scope only
        text = c.get("/metrics", headers={"X-API-Key": admin}).text
        labels = [p["label"] for p in ok.json()["predictions"]]
        for label in set(labels):
            assert (f'taskfit_predictions_total{{label="{label}",model="news",version="1"}} '
                    f"{float(labels.count(label))}") in text
        assert 'taskfit_batch_size_count{model="news",version="1"}' in text
        assert 'taskfit_queue_depth{model="news",version="1"} 0.0' in text
        assert 'taskfit_http_requests_total{method="POST",route="/v1/predict",status="401"} 2.0' in text
        logged = store.predictions(model="news")
    assert {r.key_name for r in logged} <= {"app"}


def test_public_metrics_flag(run: Path, store: Store) -> None:
    with TestClient(create_app(settings(run, require_keys=True, public_metrics=True), store)) as c:
        assert c.get("/metrics").status_code == 200


def test_masking_engines_are_built_before_the_app_is_ready(run: Path, store: Store) -> None:
    """With a request log, the PII engines load in create_app (before /readyz), not during the first requests;
    without one (log_sample_rate 0) they are not loaded at all."""
    from taskfit.trust import pii

    pii.engines.cache_clear()
    with TestClient(create_app(settings(run, log_sample_rate=0.0), store)):
        assert pii.engines.cache_info().currsize == 0
    app = create_app(settings(run), store)
    assert pii.engines.cache_info().currsize == 1
    with TestClient(app) as c:  # started and stopped cleanly
        assert c.get("/readyz").status_code == 200


def test_versions_default_to_production(run: Path, store: Store) -> None:
    specs = [ModelSpec(name="news", path=run, version="1"), ModelSpec(name="news", path=run, version="2")]
    with TestClient(create_app(settings(run, models=specs), store)) as c:
        c.app.state.models.ttl_s = 0.0  # see promotions at once
        res = c.post("/v1/predict", json={"text": "a"})
        assert res.status_code == 422 and "serves versions 1, 2 and none of them is in production" in res.text
        assert c.post("/v1/predict", json={"text": "a", "version": "1"}).json()["version"] == "1"
        store.promote("news", "2")
        assert c.post("/v1/predict", json={"text": "a"}).json()["version"] == "2"
        assert [m["default"] for m in c.get("/v1/models").json()["models"]] == [False, True]


def test_concurrent_requests_are_batched(run: Path, store: Store) -> None:
    app = create_app(settings(run, max_batch=16, max_wait_ms=50), store)

    async def go() -> list[httpx.Response]:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return list(await asyncio.gather(*[c.post("/v1/predict", json={"text": t})
                                                   for t in TEXTS * 4]))

    answers = asyncio.run(go())
    assert [r.status_code for r in answers] == [200] * 16
    assert [r.json()["predictions"][0]["label"] for r in answers[:4]] == \
        [r.json()["predictions"][0]["label"] for r in answers[4:8]]
    assert _sample(app, "taskfit_batch_size_sum") == 16  # every input went through the batcher once
    assert _sample(app, "taskfit_batch_size_count") < 16  # in fewer forward passes than requests


def _sample(app: Any, name: str) -> float:
    for family in app.state.metrics.registry.collect():
        for s in family.samples:
            if s.name == name:
                return float(s.value)
    raise KeyError(name)


class Gate:
    """Wraps a served model's batch function so a test can hold the worker (a plain function, not a mock)."""

    def __init__(self, fn: Any) -> None:
        self.fn, self.open, self.entered = fn, threading.Event(), threading.Event()

    def __call__(self, items: list) -> list:
        self.entered.set()
        self.open.wait(10)
        return self.fn(items)


def test_full_queue_429_timeout_504_and_shutdown_503(run: Path, store: Store) -> None:
    app = create_app(settings(run, queue_size=4, max_items=4, max_batch=1, request_timeout_s=1.0), store)
    model = app.state.models.by_key[("news", "1")]
    gate = model.batcher.fn = Gate(model.batcher.fn)

    async def go() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            held = asyncio.create_task(c.post("/v1/predict", json={"text": "first"}))
            await asyncio.to_thread(gate.entered.wait, 5)
            queued = asyncio.create_task(c.post("/v1/predict", json={"texts": ["a", "b", "c", "d"]}))
            await asyncio.sleep(0.1)
            start = time.perf_counter()
            full = await c.post("/v1/predict", json={"text": "one more"})
            assert full.status_code == 429 and full.headers["retry-after"] == "1"
            assert "4 inputs queued (queue_size 4)" in full.json()["detail"]
            assert time.perf_counter() - start < 0.5
            timed_out = await held
            assert timed_out.status_code == 504 and "did not answer within 1 s" in timed_out.text
            assert (await queued).status_code == 504
            gate.open.set()
            assert (await c.post("/v1/predict", json={"text": "again"})).status_code == 200
            model.batcher.close()
            closed = await c.post("/v1/predict", json={"text": "late"})
            assert closed.status_code == 503 and "shutting down" in closed.text
            assert (await c.get("/readyz")).status_code == 503

    asyncio.run(go())
    assert _sample(app, "taskfit_rejected_total") >= 1


def test_model_failure_is_500_for_that_batch_only(run: Path, store: Store) -> None:
    with TestClient(create_app(settings(run), store)) as c:
        batcher = c.app.state.models.by_key[("news", "1")].batcher
        good = batcher.fn

        def broken(items: list) -> list:
            raise RuntimeError("tokenizer exploded")

        batcher.fn = broken
        res = c.post("/v1/predict", json={"text": "a"})
        assert res.status_code == 500
        assert res.json()["detail"] == ("news v1 failed on a batch of 1 input(s) from 1 request(s): RuntimeError: "
                                        "tokenizer exploded")
        batcher.fn = good
        assert c.post("/v1/predict", json={"text": "a"}).status_code == 200


def test_console_only_app_with_extra_router(tmp_path: Path, store: Store) -> None:
    router = APIRouter()

    @router.get("/console/ping")
    def ping() -> dict[str, str]:
        return {"pong": "yes"}

    with TestClient(create_app(ServeSettings(models=[], require_keys=False), store, [router])) as c:
        assert c.get("/console/ping").json() == {"pong": "yes"}
        assert c.get("/v1/models").json() == {"models": []}
        assert c.get("/readyz").status_code == 200
        res = c.post("/v1/predict", json={"text": "a"})
        assert res.status_code == 422 and "this service serves no models" in res.text


def test_backend_mismatch_is_refused_before_loading(run: Path, store: Store) -> None:
    with pytest.raises(IncompatibleError, match=r"holds a torch model, but backend 'onnx' was asked for; make an "
                                                r"ONNX copy with `taskfit compress RUN_DIR --method onnx`"):
        create_app(settings(run, models=[ModelSpec(name="news", path=run, backend="onnx")]), store)


# The tolerances of tests/compress: graph optimisation only reorders float maths; int8 weights move
# probabilities by up to a few hundredths.
TOLERANCE = {"onnx": 1e-4, "onnx-int8": 0.08, "torch-int8": 0.08}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["onnx", "onnx-int8", "torch-int8"])
def test_compressed_copy_serves_the_same_labels(run: Path, store: Store, method: str) -> None:
    """Every artefact of `taskfit compress` serves next to its source: same labels, probabilities within the
    tolerance of tests/compress, and the backend it holds in /v1/models."""
    from taskfit.compress import compress_run

    copy = compress_run(run, method, rows=8).run_dir
    backend = "torch" if method == "torch-int8" else "onnx"
    specs = [ModelSpec(name="news", path=run), ModelSpec(name="small", path=copy, backend=backend)]
    with TestClient(create_app(settings(run, models=specs), store)) as c:
        got = {name: c.post("/v1/predict", json={"texts": TEXTS, "model": name, "top_k": 5}).json()
               for name in ("news", "small")}
        backends = {m["name"]: m["backend"] for m in c.get("/v1/models").json()["models"]}
    assert backends == {"news": "torch", "small": "torch-int8" if method == "torch-int8" else "onnx"}
    src, dst = got["news"]["predictions"], got["small"]["predictions"]
    assert [p["label"] for p in src] == [p["label"] for p in dst]
    for a, b in zip(src, dst, strict=True):
        pa = {t["label"]: t["score"] for t in a["top"]}
        pb = {t["label"]: t["score"] for t in b["top"]}
        assert float(np.max(np.abs([pa[k] - pb[k] for k in pa]))) < TOLERANCE[method]
