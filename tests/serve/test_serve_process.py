"""One real `taskfit serve` process on a free loopback port: it becomes ready, answers with a key created in
its database, refuses without one, and on SIGTERM drains, flushes the request log and exits with its whole
process group; bad options fail before anything loads."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from conftest import run_taskfit, tiny_recipe
from taskfit.serve.db import Store


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, bbc_csv: Path) -> Path:
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    tree = tiny_recipe(bbc_csv, tiny_model_dir, tmp_path_factory.mktemp("proc-runs"), max_steps=4,
                       checkpoint_every=100)
    return Path(train_recipe(parse_recipe(tree)).run_dir)


def test_serve_process_predicts_with_a_key_and_stops_on_sigterm(run: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'keys.db'}"
    with Store(db) as store:
        key = store.create_key("client", scopes=("predict",))
    port = free_port()
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "taskfit", "serve", str(run), "--name", "news@3", "--port",
                             str(port), "--db", db], stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    pgid = proc.pid
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 120
        while time.time() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        else:
            pytest.fail("the server did not become ready in 120 s")
        assert httpx.post(f"{base}/v1/predict", json={"text": "a"}).status_code == 401
        res = httpx.post(f"{base}/v1/predict", json={"texts": ["Rain stopped play at Lord's.", "利率上升"]},
                         headers={"Authorization": f"Bearer {key}"}, timeout=30)
        assert res.status_code == 200, res.text
        body = res.json()
        assert (body["model"], body["version"]) == ("news", "3") and len(body["predictions"]) == 2
        os.killpg(pgid, signal.SIGTERM)
        # uvicorn drains, runs the app's shutdown, then re-raises SIGTERM with the default action (exit -15)
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
        deadline = time.time() + 10
        while group_alive(pgid) and time.time() < deadline:
            time.sleep(0.1)
        assert not group_alive(pgid), "processes of the server's group outlived it"
    finally:
        if group_alive(pgid):
            os.killpg(pgid, signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()
    output = (tmp_path / "serve.log").read_text()
    assert "serving news v3 at http://127.0.0.1:" in output and "Application shutdown complete" in output
    with Store(db) as store:  # the request log was flushed before exit
        ids = {p["request_id"] for p in body["predictions"]}
        assert {r.request_id for r in store.predictions(model="news")} == ids
        assert [(v.name, v.version) for v in store.model_versions()] == [("news", "3")]


def test_bad_options_fail_before_loading(run: Path, tmp_path: Path) -> None:
    from taskfit.errors import ConfigError
    from taskfit.serve.settings import load_settings

    with pytest.raises(ConfigError, match=r"models.0.path: '.*missing' does not exist"):
        load_settings(None, [tmp_path / "missing"])
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(f"models: [{{name: news, path: {run}}}]\nmax_batch: 0\nqueue_sise: 3\n")
    with pytest.raises(ConfigError, match=r"2 problem\(s\)") as err:  # every problem at once
        load_settings(cfg)
    assert "max_batch" in str(err.value) and "queue_sise" in str(err.value)
    with pytest.raises(ConfigError, match=r"--name was given 2 times for 1 run directories"):
        load_settings(None, [run], ["a", "b"])
    settings = load_settings(None, [run, run], ["news@1", "news@2"], port=9000, require_keys=None)
    assert [(m.name, m.version) for m in settings.models] == [("news", "1"), ("news", "2")]
    assert settings.port == 9000 and settings.require_keys
    # the CLI: exit status 2 and the message, before any model loads
    res = run_taskfit(["serve", str(run), "--backend", "onnx", "--no-keys", "--db",
                       f"sqlite:///{tmp_path / 'x.db'}"], ok=False, timeout=120)
    assert res.returncode == 2 and "holds a torch model, but backend 'onnx' was asked for" in res.stderr
