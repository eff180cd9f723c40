"""Admin routes of the service: API keys and the model registry over HTTP (every route needs scope ``admin``).

=========================================  ==========================================================
``POST   /v1/admin/keys``                  create a key; the answer holds the raw key, shown only this once (201)
``GET    /v1/admin/keys``                  every key without secrets (name, prefix, scopes, limits, used, revoked)
``DELETE /v1/admin/keys/{name}``           revoke a key (effective at once for every process on the database)
``GET    /v1/admin/models``                registered versions (``?name=`` for one model)
``POST   /v1/admin/models/{name}/promote`` ``{"version": "2", "stage": "production"}``; old production → archived
``POST   /v1/admin/models/{name}/rollback`` the previous production version returns; the current one is archived
=========================================  ==========================================================

Errors answer ``{"detail": "..."}``: 404 for an unknown key, model or version, 409 for a duplicate key name or
model version or nothing to roll back to, 422 for a bad body (unknown scope or stage, non-positive limits).
Changing the registry here records the decision; the running service keeps serving the versions it loaded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field

from taskfit.errors import ConfigError, NotFoundError
from taskfit.serve.auth import Auth
from taskfit.serve.db import ApiKey, ConflictError, ModelVersion, Store

__all__ = ["KeyCreate", "KeyCreated", "KeyInfo", "ModelVersionInfo", "PromoteRequest", "admin_router"]

Scope = Literal["predict", "feedback", "admin"]
Stage = Literal["staging", "production", "archived"]
T = TypeVar("T")


def _predict_only() -> list[Scope]:
    return ["predict"]


class KeyCreate(BaseModel):
    """Body of ``POST /v1/admin/keys``."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=100, description="Unique key name, shown in logs (no '/').")
    scopes: list[Scope] = Field(default_factory=lambda: _predict_only(), min_length=1,
                                description="What the key may do; admin implies every scope.")
    rate_per_minute: int | None = Field(None, ge=1, description="Requests per minute (token bucket); null: no limit.")
    quota: int | None = Field(None, ge=1, description="Total requests over the key's life; null: no limit.")


class KeyInfo(BaseModel):
    """An API key without its secret."""

    id: int
    name: str
    prefix: str = Field(description="The non-secret first characters of the key, to tell keys apart.")
    scopes: list[str]
    rate_per_minute: int | None
    quota: int | None
    used: int = Field(description="Requests counted so far.")
    revoked: bool
    created_at: datetime

    @classmethod
    def of(cls, key: ApiKey) -> KeyInfo:
        return cls(id=key.id, name=key.name, prefix=key.prefix, scopes=list(key.scopes),
                   rate_per_minute=key.rate_per_minute, quota=key.quota, used=key.used, revoked=key.revoked,
                   created_at=key.created_at)


class KeyCreated(KeyInfo):
    """A new key; ``key`` is the raw secret, returned only in this answer (only its hash is stored)."""

    key: str = Field(description="The API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key'.")


class ModelVersionInfo(BaseModel):
    """One registered model version."""

    name: str
    version: str
    path: str
    stage: str
    metrics: dict[str, Any]
    created_at: datetime
    promoted_at: datetime | None
    previous_version: str | None = Field(description="The production version this one replaced (rollback target).")

    @classmethod
    def of(cls, mv: ModelVersion) -> ModelVersionInfo:
        return cls(name=mv.name, version=mv.version, path=mv.path, stage=mv.stage, metrics=mv.metrics,
                   created_at=mv.created_at, promoted_at=mv.promoted_at, previous_version=mv.previous_version)


class PromoteRequest(BaseModel):
    """Body of ``POST /v1/admin/models/{name}/promote``."""

    model_config = ConfigDict(extra="forbid")
    version: str = Field(min_length=1, description="The registered version to move.")
    stage: Stage = Field("production", description="Target stage; production archives the current production.")


def _answer(call: Callable[[], T]) -> T:
    """Run a Store call, turning its errors into HTTP answers with the same message."""
    try:
        return call()
    except NotFoundError as e:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=str(e)) from e
    except ConflictError as e:  # before ConfigError: it is one
        raise HTTPException(status.HTTP_409_CONFLICT, detail=str(e)) from e
    except ConfigError as e:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail=str(e)) from e


def admin_router(store: Store, auth: Auth) -> APIRouter:
    """The ``/v1/admin`` routes over ``store``, each requiring scope ``admin`` through ``auth``."""
    router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[Depends(auth.require("admin"))])
    problems: dict[int | str, dict[str, Any]] = {
        401: {"description": "Missing, invalid or revoked API key."},
        403: {"description": "The key lacks scope admin."},
        429: {"description": "Rate limit (with Retry-After) or quota exhausted."},
    }

    @router.post("/keys", status_code=status.HTTP_201_CREATED, response_model=KeyCreated,
                 responses={**problems, 409: {"description": "A key with this name exists."}})
    def create_key(body: KeyCreate) -> KeyCreated:
        """Create an API key; the raw key is in this answer only."""
        raw = _answer(lambda: store.create_key(body.name, body.scopes, body.rate_per_minute, body.quota))
        key = next(k for k in store.list_keys() if k.name == body.name.strip())
        return KeyCreated(key=raw, **KeyInfo.of(key).model_dump())

    @router.get("/keys", response_model=list[KeyInfo], responses=problems)
    def list_keys() -> list[KeyInfo]:
        """Every key, revoked ones included, without secrets."""
        return [KeyInfo.of(k) for k in store.list_keys()]

    @router.delete("/keys/{name}", response_model=KeyInfo,
                   responses={**problems, 404: {"description": "No key has this name."}})
    def revoke_key(name: str) -> KeyInfo:
        """Revoke a key (idempotent); answers the key as it is now."""
        _answer(lambda: store.revoke_key(name))
        return KeyInfo.of(next(k for k in store.list_keys() if k.name == name))

    @router.get("/models", response_model=list[ModelVersionInfo], responses=problems)
    def list_models(name: str | None = None) -> list[ModelVersionInfo]:
        """Registered model versions, of one model when ``name`` is given."""
        return [ModelVersionInfo.of(v) for v in store.model_versions(name)]

    @router.post("/models/{name}/promote", response_model=ModelVersionInfo,
                 responses={**problems, 404: {"description": "Unknown model or version."}})
    def promote(name: str, body: PromoteRequest) -> ModelVersionInfo:
        """Move a version to a stage (production: the current production version is archived)."""
        return ModelVersionInfo.of(_answer(lambda: store.promote(name, body.version, body.stage)))

    @router.post("/models/{name}/rollback", response_model=ModelVersionInfo,
                 responses={**problems, 404: {"description": "Unknown model."},
                            409: {"description": "No earlier production version."}})
    def rollback(name: str) -> ModelVersionInfo:
        """Restore the production version the current one replaced."""
        return ModelVersionInfo.of(_answer(lambda: store.rollback(name)))

    return router
