"""The serving database: API keys, the model registry, the request log, feedback and alerts.

:class:`Store` is the one door to it, over SQLAlchemy 2 Core. A SQLite file is the default (WAL journal and a
busy timeout, because the service writes from a background thread while CLI commands read the same file;
every write transaction starts with ``BEGIN IMMEDIATE`` so two writers queue instead of failing on a lock
upgrade). PostgreSQL is used when the URL says so (``postgresql+psycopg://user:pw@host/db``); that is the
choice for several service processes or hosts.

Secrets: an API key is shown once at creation and only a salted scrypt hash of it is stored. The first
characters of the key (``tfk_`` + 8) are stored in clear beside the hash, so verifying a key reads one row;
the rest (~210 bits) stays secret. Request texts are PII-masked (:mod:`taskfit.trust.pii`) before storing.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import fields
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, func, inspect, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.pool import StaticPool

from taskfit.errors import ConfigError, IncompatibleError, NotFoundError
from taskfit.serve.db_engine import make_engine, safe_url
from taskfit.serve.db_registry import RegistryMixin
from taskfit.serve.db_schema import (
    SCHEMA_VERSION,
    SCOPES,
    STAGES,
    Alert,
    ApiKey,
    ConflictError,
    Feedback,
    ModelVersion,
    QuotaExhaustedError,
    alerts,
    api_keys,
    feedback,
    metadata,
    predictions,
    schema_info,
    utcnow,
)
from taskfit.serve.db_secrets import check_key, hash_key, mask_record
from taskfit.serve.records import PredictionRecord

__all__ = ["SCOPES", "STAGES", "Alert", "ApiKey", "ConflictError", "Feedback", "ModelVersion", "QuotaExhaustedError",
           "Store", "check_key", "hash_key", "mask_record"]

KEY_PREFIX = "tfk_"
_LOOKUP_CHARS = 8  # characters after "tfk_" stored in clear to find the row
_PG_SCHEMA_LOCK = 7_311_001  # advisory lock id: two processes opening a new PostgreSQL database queue on it
_RECORD_FIELDS = tuple(f.name for f in fields(PredictionRecord))


def _key(row: Row[Any]) -> ApiKey:
    return ApiKey(id=row.id, name=row.name, scopes=tuple(s for s in row.scopes.split(",") if s),
                  rate_per_minute=row.rate_per_minute, quota=row.quota, used=row.used, revoked=bool(row.revoked),
                  created_at=row.created_at, prefix=row.prefix)


def _record(row: Row[Any]) -> PredictionRecord:
    return PredictionRecord(request_id=row.request_id, model=row.model, version=row.version, text=row.text,
                            label=row.label, confidence=row.confidence, outputs=dict(row.outputs or {}),
                            latency_ms=row.latency_ms, key_name=row.key_name, created_at=row.created_at)


def _feedback(row: Row[Any]) -> Feedback:
    return Feedback(id=row.id, request_id=row.request_id, model=row.model, version=row.version, text=row.text,
                    predicted=row.predicted, label=row.label, key_name=row.key_name, created_at=row.created_at)


def _alert(row: Row[Any]) -> Alert:
    return Alert(id=row.id, rule=row.rule, model=row.model, message=row.message, value=row.value,
                 created_at=row.created_at)


def _check_name(name: str) -> str:
    name = name.strip() if isinstance(name, str) else name
    if not isinstance(name, str) or not 1 <= len(name) <= 100 or "/" in name or not name.isprintable():
        raise ConfigError(f"key name {name!r} is not usable: expected 1 to 100 printable characters without '/' "
                          "(e.g. 'ci-bot' or '客服系统').")
    return name


def _check_limit(what: str, value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"{what} must be a positive whole number or unset (unlimited); got {value!r}.")
    return value


def _check_scopes(scopes: Sequence[str]) -> tuple[str, ...]:
    scopes = (scopes,) if isinstance(scopes, str) else tuple(scopes)
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise ConfigError(f"scopes must be a non-empty subset of {', '.join(SCOPES)}; got "
                          f"{', '.join(map(repr, bad)) if bad else 'none'}.")
    return tuple(dict.fromkeys(scopes))  # de-duplicated, order kept


class Store(RegistryMixin):
    """API keys, model registry, request log, feedback and alerts in one SQL database.

    Thread-safe: every method opens its own connection from the engine's pool. The schema is created on
    open; a database written by a newer taskfit (higher schema version) is refused.

    Args:
        url: ``sqlite:///path/serve.db`` (a bare path also means SQLite; ``sqlite://`` is in memory) or
            ``postgresql+psycopg://user:password@host:port/dbname``.

    Raises:
        ConfigError: the URL is malformed, unsupported, or the database cannot be opened.
        IncompatibleError: the database has a newer schema than this taskfit understands.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = make_engine(url)
        # an in-memory SQLite database is one connection shared by all threads: take turns on it
        self._serial: AbstractContextManager[Any] = (
            threading.RLock() if isinstance(self._engine.pool, StaticPool) else nullcontext())
        self._verified: dict[str, tuple[bytes, str]] = {}  # prefix -> (sha256 of raw key, stored hash)
        try:
            self._open_schema()
        except DBAPIError as e:  # server down, bad credentials, a file that is not a database
            self._engine.dispose()
            reason = " ".join(str(e.orig).split())  # the driver's message, on one line
            raise ConfigError(f"db_url: cannot open database {safe_url(url)} ({reason}); check that the server "
                              "runs and that the URL's host, port, user, password and database are right.") from e
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def display_url(self) -> str:
        """The URL with any password hidden (for messages and logs)."""
        return safe_url(self.url)

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._engine.dialect.name

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        """A connection for reading (its implicit transaction is rolled back on close)."""
        with self._serial, self._engine.connect() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """A connection in a write transaction (committed on success, rolled back on error)."""
        with self._serial, self._engine.connect() as conn:
            conn.execution_options(taskfit_write=True)
            with conn.begin():
                yield conn

    def _open_schema(self) -> None:
        with self._write() as c:
            if self.dialect == "postgresql":
                c.execute(select(func.pg_advisory_xact_lock(_PG_SCHEMA_LOCK)))
            found = None
            if inspect(c).has_table(schema_info.name):
                found = c.execute(select(schema_info.c.version).where(schema_info.c.id == 1)).scalar()
            if found is not None and found > SCHEMA_VERSION:
                raise IncompatibleError(
                    f"database {safe_url(self.url)} has schema version {found}, written by a newer taskfit; this "
                    f"taskfit reads up to version {SCHEMA_VERSION}. Upgrade taskfit (pip install -U taskfit) or use "
                    "another database.")
            metadata.create_all(c)
            if found is None:
                c.execute(schema_info.insert().values(id=1, version=SCHEMA_VERSION, created_at=utcnow()))
            # an older version would be migrated here, table by table, before the version row is raised

    def schema_version(self) -> int:
        """The schema version stored in the database."""
        with self._read() as c:
            return int(c.execute(select(schema_info.c.version).where(schema_info.c.id == 1)).scalar_one())

    # ---- API keys -------------------------------------------------------------------------------------------

    def create_key(self, name: str, scopes: Sequence[str] = ("predict",), rate_per_minute: int | None = None,
                   quota: int | None = None) -> str:
        """Create a key and return it; this is the only time the raw key exists outside the caller.

        Raises:
            ConflictError: a key (revoked or not) has this name already.
            ConfigError: bad name, scope, rate or quota.
        """
        name, scope_t = _check_name(name), _check_scopes(scopes)
        _check_limit("rate_per_minute", rate_per_minute)
        _check_limit("quota", quota)
        raw = KEY_PREFIX + secrets.token_urlsafe(32)
        prefix = raw[: len(KEY_PREFIX) + _LOOKUP_CHARS]
        digest = hash_key(raw)  # slow on purpose: computed before the write lock is taken
        try:
            with self._write() as c:
                self._name_free(c, name)
                c.execute(api_keys.insert().values(
                    name=name, prefix=prefix, key_hash=digest, scopes=",".join(scope_t),
                    rate_per_minute=rate_per_minute, quota=quota, used=0, revoked=False, created_at=utcnow()))
        except IntegrityError as e:  # another process created this name meanwhile (or, 2^-48, this prefix)
            with self._read() as c:
                self._name_free(c, name)
            raise ConflictError(f"could not store key {name!r}: {e.orig}; try again.") from e
        return raw

    @staticmethod
    def _name_free(c: Connection, name: str) -> None:
        old = c.execute(select(api_keys.c.revoked).where(api_keys.c.name == name)).first()
        if old is not None:
            state = "a revoked key" if old.revoked else "a key"
            raise ConflictError(f"key name {name!r} is taken by {state}; names stay unique so logs stay "
                                "unambiguous. Choose another name.")

    def verify_key(self, raw: str) -> ApiKey | None:
        """The key ``raw`` belongs to, or ``None`` when it is unknown, malformed or revoked."""
        if not isinstance(raw, str) or not raw.startswith(KEY_PREFIX) or len(raw) < len(KEY_PREFIX) + 20:
            return None
        prefix = raw[: len(KEY_PREFIX) + _LOOKUP_CHARS]
        with self._read() as c:
            row = c.execute(select(api_keys).where(api_keys.c.prefix == prefix)).first()
        if row is None:
            return None
        # scrypt is deliberately slow; once a key verified, this process remembers a fast digest of it (in memory
        # only) as long as the stored hash is unchanged. The row is still read each time, so revoking is immediate.
        fast = hashlib.sha256(raw.encode()).digest()
        seen = self._verified.get(prefix)
        if seen is None or seen[1] != row.key_hash or not hmac.compare_digest(seen[0], fast):
            if not check_key(raw, row.key_hash):
                return None
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[prefix] = (fast, row.key_hash)
        return None if row.revoked else _key(row)

    def list_keys(self) -> list[ApiKey]:
        """Every key, revoked ones included, oldest first (no secrets: the hash is never returned)."""
        with self._read() as c:
            return [_key(r) for r in c.execute(select(api_keys).order_by(api_keys.c.id))]

    def revoke_key(self, name: str) -> None:
        """Revoke the key called ``name`` (at once, for every process using this database; idempotent).

        Raises:
            NotFoundError: no key has this name.
        """
        with self._write() as c:
            res = c.execute(update(api_keys).where(api_keys.c.name == name, api_keys.c.revoked.is_(False))
                            .values(revoked=True, revoked_at=utcnow()))
            if res.rowcount == 0 and c.execute(select(api_keys.c.id).where(api_keys.c.name == name)).first() is None:
                raise NotFoundError(f"no API key named {name!r}; known keys: {self._names(c) or 'none'}.")

    def use_key(self, key_id: int, n: int = 1, quota: int | None = None) -> int:
        """Count ``n`` requests against a key and return its new total.

        Args:
            key_id: :attr:`ApiKey.id`.
            n: requests to add.
            quota: when given, count only if the total stays within it (checked and written atomically, so
                concurrent requests never overshoot) and raise otherwise.

        Raises:
            QuotaExhaustedError: ``used + n`` would exceed ``quota`` (nothing is counted).
            NotFoundError: no key has this id.
        """
        with self._write() as c:
            stmt = update(api_keys).where(api_keys.c.id == key_id).values(used=api_keys.c.used + n)
            if quota is not None:
                stmt = stmt.where(api_keys.c.used + n <= quota)
            changed = c.execute(stmt).rowcount
            row = c.execute(select(api_keys.c.name, api_keys.c.used).where(api_keys.c.id == key_id)).first()
            if row is None:
                raise NotFoundError(f"no API key with id {key_id}.")
            if not changed and quota is not None:
                raise QuotaExhaustedError(row.name, row.used, quota)
            return int(row.used)

    def _names(self, c: Connection) -> str:
        return ", ".join(repr(n) for n in c.execute(select(api_keys.c.name).order_by(api_keys.c.id)).scalars())

    # ---- request log, feedback, alerts -------------------------------------------------------------------------

    def log_predictions(self, records: Sequence[PredictionRecord], mask: bool = True) -> None:
        """Store answered predictions (the caller samples); with ``mask`` the text (and any output string that
        repeats a finding) has personal data replaced by placeholders before it reaches the database."""
        if not records:
            return
        rows = []
        for rec in records:
            text, outputs = mask_record(rec.text, rec.outputs) if mask else (rec.text, dict(rec.outputs))
            # shallow: asdict() deep-copies every field (outputs included), a measurable cost per served input
            row = {f: getattr(rec, f) for f in _RECORD_FIELDS}
            row.update(text=text, outputs=outputs)
            rows.append(row)
        with self._write() as c:
            c.execute(predictions.insert(), rows)

    def prediction(self, request_id: str) -> PredictionRecord | None:
        """The logged prediction with this request id (the latest if logged twice), or ``None``."""
        with self._read() as c:
            row = c.execute(select(predictions).where(predictions.c.request_id == request_id)
                            .order_by(predictions.c.id.desc()).limit(1)).first()
        return None if row is None else _record(row)

    def predictions(self, model: str | None = None, since: datetime | None = None,
                    limit: int = 1000) -> list[PredictionRecord]:
        """The newest ``limit`` logged predictions (of ``model``, at or after ``since``), oldest first."""
        q = select(predictions)
        if model is not None:
            q = q.where(predictions.c.model == model)
        if since is not None:
            q = q.where(predictions.c.created_at >= since)
        with self._read() as c:
            rows = list(c.execute(q.order_by(predictions.c.created_at.desc(), predictions.c.id.desc()).limit(limit)))
        return [_record(r) for r in reversed(rows)]

    def add_feedback(self, request_id: str, label: str, key_name: str | None = None) -> Feedback:
        """Record the right ``label`` for a logged prediction.

        Raises:
            NotFoundError: no prediction with this request id was logged (unknown, or not sampled).
        """
        with self._write() as c:
            pred = c.execute(select(predictions).where(predictions.c.request_id == request_id)
                             .order_by(predictions.c.id.desc()).limit(1)).first()
            if pred is None:
                raise NotFoundError(f"no logged prediction has request_id {request_id!r}; feedback needs the "
                                    "request_id returned by /v1/predict (and that request must have been logged: "
                                    "see log_sample_rate).")
            values = dict(request_id=request_id, model=pred.model, version=pred.version, text=pred.text,
                          predicted=pred.label, label=label, key_name=key_name, created_at=utcnow())
            new_id = c.execute(feedback.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Feedback(id=int(new_id), **values)

    def feedback(self, model: str | None = None, since: datetime | None = None) -> list[Feedback]:
        """Feedback rows (of ``model``, at or after ``since``), oldest first, each with the predicted label."""
        q = select(feedback)
        if model is not None:
            q = q.where(feedback.c.model == model)
        if since is not None:
            q = q.where(feedback.c.created_at >= since)
        with self._read() as c:
            return [_feedback(r) for r in c.execute(q.order_by(feedback.c.created_at, feedback.c.id))]

    def add_alert(self, rule: str, message: str, value: float, model: str | None = None) -> Alert:
        """Store an alert raised by a monitoring rule."""
        values = dict(rule=rule, model=model, message=message, value=float(value), created_at=utcnow())
        with self._write() as c:
            new_id = c.execute(alerts.insert().values(**values)).inserted_primary_key[0]  # type: ignore[index]
        return Alert(id=int(new_id), **values)  # type: ignore[arg-type]

    def alerts(self, limit: int = 100) -> list[Alert]:
        """The newest ``limit`` alerts, newest first."""
        with self._read() as c:
            rows = c.execute(select(alerts).order_by(alerts.c.created_at.desc(), alerts.c.id.desc()).limit(limit))
            return [_alert(r) for r in rows]

