"""The model registry part of :class:`taskfit.serve.db.Store`: versions, stages, promote and rollback.

Stages are ``staging``, ``production`` and ``archived``; at most one version per model name is in production.
Promoting a version to production archives the one before it, stamps ``promoted_at`` and remembers that
previous version on the promoted row. Rollback follows that link: the current production version is archived
and the one it replaced becomes production again; a second rollback follows the restored version's own link,
one step further back (1 → 2 → 3, rollback gives 2, rollback again gives 1).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

from sqlalchemy import Connection, Row, select, update
from sqlalchemy.exc import IntegrityError

from taskfit.errors import ConfigError, NotFoundError
from taskfit.serve.db_schema import STAGES, ConflictError, ModelVersion, model_versions, utcnow

_MV = model_versions.c


def _version(row: Row[Any]) -> ModelVersion:
    return ModelVersion(name=row.name, version=row.version, path=row.path, stage=row.stage,
                        metrics=dict(row.metrics or {}), created_at=row.created_at, promoted_at=row.promoted_at,
                        previous_version=row.previous_version)


def _check_stage(stage: str) -> None:
    if stage not in STAGES:
        raise ConfigError(f"stage must be one of {', '.join(STAGES)}; got {stage!r}.")


def _last_production(rows: list[Row[Any]], other_than: str) -> Row[Any] | None:
    """The version that was production most recently (by ``promoted_at``), ``other_than`` excluded."""
    been = [r for r in rows if r.promoted_at is not None and r.version != other_than]
    return max(been, key=lambda r: (r.promoted_at, r.id)) if been else None


def _to_production(c: Connection, rows: list[Row[Any]], version: str) -> None:
    """Make ``version`` (one of ``rows``) production, archiving the current one and linking back to it."""
    current = next((r for r in rows if r.stage == "production" and r.version != version), None)
    before = current if current is not None else _last_production(rows, other_than=version)
    if current is not None:
        c.execute(update(model_versions).where(_MV.id == current.id).values(stage="archived"))
    c.execute(update(model_versions).where(_MV.name == rows[0].name, _MV.version == version).values(
        stage="production", promoted_at=utcnow(), previous_version=before.version if before is not None else None))


class RegistryMixin:
    """Registry methods; :class:`~taskfit.serve.db.Store` provides ``_read`` and ``_write``."""

    def _read(self) -> AbstractContextManager[Connection]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    def _write(self) -> AbstractContextManager[Connection]:  # pragma: no cover - provided by Store
        raise NotImplementedError

    def _rows(self, c: Connection, name: str) -> list[Row[Any]]:
        """Every version of ``name``, locked for update on PostgreSQL (two promotes of one model queue)."""
        rows = list(c.execute(select(model_versions).where(_MV.name == name).order_by(_MV.id).with_for_update()))
        if not rows:
            known = ", ".join(repr(n) for n in c.execute(select(_MV.name).distinct().order_by(_MV.name)).scalars())
            raise NotFoundError(f"no registered model named {name!r}; registered models: {known or 'none'} "
                                "(add one with taskfit registry add NAME VERSION PATH).")
        return rows

    def register_model(self, name: str, version: str, path: str, stage: str = "staging",
                       metrics: Mapping[str, Any] | None = None) -> ModelVersion:
        """Register a new version (in production: the previous production version is archived).

        Raises:
            ConflictError: this name and version are registered already.
            ConfigError: empty name/version or an unknown stage.
        """
        _check_stage(stage)
        for what, value in (("model name", name), ("version", version)):
            if not isinstance(value, str) or not value.strip() or "/" in value:
                raise ConfigError(f"{what} must be a non-empty text without '/'; got {value!r}.")
        now = utcnow()
        with self._write() as c:
            rows = list(c.execute(select(model_versions).where(_MV.name == name).with_for_update()))
            for r in rows:
                if r.version == version:
                    raise ConflictError(f"model {name!r} version {version!r} is registered already (stage "
                                        f"{r.stage}, path {r.path}); register a new version string instead.")
            try:
                c.execute(model_versions.insert().values(
                    name=name, version=version, path=str(path), stage="staging", metrics=dict(metrics or {}),
                    created_at=now))
            except IntegrityError as e:  # registered by another process a moment ago
                raise ConflictError(f"model {name!r} version {version!r} is registered already; register a new "
                                    "version string instead.") from e
            if stage == "production":
                _to_production(c, rows + list(c.execute(select(model_versions).where(
                    _MV.name == name, _MV.version == version))), version)
            elif stage != "staging":
                c.execute(update(model_versions).where(_MV.name == name, _MV.version == version).values(stage=stage))
        return self._get(name, version)

    def _get(self, name: str, version: str) -> ModelVersion:
        with self._read() as c:
            row = c.execute(select(model_versions).where(_MV.name == name, _MV.version == version)).one()
        return _version(row)

    def model_versions(self, name: str | None = None) -> list[ModelVersion]:
        """Registered versions (of ``name``, or all), by name then registration order."""
        q = select(model_versions)
        if name is not None:
            q = q.where(_MV.name == name)
        with self._read() as c:
            return [_version(r) for r in c.execute(q.order_by(_MV.name, _MV.id))]

    def production(self, name: str) -> ModelVersion | None:
        """The version of ``name`` in production, or ``None``."""
        with self._read() as c:
            row = c.execute(select(model_versions).where(_MV.name == name, _MV.stage == "production")).first()
        return None if row is None else _version(row)

    def promote(self, name: str, version: str, stage: str = "production") -> ModelVersion:
        """Move a version to ``stage``; to production, the previous production version is archived.

        Raises:
            NotFoundError: unknown model name or version (the message lists what exists).
            ConfigError: unknown stage.
        """
        _check_stage(stage)
        with self._write() as c:
            rows = self._rows(c, name)
            target = next((r for r in rows if r.version == version), None)
            if target is None:
                raise NotFoundError(f"model {name!r} has no version {version!r}; its versions: "
                                    f"{', '.join(repr(r.version) for r in rows)}.")
            if stage == "production" and target.stage != "production":
                _to_production(c, rows, version)
            elif stage != "production":
                c.execute(update(model_versions).where(_MV.id == target.id).values(stage=stage))
        return self._get(name, version)

    def rollback(self, name: str) -> ModelVersion:
        """Make the previous production version of ``name`` production again; the current one is archived.

        Raises:
            NotFoundError: no model called ``name`` is registered.
            ConflictError: no version of ``name`` was in production before the current one.
        """
        with self._write() as c:
            rows = self._rows(c, name)
            by_version = {r.version: r for r in rows}
            current = next((r for r in rows if r.stage == "production"), None)
            if current is not None:
                previous = by_version.get(current.previous_version) if current.previous_version else None
            else:  # nothing in production (demoted by hand): the last version that was production returns
                previous = _last_production(rows, other_than="")
            if previous is None:
                now = f"version {current.version!r} is" if current is not None else "no version is"
                raise ConflictError(f"model {name!r} has no earlier production version to roll back to ({now} "
                                    "in production now); promote a version instead: taskfit registry promote "
                                    f"{name} VERSION.")
            if current is not None:
                c.execute(update(model_versions).where(_MV.id == current.id).values(stage="archived"))
            # the restored version keeps its own link, so the next rollback goes one step further back
            c.execute(update(model_versions).where(_MV.id == previous.id).values(stage="production",
                                                                                 promoted_at=utcnow()))
        return self._get(name, previous.version)

