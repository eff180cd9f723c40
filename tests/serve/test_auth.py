"""Auth on a small FastAPI app of its own: 401/403/429 answers, both key headers, rate limit, quota, keys off."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from taskfit.serve.auth import SCOPES, Auth, Caller, RateLimiter
from taskfit.serve.db import Store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(f"sqlite:///{tmp_path / 'auth.db'}")
    try:
        yield s
    finally:
        s.close()


def _client(store: Store, required: bool = True) -> TestClient:
    auth = Auth(store, required=required)
    app = FastAPI()

    @app.post("/predict")
    def predict(caller: Caller = Depends(auth.require("predict"))) -> dict:
        return {"name": caller.name, "scopes": list(caller.scopes), "key_id": caller.key_id}

    @app.get("/admin")
    def admin(caller: Caller = Depends(auth.require("admin"))) -> dict:
        return {"name": caller.name}

    return TestClient(app)


def test_missing_invalid_and_revoked_keys_get_401(store: Store) -> None:
    client = _client(store)
    r = client.post("/predict")
    assert r.status_code == 401 and r.headers["www-authenticate"] == 'Bearer realm="taskfit"'
    assert r.json()["detail"].startswith("missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key")
    raw = store.create_key("app")
    bad = client.post("/predict", headers={"Authorization": f"Bearer {raw[:-1]}{'x' if raw[-1] != 'x' else 'y'}"})
    assert bad.status_code == 401 and bad.json() == {"detail": "invalid or revoked API key."}
    assert 'error="invalid_token"' in bad.headers["www-authenticate"]
    ok = client.post("/predict", headers={"Authorization": f"Bearer {raw}"})
    assert ok.status_code == 200 and ok.json()["name"] == "app" and ok.json()["scopes"] == ["predict"]
    assert client.post("/predict", headers={"X-API-Key": raw}).status_code == 200  # the other header works too
    store.revoke_key("app")
    assert client.post("/predict", headers={"X-API-Key": raw}).status_code == 401  # at once, no restart


def test_scopes_403_and_admin_implies_all(store: Store) -> None:
    client = _client(store)
    user, admin = store.create_key("user", scopes=["predict", "feedback"]), store.create_key("ops", scopes=["admin"])
    r = client.get("/admin", headers={"X-API-Key": user})
    assert r.status_code == 403
    assert r.json()["detail"] == ("API key 'user' lacks the scope 'admin' (it has: predict, feedback); use a key "
                                  "created with --scope admin.")
    assert client.get("/admin", headers={"X-API-Key": admin}).status_code == 200
    r = client.post("/predict", headers={"X-API-Key": admin})
    assert r.status_code == 200 and r.json()["scopes"] == list(SCOPES)
    assert store.list_keys()[0].used == 0  # refused requests are not counted


def test_rate_limit_answers_429_with_retry_after(store: Store) -> None:
    client = _client(store)
    raw = store.create_key("burst", rate_per_minute=3)
    codes = [client.post("/predict", headers={"X-API-Key": raw}).status_code for _ in range(3)]
    r = client.post("/predict", headers={"X-API-Key": raw})
    assert codes == [200, 200, 200] and r.status_code == 429
    assert 1 <= int(r.headers["retry-after"]) <= 20  # one token per 20 s at 3/minute
    assert r.json()["detail"].startswith("rate limit exceeded: API key 'burst' may send 3 requests per minute")
    other = store.create_key("other", rate_per_minute=3)  # buckets are per key
    assert client.post("/predict", headers={"X-API-Key": other}).status_code == 200
    assert [k.used for k in store.list_keys()] == [3, 1]  # the rate-limited request was not counted


def test_token_bucket_refills_with_time() -> None:
    now = [100.0]
    limiter = RateLimiter(clock=lambda: now[0])
    assert [limiter.take(1, 60) for _ in range(60)] == [0.0] * 60  # a minute's budget as a burst
    assert limiter.take(1, 60) == pytest.approx(1.0)  # empty: one token per second
    now[0] += 0.5
    assert limiter.take(1, 60) == pytest.approx(0.5)
    now[0] += 0.5
    assert limiter.take(1, 60) == 0.0
    now[0] += 3600
    assert sum(limiter.take(1, 60) == 0.0 for _ in range(70)) == 60  # refill is capped at the rate


def test_quota_exhausted_is_429_with_counts(store: Store) -> None:
    client = _client(store)
    raw = store.create_key("trial", quota=2)
    assert [client.post("/predict", headers={"X-API-Key": raw}).status_code for _ in range(2)] == [200, 200]
    r = client.post("/predict", headers={"X-API-Key": raw})
    assert r.status_code == 429 and "retry-after" not in r.headers
    assert r.json()["detail"].startswith("quota exhausted: API key 'trial' has used 2 of its 2 requests")
    assert store.list_keys()[0].used == 2


def test_keys_not_required_lets_everyone_in(store: Store) -> None:
    client = _client(store, required=False)
    r = client.get("/admin")
    assert r.status_code == 200 and r.json() == {"name": None}
    raw = store.create_key("named")  # a valid key still names the caller
    assert client.post("/predict", headers={"X-API-Key": raw}).json()["name"] == "named"
    assert client.post("/predict", headers={"X-API-Key": "tfk_wrong"}).json()["name"] is None


def test_unknown_scope_is_a_programming_error(store: Store) -> None:
    with pytest.raises(ValueError, match=r"scope must be one of predict, feedback, admin; got 'write'"):
        Auth(store).require("write")
