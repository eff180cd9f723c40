"""Store: keys, registry, request log, feedback, alerts, schema version. Every test runs on SQLite and on a real
PostgreSQL server (tests/serve/pg.py), with the same assertions."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from serve import pg as _pg
from taskfit.errors import ConfigError, IncompatibleError, NotFoundError
from taskfit.serve.db import ConflictError, QuotaExhaustedError, Store
from taskfit.serve.records import PredictionRecord

pg_server, pg_url = _pg.pg_server, _pg.pg_url  # the PostgreSQL fixtures, used by name

PII_TEXT = "Refund please: mail john.doe@example.com or call +1 415 555 0132, 张伟 13812345678"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A URL to an empty database of each kind."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'serve.db'}"
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    s = Store(db_url)
    try:
        yield s
    finally:
        s.close()


def _rows(url: str, sql: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql))]
    finally:
        engine.dispose()


def _record(rid: str, text_: str = "hello", model: str = "news", label: str = "sport",
            at: datetime | None = None) -> PredictionRecord:
    return PredictionRecord(request_id=rid, model=model, version="1", text=text_, label=label, confidence=0.8,
                            outputs={"label": label, "scores": {label: 0.8}}, latency_ms=4.5,
                            **({"created_at": at} if at else {}))


# ---- keys ---------------------------------------------------------------------------------------------------------

def test_key_is_stored_only_as_a_salted_hash(store: Store, db_url: str) -> None:
    raw = store.create_key("ci-bot", scopes=["predict", "feedback"], rate_per_minute=10, quota=100)
    assert raw.startswith("tfk_") and len(raw) >= 40
    dump = repr(_rows(db_url, "SELECT * FROM api_keys"))
    assert raw not in dump and raw[12:] not in dump  # neither the key nor its secret part is stored
    (key_hash,) = _rows(db_url, "SELECT key_hash FROM api_keys")[0]
    assert key_hash.startswith("scrypt$")
    if db_url.startswith("sqlite"):  # and not in the file's bytes either (WAL included)
        path = Path(db_url.removeprefix("sqlite:///"))
        blob = b"".join(p.read_bytes() for p in path.parent.glob(path.name + "*"))
        assert raw.encode() not in blob and raw[12:].encode() not in blob
    # a second key with the same secret text would get another salt: same key hashed twice differs
    from taskfit.serve.db import check_key, hash_key

    assert hash_key(raw) != hash_key(raw) and check_key(raw, hash_key(raw)) and not check_key(raw + "x", key_hash)


def test_verify_list_revoke(store: Store) -> None:
    raw = store.create_key("客服系统", scopes=("predict",))
    other = store.create_key("admin", scopes=("admin",))
    key = store.verify_key(raw)
    assert key is not None and key.name == "客服系统" and key.scopes == ("predict",) and not key.revoked
    assert key.allows("predict") and not key.allows("admin") and store.verify_key(other).allows("feedback")
    assert store.verify_key(raw[:-2] + ("A" if raw[-2] != "A" else "B") + raw[-1]) is None  # one char off
    assert store.verify_key("tfk_" + "x" * 43) is None and store.verify_key("not-a-key") is None
    assert [k.name for k in store.list_keys()] == ["客服系统", "admin"]
    store.revoke_key("客服系统")
    assert store.verify_key(raw) is None and store.verify_key(other) is not None
    assert [k.revoked for k in store.list_keys()] == [True, False]
    store.revoke_key("客服系统")  # idempotent
    with pytest.raises(NotFoundError, match=r"no API key named 'nobody'; known keys: '客服系统', 'admin'"):
        store.revoke_key("nobody")
    with pytest.raises(ConflictError, match=r"key name '客服系统' is taken by a revoked key"):
        store.create_key("客服系统")


def test_key_options_are_checked(store: Store) -> None:
    with pytest.raises(ConfigError, match=r"scopes must be a non-empty subset of predict, feedback, admin; got 'root'"):
        store.create_key("a", scopes=["predict", "root"])
    with pytest.raises(ConfigError, match=r"quota must be a positive whole number or unset \(unlimited\); got 0"):
        store.create_key("a", quota=0)
    with pytest.raises(ConfigError, match=r"key name 'a/b' is not usable"):
        store.create_key("a/b")
    assert store.list_keys() == []


def test_use_key_counts_and_enforces_quota(store: Store) -> None:
    store.create_key("k", quota=3)
    (key,) = store.list_keys()
    assert [store.use_key(key.id, quota=3) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(QuotaExhaustedError, match=r"quota exhausted: API key 'k' has used 3 of its 3 requests"):
        store.use_key(key.id, quota=3)
    assert store.list_keys()[0].used == 3  # the refused request was not counted
    assert store.use_key(key.id, 2) == 5  # without a quota argument it only counts


# ---- registry -----------------------------------------------------------------------------------------------------

def test_registry_promote_and_rollback_sequence(store: Store) -> None:
    for v in ("1", "2", "3"):
        store.register_model("news", v, f"/runs/news-{v}", metrics={"accuracy": 0.8 + int(v) / 100})
    assert store.production("news") is None
    assert [m.stage for m in store.model_versions("news")] == ["staging"] * 3
    for v in ("1", "2", "3"):
        assert store.promote("news", v).stage == "production"
        assert [m.version for m in store.model_versions("news") if m.stage == "production"] == [v]
    assert {m.version: m.stage for m in store.model_versions()} == {"1": "archived", "2": "archived",
                                                                     "3": "production"}
    assert store.rollback("news").version == "2"
    assert {m.version: m.stage for m in store.model_versions()} == {"1": "archived", "2": "production",
                                                                     "3": "archived"}
    assert store.rollback("news").version == "1"  # a second rollback goes one more step back
    assert store.production("news").metrics == {"accuracy": 0.81}
    with pytest.raises(ConflictError, match=r"model 'news' has no earlier production version to roll back to "
                                            r"\(version '1' is in production now\)"):
        store.rollback("news")
    assert store.promote("news", "3").promoted_at > store.model_versions("news")[0].promoted_at
    store.promote("news", "3")  # already production: unchanged
    assert store.rollback("news").version == "1"


def test_registry_errors_name_the_model(store: Store) -> None:
    store.register_model("news", "1", "/runs/a", stage="production")
    with pytest.raises(NotFoundError, match=r"no registered model named 'sales'; registered models: 'news'"):
        store.rollback("sales")
    with pytest.raises(NotFoundError, match=r"model 'news' has no version '9'; its versions: '1'"):
        store.promote("news", "9")
    with pytest.raises(ConfigError, match=r"stage must be one of staging, production, archived; got 'live'"):
        store.promote("news", "1", stage="live")
    with pytest.raises(ConflictError, match=r"model 'news' version '1' is registered already"):
        store.register_model("news", "1", "/runs/b")
    with pytest.raises(ConflictError, match=r"no earlier production version"):
        store.rollback("news")
    store.register_model("news", "2", "/runs/b", stage="production")  # registering in production archives 1
    assert [m.stage for m in store.model_versions("news")] == ["archived", "production"]
    assert store.promote("news", "2", stage="staging").stage == "staging" and store.production("news") is None
    assert store.rollback("news").version == "2"  # no current production: the latest one returns


# ---- request log, feedback, alerts --------------------------------------------------------------------------------

def test_request_log_masks_pii(store: Store, db_url: str) -> None:
    rec = PredictionRecord(request_id="r1", model="ner", version="1", text=PII_TEXT, label="complaint",
                           confidence=0.9, outputs={"entities": [{"word": "john.doe@example.com"}]}, latency_ms=3.0,
                           key_name="ci")
    store.log_predictions([rec, _record("r2")])
    got = store.prediction("r1")
    assert got is not None and got.label == "complaint" and got.key_name == "ci" and got.confidence == 0.9
    assert "<EMAIL>" in got.text and "<PHONE>" in got.text and got.text.startswith("Refund please: mail ")
    assert got.outputs == {"entities": [{"word": "<EMAIL>"}]}
    dump = repr(_rows(db_url, "SELECT * FROM predictions"))
    for secret in ("john.doe@example.com", "555 0132", "13812345678"):
        assert secret not in dump
    assert store.prediction("r2").text == "hello" and store.prediction("nope") is None
    store.log_predictions([_record("r3", text_="call 13812345678")], mask=False)  # the caller may opt out
    assert store.prediction("r3").text == "call 13812345678"


def test_predictions_filter_and_order(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    store.log_predictions([_record(f"a{i}", at=t0 + timedelta(minutes=i)) for i in range(5)]
                          + [_record("b0", model="sales", at=t0 + timedelta(minutes=2))], mask=False)
    assert [p.request_id for p in store.predictions("news")] == ["a0", "a1", "a2", "a3", "a4"]
    assert [p.request_id for p in store.predictions("news", since=t0 + timedelta(minutes=3))] == ["a3", "a4"]
    assert [p.request_id for p in store.predictions(limit=2)] == ["a3", "a4"]  # newest 2, oldest first
    assert len(store.predictions()) == 6
    assert store.predictions("news")[0].created_at == t0  # UTC round trip, aware
    local = t0.astimezone(__import__("datetime").timezone(timedelta(hours=8)))
    assert [p.request_id for p in store.predictions("news", since=local + timedelta(minutes=4))] == ["a4"]


def test_outputs_with_numpy_values_and_chinese_labels(store: Store) -> None:
    import numpy as np

    rec = PredictionRecord(request_id="z1", model="评论", version="1", text="物流很快", label="正面",
                           confidence=float(np.float32(0.75)), outputs={"scores": np.array([0.25, 0.75]),
                                                                        "top": np.float32(0.75), "label": "正面"},
                           latency_ms=2.0)
    store.log_predictions([rec])
    got = store.prediction("z1")
    assert got.outputs == {"scores": [0.25, 0.75], "top": 0.75, "label": "正面"} and got.model == "评论"
    assert got.text == "物流很快" and got.label == "正面"


def test_feedback_joins_the_predicted_label(store: Store) -> None:
    store.log_predictions([_record("r1", text_="mail a.b@example.org", label="sport"),
                           _record("r2", model="sales", label="tech")])
    fb = store.add_feedback("r1", "business", key_name="ops")
    assert (fb.request_id, fb.model, fb.predicted, fb.label, fb.key_name) == ("r1", "news", "sport", "business", "ops")
    assert fb.text == "mail <EMAIL>"
    store.add_feedback("r2", "tech")
    assert [(f.request_id, f.predicted, f.label) for f in store.feedback()] == [("r1", "sport", "business"),
                                                                               ("r2", "tech", "tech")]
    assert [f.request_id for f in store.feedback(model="sales")] == ["r2"]
    assert store.feedback(since=datetime.now(UTC) + timedelta(minutes=1)) == []
    with pytest.raises(NotFoundError, match=r"no logged prediction has request_id 'zzz'"):
        store.add_feedback("zzz", "x")


def test_alerts_newest_first(store: Store) -> None:
    a = store.add_alert("psi", "PSI 0.31 > 0.2 on text length", 0.31, model="news")
    b = store.add_alert("error_rate", "5% errors", 0.05)
    assert a.id != b.id and a.model == "news" and b.model is None
    got = store.alerts()
    assert [x.rule for x in got] == ["error_rate", "psi"] and got[1].value == pytest.approx(0.31)
    assert [x.rule for x in store.alerts(limit=1)] == ["error_rate"]


# ---- schema and concurrency ---------------------------------------------------------------------------------------

def test_schema_version_is_recorded_and_a_newer_one_refused(db_url: str) -> None:
    with Store(db_url) as s:
        assert s.schema_version() == 1
        s.create_key("kept")
    with Store(db_url) as s:  # reopening keeps the data
        assert [k.name for k in s.list_keys()] == ["kept"]
    engine = create_engine(db_url)
    with engine.begin() as c:
        c.execute(text("UPDATE taskfit_schema SET version = 99"))
    engine.dispose()
    with pytest.raises(IncompatibleError, match=r"has schema version 99, written by a newer taskfit; this taskfit "
                                                r"reads up to version 1"):
        Store(db_url)


def _threads_write_at_once(store: Store) -> None:
    """A log writer, feedback writers and key counters in 4 threads at once: nothing lost, no lock errors."""
    store.create_key("k")
    (key,) = store.list_keys()
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            for j in range(10):
                store.log_predictions([_record(f"t{i}-{j}")], mask=False)
                store.use_key(key.id)
                store.add_feedback(f"t{i}-{j}", "ok")
        except BaseException as e:  # collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(store.predictions()) == 40 and len(store.feedback()) == 40 and store.list_keys()[0].used == 40


def test_threads_write_at_once(store: Store) -> None:
    _threads_write_at_once(store)


def test_in_memory_sqlite_is_shared_by_threads() -> None:
    """``sqlite://`` is one connection for every thread; the store makes them take turns."""
    with Store("sqlite://") as store:
        _threads_write_at_once(store)


def test_sqlite_file_is_in_wal_mode(tmp_path: Path) -> None:
    with Store(str(tmp_path / "plain.db")) as s:  # a bare path means SQLite
        s.create_key("x")
    conn = sqlite3.connect(tmp_path / "plain.db")
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert (tmp_path / "plain.db").stat().st_mode & 0o777 == 0o600  # owner only: key hashes, request log


def test_bad_urls_are_explained(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a database\n" * 100)
    with pytest.raises(ConfigError, match=r"db_url: cannot open database sqlite:///.*notes.txt \(file is not a "
                                          r"database\)"):
        Store(f"sqlite:///{tmp_path / 'notes.txt'}")
    with pytest.raises(ConfigError, match=r"db_url: database 'mysql' is not supported"):
        Store("mysql://u:p@localhost/db")
    with pytest.raises(ConfigError, match=r"db_url: the folder .*missing.* does not exist"):
        Store(f"sqlite:///{tmp_path / 'missing' / 'serve.db'}")
    with pytest.raises(ConfigError, match=r"db_url: cannot open database postgresql://u:\*\*\*@127.0.0.1:1/x "
                                          r"\(.*Connection refused"):
        Store("postgresql://u:secret@127.0.0.1:1/x")
