"""The console's JSON APIs in-process (FastAPI TestClient over ``create_app`` with the console router, a real
SQLite Store and real API keys) over two real tiny runs: runs list, run page data, compare, safe file access,
the launch form and its validation errors, registry and alerts."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from console.console_runs import EN_RUN, ZH_RUN, shared_runs
from taskfit.console import console_router
from taskfit.console.launch import JobManager, form_fields
from taskfit.serve.app import create_app
from taskfit.serve.auth import Auth
from taskfit.serve.db import Store
from taskfit.serve.settings import ServeSettings


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, zh_csv: Path, bbc_csv: Path) -> Path:
    return shared_runs(tmp_path_factory, tiny_model_dir, zh_csv, bbc_csv)


@pytest.fixture()
def env(runs: Path, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A console app with an admin key and a predict-only key."""
    store = Store(f"sqlite:///{tmp_path / 'console.db'}")
    admin = store.create_key("ops", scopes=["admin"])
    predict = store.create_key("app", scopes=["predict"])
    jobs = JobManager(runs)
    router = console_router(runs, store, Auth(store), jobs, base_dir=tmp_path)
    with TestClient(create_app(ServeSettings(models=[]), store=store, extra_routers=[router])) as client:
        yield {"client": client, "store": store, "admin": {"X-API-Key": admin}, "predict": {"X-API-Key": predict},
               "runs": runs}
    jobs.stop_all()
    store.close()


def _meta(run: Path) -> dict[str, Any]:
    return json.loads((run / "model" / "taskfit.json").read_text(encoding="utf-8"))


def test_data_needs_an_admin_key_and_pages_need_none(env: dict[str, Any]) -> None:
    c = env["client"]
    assert c.get("/v1/console/runs").status_code == 401
    r = c.get("/v1/console/runs", headers=env["predict"])
    assert r.status_code == 403 and "lacks the scope 'admin'" in r.json()["detail"]
    assert c.get("/v1/console/session", headers=env["predict"]).json()["scopes"] == ["predict"]
    page = c.get("/console/")
    assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
    js = c.get("/console/static/plotly.min.js")
    assert js.status_code == 200 and len(js.content) > 1_000_000  # the wheel's full bundle, served offline
    assert c.get("/console/static/..%2Fruns.py").status_code == 404


def test_runs_list_reads_the_run_directories(env: dict[str, Any]) -> None:
    r = env["client"].get("/v1/console/runs", headers=env["admin"])
    assert r.status_code == 200
    rows = {row["name"]: row for row in r.json()["runs"]}
    assert set(rows) == {ZH_RUN, EN_RUN}
    for name, row in rows.items():
        meta = _meta(env["runs"] / name)
        first = next(k for k in meta["metrics"]["test"] if k != "n")
        assert (row["metric"], row["value"], row["split"]) == (first, meta["metrics"]["test"][first], "test")
        assert row["status"] == "finished" and row["task"] == "text_classification" and row["time"] == meta["created"]
    assert rows[EN_RUN]["method"] == "lora" and rows[ZH_RUN]["method"] == "full"


def test_run_page_data_history_confusion_fairness_explanations(env: dict[str, Any]) -> None:
    r = env["client"].get(f"/v1/console/runs/{ZH_RUN}", headers=env["admin"])
    assert r.status_code == 200
    d = r.json()
    lines = [json.loads(x) for x in (env["runs"] / ZH_RUN / "metrics.jsonl").read_text().splitlines()]
    assert [h["step"] for h in d["history"]["train"]] == [x["step"] for x in lines if "train_loss" in x]
    assert [h["step"] for h in d["history"]["valid"]] == [3, 6, 9]
    results = json.loads((env["runs"] / ZH_RUN / "results.json").read_text())
    assert d["confusion"]["matrix"] == results["test"]["confusion_matrix"]
    assert sum(map(sum, d["confusion"]["matrix"])) == results["test"]["n"]
    assert d["metrics"]["test"]["accuracy"] == results["test"]["accuracy"]
    assert {g["group"] for g in d["fairness"]["groups"]} == {"north", "south"}
    assert [e["text"] for e in d["explanations"]] == ["质量很好，很满意", "太差了，不推荐"]
    assert all(e["label"] in d["labels"] for e in d["explanations"])
    assert {"report.html", "recipe.yaml", "results.json"} <= set(d["files"])


