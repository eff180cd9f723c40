"""Engines for the serving database: SQLite tuned for one writer and many readers, PostgreSQL through psycopg 3.

SQLite: WAL journal (readers never block the writer), a 30 s busy timeout, ``synchronous=NORMAL`` and write
transactions that begin with ``BEGIN IMMEDIATE`` (a write lock taken up front instead of a deferred
transaction's lock upgrade, which fails at once when another writer got in between). A new database file is
created readable by its owner only. PostgreSQL: ``postgresql://`` URLs get the ``psycopg`` driver.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from taskfit.errors import ConfigError

__all__ = ["make_engine", "safe_url"]


def _json_default(value: Any) -> Any:
    """numpy scalars and arrays (model outputs, metrics) as plain numbers and lists."""
    for attr in ("tolist", "item"):
        if hasattr(value, attr):
            return getattr(value, attr)()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _json_dumps(value: Any) -> str:
    # ensure_ascii=False: Chinese labels and texts stay readable in the database
    return json.dumps(value, ensure_ascii=False, default=_json_default)


def safe_url(url: str) -> str:
    """``url`` with its password hidden (for messages)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (a bare file path means SQLite), with SQLite tuned for one writer and many readers."""
    if "://" not in url:
        url = f"sqlite:///{url}"
    try:
        u = make_url(url)
    except ArgumentError as e:
        raise ConfigError(f"db_url: {url!r} is not a database URL ({e}); expected sqlite:///path/serve.db or "
                          "postgresql+psycopg://user:password@host:5432/dbname.") from e
    backend = u.get_backend_name()
    if backend == "sqlite":
        memory = u.database in (None, "", ":memory:")
        if not memory:
            parent = Path(str(u.database)).expanduser().resolve().parent
            if not parent.is_dir():
                raise ConfigError(f"db_url: the folder {str(parent)!r} of SQLite database {u.database!r} does not "
                                  "exist; create it or give another path.")
            # a new file is readable by its owner only (key hashes, request log); SQLite gives its -wal and -shm
            # files the same permissions
            with contextlib.suppress(FileExistsError):
                os.close(os.open(Path(str(u.database)).expanduser(), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        engine = create_engine(u, connect_args={"check_same_thread": False, "timeout": 30},
                               poolclass=StaticPool if memory else None, json_serializer=_json_dumps)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            # let SQLAlchemy emit BEGIN itself (below) instead of the driver's implicit, deferred one
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer, nor it them
            cur.execute("PRAGMA busy_timeout=30000")  # wait for a lock instead of failing at once
            cur.execute("PRAGMA synchronous=NORMAL")  # safe with WAL; a crash loses at most the last commits
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn: Connection) -> None:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads and then writes can
            # fail with "database is locked" without waiting when another writer got in between
            write = conn.get_execution_options().get("taskfit_write", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

        return engine
    if backend == "postgresql":
        if u.get_driver_name() != "psycopg":
            u = u.set(drivername="postgresql+psycopg")  # psycopg 3 is what the serve extra installs
        return create_engine(u, pool_pre_ping=True, json_serializer=_json_dumps)
    raise ConfigError(f"db_url: database {backend!r} is not supported (URL {safe_url(url)}); use "
                      "sqlite:///path/serve.db or postgresql+psycopg://user:password@host:5432/dbname.")
