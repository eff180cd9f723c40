"""Tables of the serving database and the frozen records :class:`taskfit.serve.db.Store` returns.

One SQLAlchemy Core ``MetaData`` holds every table, so SQLite and PostgreSQL get the same schema from
``create_all``. Times are stored in UTC (:class:`UTCDateTime`): SQLite keeps no time zone, so values are
converted to UTC on the way in and marked UTC on the way out; callers always see aware datetimes.

Bump :data:`SCHEMA_VERSION` with every change to these tables and teach ``Store`` to migrate from the
previous version; a database written by a newer taskfit is refused rather than misread.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from taskfit.errors import ConfigError, TaskfitError

#: version of the tables below; stored in ``taskfit_schema`` so later releases can detect and migrate old files
SCHEMA_VERSION = 1
#: what a key may do; ``admin`` implies the others
SCOPES: tuple[str, ...] = ("predict", "feedback", "admin")
#: registry stages; at most one version per model name is in ``production``
STAGES: tuple[str, ...] = ("staging", "production", "archived")


class ConflictError(ConfigError):
    """The record exists already (a key name, a model version) or the request contradicts the current state."""


class QuotaExhaustedError(TaskfitError):
    """A key has used its whole request quota.

    Attributes:
        name: the key's name; ``used`` requests counted; ``quota`` requests allowed.
    """

    def __init__(self, name: str, used: int, quota: int) -> None:
        self.name, self.used, self.quota = name, used, quota
        super().__init__(f"quota exhausted: API key {name!r} has used {used} of its {quota} requests; ask an admin "
                         "for a new key (taskfit keys create) or a larger quota.")


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned time-zone aware (SQLite drops the zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:  # naive values are taken as UTC, the convention of the whole package
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        # SQLite stores the text of the value: drop the zone so every row compares in one format
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utcnow() -> datetime:
    """The current time, UTC, aware."""
    return datetime.now(UTC)


metadata = MetaData()

schema_info = Table(
    "taskfit_schema", metadata,
    Column("id", Integer, primary_key=True),  # always 1: one row
    Column("version", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
)

api_keys = Table(
    "api_keys", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    # the non-secret first characters of the key: verification reads one row found by this
    Column("prefix", String(16), nullable=False, unique=True),
    Column("key_hash", String(200), nullable=False),  # "scrypt$n$r$p$salt$hash", base64url parts
    Column("scopes", String(100), nullable=False),  # comma-separated, from SCOPES
    Column("rate_per_minute", Integer),
    Column("quota", Integer),
    Column("used", Integer, nullable=False, default=0),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("revoked_at", UTCDateTime),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    Column("path", Text, nullable=False),
    Column("stage", String(20), nullable=False),
    Column("metrics", JSON),
    Column("created_at", UTCDateTime, nullable=False),
    Column("promoted_at", UTCDateTime),  # last time this version became production
    # the version that was production just before this one became production: rollback follows this chain
    Column("previous_version", String(100)),
    UniqueConstraint("name", "version", name="uq_model_versions_name_version"),
    Index("ix_model_versions_name", "name"),
)

predictions = Table(
    "predictions", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(100), nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    Column("text", Text, nullable=False),  # PII-masked unless the caller turned masking off
    Column("label", String(200)),
    Column("confidence", Float),
    Column("outputs", JSON),
    Column("latency_ms", Float, nullable=False),
    Column("key_name", String(100)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_predictions_request_id", "request_id"),
    Index("ix_predictions_model_created", "model", "created_at"),
    Index("ix_predictions_created_at", "created_at"),
)

feedback = Table(
    "feedback", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("request_id", String(100), nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", String(100), nullable=False),
    Column("text", Text, nullable=False),  # copied from the (masked) prediction row
    Column("predicted", String(200)),
    Column("label", String(200), nullable=False),
    Column("key_name", String(100)),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_feedback_request_id", "request_id"),
    Index("ix_feedback_model_created", "model", "created_at"),
    Index("ix_feedback_created_at", "created_at"),
)

alerts = Table(
    "alerts", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("rule", String(200), nullable=False),
    Column("model", String(200)),
    Column("message", Text, nullable=False),
    Column("value", Float, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_alerts_model", "model"),
    Index("ix_alerts_created_at", "created_at"),
)


@dataclass(frozen=True)
class ApiKey:
    """An API key as stored, without its secret (only a salted hash of it is ever kept).

    Attributes:
        id: row id (the rate limiter and ``Store.use_key`` use it).
        name: unique, human-chosen name (shown in logs as ``key_name``).
        scopes: subset of :data:`SCOPES`.
        rate_per_minute: requests allowed per minute (``None``: unlimited).
        quota: total requests allowed over the key's life (``None``: unlimited).
        used: requests counted so far.
        revoked: a revoked key is refused.
        created_at: UTC creation time.
        prefix: the non-secret start of the key (``tfk_`` + 8 characters), to tell keys apart in listings.
    """

    id: int
    name: str
    scopes: tuple[str, ...]
    rate_per_minute: int | None
    quota: int | None
    used: int
    revoked: bool
    created_at: datetime
    prefix: str = ""

    def allows(self, scope: str) -> bool:
        """Whether the key grants ``scope`` (``admin`` grants every scope)."""
        return scope in self.scopes or "admin" in self.scopes


@dataclass(frozen=True)
class ModelVersion:
    """One registered version of a served model.

    Attributes:
        name: model name (as served); ``version`` the version string, unique per name.
        path: run or model directory the version was registered from.
        stage: one of :data:`STAGES`.
        metrics: evaluation figures recorded with the version (may be empty).
        created_at: registration time; ``promoted_at`` the last time it became production (``None``: never).
        previous_version: the production version this one replaced (where ``rollback`` returns to).
    """

    name: str
    version: str
    path: str
    stage: str
    metrics: dict[str, Any] = field(default_factory=dict)
    created_at: datetime = field(default_factory=utcnow)
    promoted_at: datetime | None = None
    previous_version: str | None = None


@dataclass(frozen=True)
class Feedback:
    """A label sent back for a logged prediction, joined with what the model predicted.

    Attributes:
        id: row id; ``request_id`` the prediction it is about.
        model, version: the model that answered.
        text: the logged (PII-masked) input.
        predicted: the label the model gave; ``label`` the label the caller says is right.
        key_name: key that sent the feedback (``None`` when keys are off).
        created_at: UTC time the feedback arrived.
    """

    id: int
    request_id: str
    model: str
    version: str
    text: str
    predicted: str | None
    label: str
    key_name: str | None
    created_at: datetime


@dataclass(frozen=True)
class Alert:
    """An alert raised by a monitoring rule.

    Attributes:
        id: row id; ``rule`` the rule name; ``model`` the model it concerns (``None``: service-wide).
        message: human-readable explanation; ``value`` the measured value that crossed the threshold.
        created_at: UTC time it was raised.
    """

    id: int
    rule: str
    model: str | None
    message: str
    value: float
    created_at: datetime
