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


# ---- admin routes -------------------------------------------------------------------------------------------------

def _admin_client(store: Store) -> tuple[TestClient, dict[str, str]]:
    from taskfit.serve.admin import admin_router

    auth = Auth(store)
    app = FastAPI()
    app.include_router(admin_router(store, auth))

    @app.post("/predict")
    def predict(caller: Caller = Depends(auth.require("predict"))) -> dict:
        return {"name": caller.name}

    return TestClient(app), {"Authorization": f"Bearer {store.create_key('root', scopes=['admin'])}"}


def test_admin_keys_create_list_revoke(store: Store) -> None:
    client, root = _admin_client(store)
    r = client.post("/v1/admin/keys", json={"name": "ci", "scopes": ["predict"], "quota": 5}, headers=root)
    assert r.status_code == 201
    body = r.json()
    assert body["key"].startswith(body["prefix"]) and body["scopes"] == ["predict"] and body["quota"] == 5
    assert client.post("/predict", headers={"X-API-Key": body["key"]}).json() == {"name": "ci"}
    listed = client.get("/v1/admin/keys", headers=root).json()
    assert [k["name"] for k in listed] == ["root", "ci"] and all("key" not in k and "key_hash" not in k
                                                                   for k in listed)
    assert listed[1]["used"] == 1
    dup = client.post("/v1/admin/keys", json={"name": "ci"}, headers=root)
    assert dup.status_code == 409 and "key name 'ci' is taken by a key" in dup.json()["detail"]
    bad = client.post("/v1/admin/keys", json={"name": "x", "scopes": ["root"]}, headers=root)
    assert bad.status_code == 422 and "'predict', 'feedback' or 'admin'" in bad.text
    assert client.post("/v1/admin/keys", json={"name": "x", "rate_per_minute": 0}, headers=root).status_code == 422
    gone = client.delete("/v1/admin/keys/ci", headers=root)
    assert gone.status_code == 200 and gone.json()["revoked"] is True
    assert client.post("/predict", headers={"X-API-Key": body["key"]}).status_code == 401
    missing = client.delete("/v1/admin/keys/nobody", headers=root)
    assert missing.status_code == 404 and missing.json()["detail"].startswith("no API key named 'nobody'")


def test_admin_routes_need_scope_admin(store: Store) -> None:
    client, _ = _admin_client(store)
    user = store.create_key("user", scopes=["predict", "feedback"])
    assert client.get("/v1/admin/keys").status_code == 401
    r = client.get("/v1/admin/models", headers={"X-API-Key": user})
    assert r.status_code == 403 and "lacks the scope 'admin'" in r.json()["detail"]


def test_admin_registry_promote_rollback(store: Store) -> None:
    client, root = _admin_client(store)
    for v in ("1", "2"):
        store.register_model("news", v, f"/runs/{v}", metrics={"f1": 0.5 + int(v) / 10})
    r = client.post("/v1/admin/models/news/promote", json={"version": "1"}, headers=root)
    assert r.status_code == 200 and r.json()["stage"] == "production"
    r = client.post("/v1/admin/models/news/promote", json={"version": "2"}, headers=root)
    assert r.json()["previous_version"] == "1"
    models = client.get("/v1/admin/models", params={"name": "news"}, headers=root).json()
    assert [(m["version"], m["stage"]) for m in models] == [("1", "archived"), ("2", "production")]
    assert models[1]["metrics"] == {"f1": 0.7}
    r = client.post("/v1/admin/models/news/rollback", headers=root)
    assert r.status_code == 200 and r.json()["version"] == "1" and store.production("news").version == "1"
    r = client.post("/v1/admin/models/news/rollback", headers=root)
    assert r.status_code == 409 and "model 'news' has no earlier production version" in r.json()["detail"]
    r = client.post("/v1/admin/models/sales/rollback", headers=root)
    assert r.status_code == 404 and r.json()["detail"].startswith("no registered model named 'sales'")
    r = client.post("/v1/admin/models/news/promote", json={"version": "7"}, headers=root)
    assert r.status_code == 404 and "model 'news' has no version '7'; its versions: '1', '2'" in r.json()["detail"]
    r = client.post("/v1/admin/models/news/promote", json={"version": "2", "stage": "live"}, headers=root)
    assert r.status_code == 422 and "'staging', 'production' or 'archived'" in r.text


# ---- CLI ----------------------------------------------------------------------------------------------------------

def test_cli_keys_and_registry(tmp_path: Path) -> None:
    """``taskfit keys`` and ``taskfit registry`` on a run directory's serve.db (the real Typer app, in process)."""
    import json

    from typer.testing import CliRunner

    from taskfit.cli import app

    run = tmp_path / "news"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"valid": {"accuracy": 0.9, "per_label": {}}, "test": None}))
    cli = CliRunner()
    r = cli.invoke(app, ["keys", "list"], env={"TASKFIT_DB_URL": ""})
    assert r.exit_code == 2 and "no database given: pass --db URL or set TASKFIT_DB_URL" in r.stderr
    r = cli.invoke(app, ["keys", "create", "ci", "--scope", "predict", "--scope", "feedback", "--quota", "9",
                         "--db", str(run)])
    assert r.exit_code == 0, r.output
    raw = r.stdout.strip()
    assert raw.startswith("tfk_") and "\n" not in raw and "shown only now" in r.stderr  # the key alone on stdout
    with Store(str(run / "serve.db")) as store:
        key = store.verify_key(raw)
        assert key is not None and key.scopes == ("predict", "feedback") and key.quota == 9
    env = {"TASKFIT_DB_URL": f"sqlite:///{run / 'serve.db'}", "COLUMNS": "200"}
    listed = json.loads(cli.invoke(app, ["keys", "list", "--json"], env=env).stdout)
    assert [(k["name"], k["revoked"]) for k in listed] == [("ci", False)] and raw not in json.dumps(listed)
    r = cli.invoke(app, ["keys", "create", "ci"], env=env)
    assert r.exit_code == 2 and "key name 'ci' is taken by a key" in r.stderr
    assert cli.invoke(app, ["keys", "revoke", "ci"], env=env).exit_code == 0
    r = cli.invoke(app, ["keys", "revoke", "nobody"], env=env)
    assert r.exit_code == 2 and "no API key named 'nobody'; known keys: 'ci'" in r.stderr

    for version in ("1", "2"):
        assert cli.invoke(app, ["registry", "add", "news", version, str(run)], env=env).exit_code == 0
    assert cli.invoke(app, ["registry", "promote", "news", "1"], env=env).exit_code == 0
    r = cli.invoke(app, ["registry", "promote", "news", "2"], env=env)
    assert r.exit_code == 0 and "news version 2 is now production (replaces 1)" in r.stdout
    r = cli.invoke(app, ["registry", "rollback", "news"], env=env)
    assert r.exit_code == 0 and "version 1 is production again" in r.stdout
    got = json.loads(cli.invoke(app, ["registry", "list", "news", "--json"], env=env).stdout)
    assert [(v["version"], v["stage"]) for v in got] == [("1", "production"), ("2", "archived")]
    assert got[0]["metrics"] == {"valid.accuracy": 0.9}
    r = cli.invoke(app, ["registry", "rollback", "news"], env=env)
    assert r.exit_code == 2 and "model 'news' has no earlier production version" in r.stderr
    r = cli.invoke(app, ["registry", "promote", "sales", "1"], env=env)
    assert r.exit_code == 2 and "no registered model named 'sales'; registered models: 'news'" in r.stderr
