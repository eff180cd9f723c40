"""API-key authentication, scopes, per-key rate limits and quotas for the service's routes.

Use: ``Depends(auth.require("predict"))`` on a route. The key is read from ``Authorization: Bearer <key>`` or
``X-API-Key: <key>``. Answers, each a JSON ``{"detail": "..."}``:

* 401 with ``WWW-Authenticate: Bearer`` — no key, or an unknown / revoked one;
* 403 — the key lacks the scope (``admin`` implies every scope);
* 429 with ``Retry-After`` (seconds) — the key's requests-per-minute budget is spent (token bucket: the budget
  refills continuously, a full minute's worth may be used in a burst);
* 429 ``quota exhausted`` — the key has used its total quota (counted in the database, so every process shares it).

The rate limiter lives in the memory of one process: with several service processes each allows the full rate.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from fastapi import Depends, HTTPException
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from taskfit.serve.db import SCOPES, ApiKey, QuotaExhaustedError, Store

__all__ = ["SCOPES", "Auth", "Caller", "RateLimiter"]

_CHALLENGE = 'Bearer realm="taskfit"'


@dataclass(frozen=True)
class Caller:
    """Who is calling.

    Attributes:
        name: the API key's name (``None`` when keys are not required and none was sent).
        scopes: what the caller may do.
        key_id: the key's row id (``None`` without a key).
    """

    name: str | None
    scopes: tuple[str, ...]
    key_id: int | None


class RateLimiter:
    """Token buckets per key: ``rate`` tokens per minute, at most ``rate`` stored; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, time of last refill)

    def take(self, key_id: int, rate_per_minute: int) -> float:
        """Spend one token; return 0.0 when allowed, else the seconds until a token is available."""
        per_s = rate_per_minute / 60.0
        with self._lock:
            now = self._clock()
            tokens, last = self._buckets.get(key_id, (float(rate_per_minute), now))
            tokens = min(float(rate_per_minute), tokens + (now - last) * per_s)
            if tokens >= 1.0:
                self._buckets[key_id] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key_id] = (tokens, now)
            return (1.0 - tokens) / per_s


def _unauthorized(detail: str, error: str | None = None) -> HTTPException:
    challenge = _CHALLENGE + (f', error="{error}"' if error else "")
    return HTTPException(401, detail=detail, headers={"WWW-Authenticate": challenge})


# auto_error=False: a missing header is answered by our own 401 (with a message saying how to send a key);
# declaring both schemes makes /docs offer them in its "Authorize" dialog.
_bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer tfk_...")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="X-API-Key: tfk_...")


class Auth:
    """Checks API keys against a :class:`Store` and enforces scopes, rate limits and quotas.

    Args:
        store: where keys live.
        required: ``False`` lets every request in with every scope (local development only; a valid key,
            when sent, still names the caller in the logs).
    """

    def __init__(self, store: Store, required: bool = True) -> None:
        self.store = store
        self.required = required
        self.limiter = RateLimiter()

    def require(self, scope: str) -> Callable[..., Awaitable[Caller]]:
        """A FastAPI dependency admitting callers whose key has ``scope`` (use ``Depends(auth.require(...))``)."""
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {', '.join(SCOPES)}; got {scope!r}")

        async def dependency(bearer: HTTPAuthorizationCredentials | None = Depends(_bearer),
                             x_api_key: str | None = Depends(_header)) -> Caller:
            raw = bearer.credentials if bearer is not None else x_api_key
            if not self.required and not (raw and raw.strip()):
                return Caller(name=None, scopes=SCOPES, key_id=None)  # keys off, none sent: nothing to look up
            # key checks read and write the database: off the event loop (a sync dependency would hop threads
            # for every request, a keyless one included)
            return await asyncio.to_thread(self.check, raw, scope)

        dependency.__name__ = f"require_{scope}"
        return dependency

    def check(self, raw: str | None, scope: str) -> Caller:
        """Authenticate ``raw`` for ``scope`` and count the request (what the dependency does, without FastAPI).

        Raises:
            HTTPException: 401, 403 or 429 as described in the module docstring.
        """
        if not self.required:
            key = self.store.verify_key(raw.strip()) if raw else None
            return Caller(name=key.name if key else None, scopes=SCOPES, key_id=key.id if key else None)
        if not raw or not raw.strip():
            raise _unauthorized("missing API key: send it as 'Authorization: Bearer <key>' or 'X-API-Key: <key>' "
                                "(create one with: taskfit keys create NAME --db URL).")
        key = self.store.verify_key(raw.strip())
        if key is None:
            raise _unauthorized("invalid or revoked API key.", error="invalid_token")
        if not key.allows(scope):
            raise HTTPException(403, detail=f"API key {key.name!r} lacks the scope {scope!r} (it has: "
                                            f"{', '.join(key.scopes)}); use a key created with --scope {scope}.")
        self._limit(key)
        try:
            self.store.use_key(key.id, 1, quota=key.quota)
        except QuotaExhaustedError as e:
            raise HTTPException(429, detail=str(e)) from e
        return Caller(name=key.name, scopes=SCOPES if "admin" in key.scopes else key.scopes, key_id=key.id)

    def _limit(self, key: ApiKey) -> None:
        if key.rate_per_minute is None:
            return
        wait = self.limiter.take(key.id, key.rate_per_minute)
        if wait > 0:
            retry = max(1, math.ceil(wait))
            raise HTTPException(429, headers={"Retry-After": str(retry)},
                                detail=f"rate limit exceeded: API key {key.name!r} may send {key.rate_per_minute} "
                                       f"requests per minute; retry after {retry} s.")