def test_confusion_recomputed_from_a_predictions_file(env: dict[str, Any], tmp_path: Path) -> None:
    """A run whose results.json has no matrix: counted from predictions.jsonl (label = predicted, true_label)."""
    src = env["runs"] / EN_RUN
    copy = env["runs"] / "no-matrix"
    shutil.copytree(src, copy)
    try:
        results = json.loads((copy / "results.json").read_text())
        for split in ("valid", "test"):
            results[split].pop("confusion_matrix")
        (copy / "results.json").write_text(json.dumps(results))
        a, b, t = _meta(src)["labels"][:3]
        preds = [(a, a), (b, a), (b, b), (t, b)]
        (copy / "predictions.jsonl").write_text("\n".join(json.dumps({"true_label": t, "label": p})
                                                          for t, p in preds) + "\n")
        d = env["client"].get("/v1/console/runs/no-matrix", headers=env["admin"]).json()
        labels = d["confusion"]["labels"]
        assert labels == _meta(src)["labels"] and d["confusion"]["n"] == 4
        m = d["confusion"]["matrix"]
        i = labels.index
        assert (m[i(a)][i(a)], m[i(b)][i(a)], m[i(b)][i(b)], m[i(t)][i(b)]) == (1, 1, 1, 1) and sum(map(sum, m)) == 4
    finally:
        shutil.rmtree(copy)


def test_compare_two_runs(env: dict[str, Any]) -> None:
    c = env["client"]
    r = c.get("/v1/console/compare", params={"runs": [ZH_RUN, EN_RUN]}, headers=env["admin"])
    assert r.status_code == 200
    d = r.json()
    assert [x["summary"]["name"] for x in d["runs"]] == [ZH_RUN, EN_RUN]
    acc = next(row for row in d["table"] if row["metric"] == "accuracy")
    assert acc["values"] == [json.loads((env["runs"] / n / "results.json").read_text())["test"]["accuracy"]
                             for n in (ZH_RUN, EN_RUN)]
    assert [len(x["history"]["train"]) for x in d["runs"]] == [9, 8]
    one = c.get("/v1/console/compare", params={"runs": [ZH_RUN, ZH_RUN]}, headers=env["admin"])
    assert one.status_code == 422 and "two or more different runs" in one.json()["detail"]
    missing = c.get("/v1/console/compare", params={"runs": [ZH_RUN, "nope"]}, headers=env["admin"])
    assert missing.status_code == 404 and "No run 'nope'" in missing.json()["detail"]


def test_files_are_served_safely(env: dict[str, Any], tmp_path: Path) -> None:
    c, h = env["client"], env["admin"]
    base = f"/v1/console/runs/{ZH_RUN}/files"
    report = c.get(f"{base}/report.html", headers=h)
    assert report.status_code == 200 and report.text == (env["runs"] / ZH_RUN / "report.html").read_text()
    assert report.headers["content-security-policy"].startswith("sandbox")
    secret = env["runs"] / "secret.txt"
    secret.write_text("do not serve")
    (env["runs"] / ZH_RUN / "link.txt").symlink_to(secret)
    try:
        for bad, words in [("..%2Fsecret.txt", "not a plain path"), ("%2Fetc%2Fpasswd", "not a plain path"),
                           ("model%2F..%2F..%2Fsecret.txt", "not a plain path"), ("link.txt", "has no file"),
                           (".console", "not a plain path"), ("model/model.safetensors", "does not serve")]:
            r = c.get(f"{base}/{bad}", headers=h)
            assert r.status_code == 404 and words in r.json()["detail"], (bad, r.text)
            assert "do not serve" not in r.text
        r = c.get("/v1/console/runs/..%2F..%2Fetc/files/passwd", headers=h)
        assert r.status_code == 404
        assert c.get("/v1/console/runs/.console", headers=h).status_code == 404
    finally:
        (env["runs"] / ZH_RUN / "link.txt").unlink()
        secret.unlink()


