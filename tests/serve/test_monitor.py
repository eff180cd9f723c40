"""Monitor: windows, alert rules with cool-down, a real webhook receiver, background checks, the reference of a
real run, and the feedback / drift / alerts routes (S2's Store on a SQLite file, S2's Auth)."""

from __future__ import annotations

import http.server
import json
import logging
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest

from conftest import tiny_recipe
from taskfit.config import MonitorConfig
from taskfit.errors import ConfigError
from taskfit.serve.db import Store
from taskfit.serve.drift import REFERENCE_FILE, Reference
from taskfit.serve.monitor import Monitor
from taskfit.serve.records import PredictionRecord

LABELS = ["negative", "neutral", "positive"]


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'serve.db'}")
    yield s
    s.close()


@pytest.fixture(scope="module")
def texts(bbc_csv: Path) -> list[str]:
    return pd.read_csv(bbc_csv)["text"].astype(str).tolist()


def _reference(texts: list[str]) -> Reference:
    held = texts[150:225]
    labels = [LABELS[i % 3] for i in range(len(held))]
    return Reference.build(texts[:150], held, labels, [_confidence(i) for i in range(len(held))], LABELS)


def _confidence(i: int) -> float:
    return 0.8 + 0.002 * (i % 50)  # the reference's confidences (0.8 … 0.898)


def _records(texts: list[str], labels: list[str], age_minutes: float = 0.0, model: str = "news",
             confidence: float | None = None) -> list[PredictionRecord]:
    at = datetime.now(UTC) - timedelta(minutes=age_minutes)
    return [PredictionRecord(uuid.uuid4().hex, model, "1", t, lab, confidence or _confidence(i), {"label": lab}, 1.0,
                             None, at) for i, (t, lab) in enumerate(zip(texts, labels, strict=True))]


def _monitor(texts: list[str], store: Store | None, **settings: object) -> Monitor:
    cfg = {"min_count": 20, "window_minutes": 60, "cooldown_minutes": 10, **settings}
    return Monitor("news", MonitorConfig.model_validate(cfg), _reference(texts), LABELS, store)


NEG_RULE = {"name": "negative_surge", "kind": "label_share", "label": "negative", "above": 0.4, "window_minutes": 10}


def test_label_share_rule_window_min_count_and_cooldown(texts, store):
    mon = _monitor(texts, store, rules=[NEG_RULE])
    mon.observe(_records(texts[225:255], ["negative"] * 30, age_minutes=20))  # outside the rule's 10 minutes
    mon.observe(_records(texts[255:265], ["negative"] * 10))
    assert mon.evaluate(mon.settings.rules[0])[0] is None  # 10 in the window < min_count 20: not judged
    assert mon.check() == []
    mon.observe(_records(texts[265:285], ["negative"] * 5 + ["positive"] * 15))
    value, what, count = mon.evaluate(mon.settings.rules[0])
    assert (value, count) == (pytest.approx(15 / 30), 30) and what == "share of label 'negative'"
    fired = mon.check()
    assert [(a.rule, a.model, a.value) for a in fired] == [("negative_surge", "news", pytest.approx(0.5))]
    assert "above 0.4" in fired[0].message and "last 10 min (30 predictions)" in fired[0].message
    assert mon.check() == []  # cool-down: the same rule does not fire again within 10 minutes
    assert [a.rule for a in store.alerts()] == ["negative_surge"]
    mon.settings.cooldown_minutes = 0
    assert len(mon.check()) == 1 and len(store.alerts()) == 2
    # the 60-minute drift window counts every record, the 10-minute rule window did not
    assert mon.drift()["count"] == 60


def test_below_rules_volume_and_confidence(texts, store):
    mon = _monitor(texts, store, rules=[
        {"name": "quiet", "kind": "volume", "below": 50},
        {"name": "unsure", "kind": "confidence_mean", "below": 0.6},
        {"name": "busy", "kind": "volume", "above": 1000}])
    mon.observe(_records(texts[225:255], ["positive"] * 30, confidence=0.55))
    assert sorted(a.rule for a in mon.check()) == ["quiet", "unsure"]


