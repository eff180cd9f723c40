"""The store under several processes at once, on a real PostgreSQL 15 server (tests/serve/pg.py: initdb +
pg_ctl on a free port, as the postgres user) and on a SQLite file.

Every Store test of test_db.py also runs on PostgreSQL (its ``db_url`` fixture is parametrised over both); this
file adds what only several processes show: schema creation racing on a new database, quotas and promotions
counted exactly when two processes write at the same moment.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from serve import pg as _pg
from taskfit.serve.db import Store

pg_server, pg_url = _pg.pg_server, _pg.pg_url  # the PostgreSQL fixtures, used by name

# One worker process: waits for the start file (so both processes write at the same moment), then does its part.
WORKER = r"""
import json, sys, time
from pathlib import Path
from taskfit.serve.db import QuotaExhaustedError, Store
from taskfit.serve.records import PredictionRecord

url, role, go, n = sys.argv[1], sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
while not go.exists():
    time.sleep(0.01)
store = Store(url)  # opening at the same moment: schema creation must not race
out = {"granted": 0, "refused": 0}
key = next((k for k in store.list_keys() if k.name == "shared"), None)
registry = bool(store.model_versions("news"))
for i in range(n):
    if key is not None:
        try:
            store.use_key(key.id, quota=key.quota)
            out["granted"] += 1
        except QuotaExhaustedError:
            out["refused"] += 1
    store.log_predictions([PredictionRecord(f"{role}-{i}", "news", "1", "text", "a", 0.5, {}, 1.0)], mask=False)
    if registry and i % 5 == 0:  # the two processes promote different versions at the same time
        store.promote("news", str(1 + (i // 5) % 3) if role == "a" else str(3 - (i // 5) % 3))
store.close()
print(json.dumps(out))
"""


def _run_pair(url: str, tmp_path: Path, n: int) -> list[dict]:
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, url, role, str(go), str(n)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for role in ("a", "b")]
    try:
        time.sleep(1.5)  # both interpreters up and waiting
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for p, (_, stderr) in zip(procs, outs, strict=True):
        assert p.returncode == 0, stderr[-3000:]
    return [json.loads(stdout.strip().splitlines()[-1]) for stdout, _ in outs]


@pytest.fixture(params=["sqlite", "postgresql"])
def shared_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_two_processes_write_at_once(shared_url: str, tmp_path: Path) -> None:
    """Both open a fresh database at the same moment, count against one quota, log and promote concurrently."""
    with Store(shared_url) as s:
        s.create_key("shared", quota=50)
        for v in ("1", "2", "3"):
            s.register_model("news", v, f"/runs/{v}")
    outs = _run_pair(shared_url, tmp_path, n=40)
    with Store(shared_url) as s:
        assert sum(o["granted"] for o in outs) == 50 and sum(o["refused"] for o in outs) == 30  # exact, no overshoot
        assert s.list_keys()[0].used == 50
        assert len(s.predictions(limit=1000)) == 80
        assert sorted(p.request_id for p in s.predictions(limit=1000)) == sorted(
            [f"a-{i}" for i in range(40)] + [f"b-{i}" for i in range(40)])
        stages = [m.stage for m in s.model_versions("news")]
        assert stages.count("production") == 1 and stages.count("staging") + stages.count("archived") == 2


def test_fresh_database_opened_by_two_processes(pg_url: str, tmp_path: Path) -> None:
    """No tables yet, two processes create the schema at once: the advisory lock makes one wait for the other."""
    outs = _run_pair(pg_url, tmp_path, n=3)
    assert outs == [{"granted": 0, "refused": 0}] * 2
    with Store(pg_url) as s:
        assert s.schema_version() == 1 and s.dialect == "postgresql" and len(s.predictions()) == 6


def test_plain_postgresql_url_uses_psycopg(pg_server: _pg.PgServer) -> None:
    url = pg_server.new_database().replace("postgresql+psycopg://", "postgresql://")
    with Store(url) as s:
        raw = s.create_key("k")
        assert s.verify_key(raw) is not None and s.dialect == "postgresql"