def test_form_fields_come_from_the_recipe_schema() -> None:
    from taskfit.config import TrainConfig

    fields = {f["key"]: f for f in form_fields()["fields"]}
    assert fields["train.lr"]["default"] == TrainConfig.model_fields["lr"].default
    assert fields["train.schedule"]["options"] == ["linear", "cosine", "constant"]
    assert fields["method.r"]["when"] == {"method.name": "lora"}
    assert fields["fairness.group_column"]["block"] == "fairness" and fields["fairness.group_column"]["required"]
    assert fields["data.train"]["required"] and "output.dir" not in fields


def _launch(env: dict[str, Any], values: dict[str, Any], blocks: list[str] | None = None) -> Any:
    return env["client"].post("/v1/console/launch", headers=env["admin"],
                              json={"values": values, "blocks": blocks or []})


def test_launch_validation_errors_are_per_field(env: dict[str, Any], zh_csv: Path) -> None:
    r = _launch(env, {"data.train": str(zh_csv), "train.lr": "fast", "method.name": "lora", "method.r": "0"})
    assert r.status_code == 422
    errors = r.json()["errors"]
    assert "valid number" in errors["train.lr"][0] and "'fast'" in errors["train.lr"][0]
    assert "greater than or equal to 1" in errors["method.r"][0]
    r = _launch(env, {"data.train": str(zh_csv.parent / "missing.csv")})
    assert r.status_code == 422 and "does not exist" in r.json()["errors"]["data.train"][0]
    r = _launch(env, {"data.train": str(zh_csv), "data.text": "review"})
    assert r.status_code == 422 and "column 'review' not found" in r.json()["errors"]["data.train"][0]
    r = _launch(env, {"data.train": str(zh_csv)}, blocks=["fairness"])
    assert r.json()["errors"]["fairness.group_column"] == ["required key is missing."]
    r = _launch(env, {"data.train": str(zh_csv), "output.name": ZH_RUN, "train.bogus": "1"})
    assert "already exists" in r.json()["errors"]["output.name"][0]
    assert "unknown form field" in r.json()["errors"]["train.bogus"][0]
    r = _launch(env, {"data.train": str(zh_csv), "output.name": "../escape"})
    assert "plain folder name" in r.json()["errors"]["output.name"][0]
    assert not env["client"].get("/v1/console/jobs", headers=env["admin"]).json()["jobs"]  # nothing started


def test_registry_and_alerts(env: dict[str, Any]) -> None:
    store: Store = env["store"]
    c, h = env["client"], env["admin"]
    store.register_model("topics", "1", str(env["runs"] / EN_RUN))
    store.register_model("topics", "2", str(env["runs"] / EN_RUN))
    assert c.post("/v1/console/registry/topics/promote", json={"version": "1"}, headers=h).json()["stage"] == \
        "production"
    c.post("/v1/console/registry/topics/promote", json={"version": "2"}, headers=h)
    stages = {v["version"]: v["stage"] for v in c.get("/v1/console/registry", headers=h).json()["versions"]}
    assert stages == {"1": "archived", "2": "production"}
    assert c.post("/v1/console/registry/topics/rollback", headers=h).json()["version"] == "1"
    assert store.production("topics").version == "1"  # type: ignore[union-attr]
    r = c.post("/v1/console/registry/nope/promote", json={"version": "1"}, headers=h)
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert c.post("/v1/console/registry/topics/rollback", headers=env["predict"]).status_code == 403
    store.add_alert("negative_surge", "负面评论激增 62%", 0.62, model="topics")
    alerts = c.get("/v1/console/alerts", headers=h).json()["alerts"]
    assert alerts[0]["message"] == "负面评论激增 62%" and alerts[0]["value"] == 0.62