def test_rules_are_checked_against_the_model():
    with pytest.raises(ConfigError, match=r"monitor.rules.0.label: 'angry' is not a label of model 'news'; "
                                          r"expected one of \['negative', 'neutral', 'positive'\]"):
        Monitor("news", MonitorConfig(rules=[{**NEG_RULE, "label": "angry"}]), None, LABELS, None)
    with pytest.raises(ValueError, match=r"rule 'x' \(label_share\) needs a threshold"):
        MonitorConfig(rules=[{"name": "x", "kind": "label_share", "label": "negative"}])
    with pytest.raises(ValueError, match="KS needs a numeric feature"):
        MonitorConfig(rules=[{"name": "x", "kind": "drift_ks", "feature": "language"}])
    with pytest.raises(ValueError, match="webhook must be an http"):
        MonitorConfig(webhook="ftp://example.org/hook")


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: ClassVar[list[dict]] = []

    def do_POST(self) -> None:
        n = int(self.headers["Content-Length"])
        type(self).bodies.append(json.loads(self.rfile.read(n)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver():
    _Receiver.bodies = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts", _Receiver.bodies
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_chinese_traffic_at_an_english_model_fires_drift_to_the_webhook(texts, zh_csv, store, receiver):
    url, bodies = receiver
    zh = pd.read_csv(zh_csv)["text"].astype(str).tolist()
    mon = _monitor(texts, store, webhook=url, rules=[{"name": "drift", "kind": "drift_psi", "above": 0.2},
                                                     {"name": "length_ks", "kind": "drift_ks", "feature": "length"}])
    mon.observe(_records(texts[225:275], [LABELS[i % 3] for i in range(50)]))
    calm = mon.drift()
    assert calm["status"] == "ok" and calm["count"] == 50, calm
    assert mon.check() == [] and bodies == []

    mon2 = _monitor(texts, store, webhook=url, rules=mon.settings.rules)
    mon2.observe(_records(zh[:50], ["positive"] * 50))
    report = mon2.drift()
    assert report["status"] == "drift"
    assert report["features"]["language"]["shares"]["zh"] > 0.9
    assert report["features"]["oov"]["drifted"] and report["features"]["label"]["drifted"]
    fired = mon2.check()
    assert {a.rule for a in fired} == {"drift", "length_ks"}
    assert [b["rule"] for b in bodies] == ["drift", "length_ks"]
    body = bodies[0]
    assert body["model"] == "news" and body["kind"] == "drift_psi" and body["direction"] == "above"
    assert body["threshold"] == 0.2 and body["value"] > 0.2 and body["count"] == 50
    assert body["alert_id"] == fired[0].id and body["message"] == fired[0].message


def test_webhook_failure_is_logged_not_raised(texts, store, caplog):
    with socket_free_port() as port:
        pass  # the port is closed again: nothing listens there
    mon = _monitor(texts, store, rules=[NEG_RULE], webhook=f"http://127.0.0.1:{port}/x", webhook_timeout_s=1)
    mon.observe(_records(texts[225:255], ["negative"] * 30))
    with caplog.at_level(logging.WARNING, logger="taskfit.serve.monitor"):
        fired = mon.check()
    assert len(fired) == 1  # stored although the webhook is down
    assert any("alert webhook" in r.message and "failed" in r.message for r in caplog.records)


class socket_free_port:
    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return int(self.sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


def test_background_checks_and_concurrent_observe(texts, store):
    mon = _monitor(texts, store, rules=[NEG_RULE], check_every_s=0.05)
    threads = [threading.Thread(target=mon.observe, args=(_records(texts[i:i + 10], ["negative"] * 10),))
               for i in range(0, 80, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert mon.drift()["count"] == 80
    mon.start()
    try:
        deadline = time.monotonic() + 10
        while not store.alerts() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        mon.stop()
    assert [a.rule for a in store.alerts()] == ["negative_surge"]
    assert mon._thread is None


@pytest.fixture(scope="module")
def news_run(tmp_path_factory, bbc_csv, tiny_model_dir) -> Path:
    """A tiny model trained a few steps on real BBC rows, with a monitor block in its recipe."""
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    out = tmp_path_factory.mktemp("runs")
    tree = tiny_recipe(bbc_csv, tiny_model_dir, out, max_steps=3)
    tree["monitor"] = {"min_count": 5, "reference_rows": 40, "rules": [
        {"name": "sport_surge", "kind": "label_share", "label": "sports", "above": 0.5}]}
    return train_recipe(parse_recipe(tree)).run_dir


def test_for_model_builds_and_caches_the_reference_of_a_real_run(news_run, store):
    mon = Monitor.for_model("news", news_run, None, store)
    assert [r.name for r in mon.settings.rules] == ["sport_surge"]  # the run's recipe monitor block
    assert mon.labels == ["business", "entertainment", "politics", "sports", "tech"]
    cache = news_run / REFERENCE_FILE
    data = json.loads(cache.read_text(encoding="utf-8"))
    from taskfit.serve.retrain import run_frames

    held = run_frames(news_run).held_out  # the run's test split (~10% of 300 rows, fewer than reference_rows)
    assert data["rows"] == len(held) < 40 and "test split" in data["source"]
    assert set(data["features"]) == {"length", "oov", "confidence", "language", "label"}
    stamp = cache.stat().st_mtime_ns
    again = Monitor.for_model("news", news_run / "model", MonitorConfig(reference_rows=40), store)
    assert cache.stat().st_mtime_ns == stamp and again.reference is not None  # read from the cache
    assert again.reference.features == mon.reference.features
    with pytest.raises(ConfigError, match="'angry' is not a label of model 'news'"):
        Monitor.for_model("news", news_run, MonitorConfig(rules=[{**NEG_RULE, "label": "angry"}]), store)


def test_feedback_drift_and_alert_routes(news_run, store, texts):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from taskfit.serve.auth import Auth
    from taskfit.serve.monitor import monitor_router

    mon = Monitor.for_model("news", news_run, None, store)
    app = FastAPI()
    app.include_router(monitor_router({"news": mon}, store, Auth(store, required=True)))
    feedback_key = store.create_key("labeller", scopes=("feedback",))
    admin_key = store.create_key("ops", scopes=("admin",))
    records = _records(texts[:6], ["sports"] * 6)
    store.log_predictions(records)
    mon.observe(records)
    with TestClient(app) as client:
        fb = {"Authorization": f"Bearer {feedback_key}"}
        ok = client.post("/v1/feedback", json={"request_id": records[0].request_id, "label": "tech"}, headers=fb)
        assert ok.status_code == 200, ok.text
        assert {k: ok.json()[k] for k in ("model", "predicted", "label", "key_name")} == {
            "model": "news", "predicted": "sports", "label": "tech", "key_name": "labeller"}
        missing = client.post("/v1/feedback", json={"request_id": "nope", "label": "tech"}, headers=fb)
        assert missing.status_code == 404 and "no logged prediction has request_id 'nope'" in missing.json()["detail"]
        bad = client.post("/v1/feedback", json={"request_id": records[1].request_id, "label": "weather"}, headers=fb)
        assert bad.status_code == 422
        assert bad.json()["detail"] == ("label 'weather' is not a label of model 'news'; expected one of: business, "
                                        "entertainment, politics, sports, tech.")
        assert client.post("/v1/feedback", json={"request_id": "x", "label": "tech"}).status_code == 401
        assert client.get("/v1/alerts", headers=fb).status_code == 403  # feedback scope is not admin
        assert [(f.request_id, f.label) for f in store.feedback("news")] == [(records[0].request_id, "tech")]

        adm = {"Authorization": f"Bearer {admin_key}"}
        drift = client.get("/v1/monitor/news/drift", headers=adm).json()
        assert (drift["count"] == 6 and drift["status"] == "ok") or drift["status"] == "drift"
        assert set(drift["features"]) == {"length", "oov", "confidence", "language", "label"}
        unknown = client.get("/v1/monitor/other/drift", headers=adm)
        assert unknown.status_code == 404 and "monitored models: news" in unknown.json()["detail"]
        mon.check()  # 6 of 6 predictions are sports: the run's sport_surge rule fires
        alerts = client.get("/v1/alerts", headers=adm).json()
        assert [(a["rule"], a["model"], a["value"]) for a in alerts] == [("sport_surge", "news", 1.0)]
