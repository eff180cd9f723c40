"""Monitoring of a served model: a sliding window of its predictions, drift against the training reference,
alert rules (stored, logged and POSTed to a webhook with a cool-down) and a background checker.

The service (``create_app``) builds one :class:`Monitor` per served model::

    monitor = Monitor.for_model("news", run_dir, settings.monitor, store, predictor=predictor)
    monitor.start()                     # rule checks every settings.check_every_s seconds, in a daemon thread
    monitor.observe(records)            # after each answered batch: cheap, thread-safe, no model call
    ...
    monitor.stop()                      # at shutdown (joins the thread)

``observe`` only computes three string features per input (length, CJK share, vocabulary lookups) and appends
them to a deque under a lock; PSI/KS run in ``drift()``/``check()``, off the request path.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from taskfit.config import AlertRule, MonitorConfig
from taskfit.errors import ConfigError, TaskfitError
from taskfit.serve.drift import (
    FEATURES,
    NUMERIC,
    Reference,
    build_reference,
    meta_labels,
    recipe_monitor_settings,
    text_features,
)
from taskfit.serve.records import PredictionRecord

if TYPE_CHECKING:
    from taskfit.inference import Predictor
    from taskfit.serve.db import Store
    from taskfit.serve.db_schema import Alert

__all__ = ["AlertRule", "Monitor", "MonitorSettings", "build_reference"]

log = logging.getLogger(__name__)

#: the service's monitor settings are the recipe's ``monitor:`` block
MonitorSettings = MonitorConfig
MAX_OBSERVATIONS = 200_000  # bound on the window's memory whatever the traffic (~100 bytes each)


class _Obs(NamedTuple):
    ts: float  # POSIX seconds of the answer
    length: float
    language: str
    oov: float
    label: str | None
    confidence: float | None


class Monitor:
    """Window, drift and alert rules of one served model.

    Args:
        name: the served model name (alerts and feedback are filed under it).
        settings: window, thresholds, rules and webhook.
        reference: the training reference (``None``: drift is unavailable, other rules still work).
        labels: the model's labels (label_share rules and feedback are checked against them).
        store: where alerts go (``None``: alerts are only logged and posted).
        reference_error: why there is no reference, shown by ``drift()``.
    """

    def __init__(self, name: str, settings: MonitorConfig, reference: Reference | None = None,
                 labels: Sequence[str] = (), store: Store | None = None, reference_error: str | None = None) -> None:
        self.name = name
        self.settings = settings
        self.reference = reference
        self.labels = list(labels)
        self.store = store
        self.reference_error = reference_error
        self._vocab = reference.vocab if reference is not None else frozenset()
        self._obs: deque[_Obs] = deque(maxlen=MAX_OBSERVATIONS)
        self._lock = threading.Lock()
        self._last_fired: dict[str, float] = {}  # rule name → monotonic time it last fired
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._check_rules(settings.rules)

    def _check_rules(self, rules: Sequence[AlertRule]) -> None:
        """Rules naming a label the model does not have can never fire: refuse them before serving."""
        for i, rule in enumerate(rules):
            if rule.kind == "label_share" and self.labels and rule.label not in self.labels:
                raise ConfigError(f"monitor.rules.{i}.label: {rule.label!r} is not a label of model {self.name!r}; "
                                  f"expected one of {self.labels}.")
            if rule.feature == "label" and not self.labels:
                raise ConfigError(f"monitor.rules.{i}.feature: model {self.name!r} predicts no labels; use another "
                                  "feature.")

    @classmethod
    def for_model(cls, name: str, run_dir: str | Path, settings: MonitorConfig | None, store: Store | None,
                  predictor: Predictor | None = None) -> Monitor:
        """The monitor of a served run: settings default to the run's recipe ``monitor:`` block; the reference
        is read from ``RUN_DIR/monitor_reference.json`` or built once (model predictions on held-out rows) and
        cached there. Pass the service's loaded ``predictor`` to avoid loading the model twice.

        Raises:
            ConfigError: a rule names a label the model does not have.
        """
        from taskfit.inference import model_dir_of

        model_dir = model_dir_of(run_dir)
        settings = settings or recipe_monitor_settings(model_dir)
        labels = predictor.labels if predictor is not None else meta_labels(model_dir)
        try:
            reference, error = build_reference(run_dir, settings, predictor), None
        except (TaskfitError, OSError, ValueError, KeyError) as e:
            # A moved data file must not stop the service: drift is off, the other rules still work.
            log.warning("monitor %s: no drift reference (%s)", name, e)
            reference, error = None, str(e)
        return cls(name, settings, reference, labels, store, error)

    # ---- observing -------------------------------------------------------------------------------

    def observe(self, records: Sequence[PredictionRecord]) -> None:
        """Add answered predictions to the window (thread-safe; no model call)."""
        rows = [_Obs(r.created_at.timestamp(), *text_features(r.text, self._vocab), r.label, r.confidence)
                for r in records]
        with self._lock:
            self._obs.extend(rows)
            # Drop what no window can need any more (the deque is time-ordered up to thread interleaving).
            cutoff = time.time() - 60 * self._longest_window()
            while self._obs and self._obs[0].ts < cutoff:
                self._obs.popleft()

    def _longest_window(self) -> float:
        return max([self.settings.window_minutes, *(r.window_minutes or 0 for r in self.settings.rules)])

    def _window(self, minutes: float, now: float | None = None) -> list[_Obs]:
        cutoff = (now if now is not None else time.time()) - 60 * minutes
        with self._lock:
            return [o for o in self._obs if o.ts >= cutoff]

    # ---- drift -----------------------------------------------------------------------------------

    def drift(self, window_minutes: float | None = None, now: float | None = None) -> dict[str, Any]:
        """PSI (all features) and KS (numeric ones) of the last ``window_minutes`` against the reference.

        Returns:
            ``{"model", "window_minutes", "count", "min_count", "status", "features", "reference"}`` where status
            is ``no_reference``, ``insufficient_data`` (fewer than min_count predictions), ``ok`` or ``drift``
            and ``features`` maps each feature to ``{psi, ks, ks_p, mean, reference_mean, drifted, n}``
            (categorical ones: ``{psi, shares, reference_shares, drifted, n}``).
        """
        minutes = window_minutes or self.settings.window_minutes
        obs = self._window(minutes, now)
        out: dict[str, Any] = {"model": self.name, "window_minutes": minutes, "count": len(obs),
                               "min_count": self.settings.min_count, "features": {}}
        if self.reference is None:
            out.update(status="no_reference", reason=self.reference_error or "no reference")
            return out
        ref = self.reference.data
        out["reference"] = {"rows": ref.get("rows"), "source": ref.get("source"), "created": ref.get("created")}
        if len(obs) < self.settings.min_count:
            out["status"] = "insufficient_data"
            return out
        out["features"] = self.reference.compare(_columns(obs), self.settings.psi_alert, self.settings.ks_alert)
        out["status"] = "drift" if any(f["drifted"] for f in out["features"].values()) else "ok"
        return out

    # ---- rules -----------------------------------------------------------------------------------

    def evaluate(self, rule: AlertRule, now: float | None = None) -> tuple[float | None, str, int]:
        """(value, what was measured, window count) of one rule; value None when the window cannot be judged."""
        minutes = rule.window_minutes or self.settings.window_minutes
        obs = self._window(minutes, now)
        if rule.kind == "volume":
            return float(len(obs)), "predictions", len(obs)
        if len(obs) < self.settings.min_count:
            return None, "too few predictions", len(obs)
        if rule.kind == "label_share":
            labelled = [o.label for o in obs if o.label is not None]
            share = sum(1 for lab in labelled if lab == rule.label) / len(labelled) if labelled else None
            return share, f"share of label {rule.label!r}", len(obs)
        if rule.kind == "confidence_mean":
            conf = [o.confidence for o in obs if o.confidence is not None]
            return (float(np.mean(conf)) if conf else None), "mean confidence", len(obs)
        if self.reference is None:
            return None, "no drift reference", len(obs)
        feats = self.reference.compare(_columns(obs), self.settings.psi_alert, self.settings.ks_alert)
        if rule.kind == "drift_psi":
            cands = {k: v["psi"] for k, v in feats.items() if rule.feature in (None, k)}
            if not cands:
                return None, f"no {rule.feature} values", len(obs)
            worst = max(cands, key=lambda k: cands[k])
            return cands[worst], f"PSI of {worst}", len(obs)
        cands = {k: v["ks_p"] for k, v in feats.items() if k in NUMERIC and rule.feature in (None, k)}
        if not cands:
            return None, f"no {rule.feature} values", len(obs)
        worst = min(cands, key=lambda k: cands[k])
        return cands[worst], f"KS p-value of {worst}", len(obs)

    def _threshold(self, rule: AlertRule) -> tuple[str, float]:
        if rule.above is not None:
            return "above", rule.above
        if rule.below is not None:
            return "below", rule.below
        return ("above", self.settings.psi_alert) if rule.kind == "drift_psi" else ("below", self.settings.ks_alert)

    def check(self, now: float | None = None) -> list[Alert]:
        """Evaluate every rule; each that fires (and did not fire within the cool-down) is stored, logged and
        POSTed to the webhook. Returns the stored alerts (none when there is no store)."""
        fired: list[Alert] = []
        for rule in self.settings.rules:
            value, what, count = self.evaluate(rule, now)
            if value is None:
                continue
            direction, limit = self._threshold(rule)
            if not (value > limit if direction == "above" else value < limit):
                continue
            t = time.monotonic()
            last = self._last_fired.get(rule.name)
            if last is not None and t - last < 60 * self.settings.cooldown_minutes:
                continue
            self._last_fired[rule.name] = t
            minutes = rule.window_minutes or self.settings.window_minutes
            message = (f"model {self.name!r}: {what} is {value:.4g}, {direction} {limit:g}, over the last "
                       f"{minutes:g} min ({count} predictions) [rule {rule.name!r}]")
            log.warning("alert: %s", message)
            alert = self.store.add_alert(rule.name, message, float(value), self.name) if self.store else None
            if alert is not None:
                fired.append(alert)
            self._post({"rule": rule.name, "kind": rule.kind, "model": self.name, "value": float(value),
                        "threshold": limit, "direction": direction, "window_minutes": minutes, "count": count,
                        "message": message, "alert_id": getattr(alert, "id", None),
                        "created_at": datetime.now(UTC).isoformat(timespec="seconds")})
        return fired

    def _post(self, payload: dict[str, Any]) -> None:
        """POST one alert to the webhook; a slow or failing receiver is logged, never raised."""
        url = self.settings.webhook
        if not url:
            return
        import httpx

        try:
            resp = httpx.post(url, json=payload, timeout=self.settings.webhook_timeout_s)
            if resp.status_code >= 400:
                log.warning("alert webhook %s answered %s", url, resp.status_code)
        except Exception as e:  # any transport failure: the service must go on
            log.warning("alert webhook %s failed: %s", url, e)

    # ---- background checks -----------------------------------------------------------------------

    def start(self) -> None:
        """Run :meth:`check` every ``settings.check_every_s`` seconds in a daemon thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=f"taskfit-monitor-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the checker thread and wait for it (a check in progress finishes first)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(self.settings.check_every_s):
            try:
                self.check()
            except Exception:  # a failing check (database down) is logged; the service goes on
                log.exception("monitor %s: rule check failed", self.name)


def _columns(obs: Sequence[_Obs]) -> dict[str, list[Any]]:
    cols: dict[str, list[Any]] = {f: [] for f in FEATURES}
    for o in obs:
        cols["length"].append(o.length)
        cols["language"].append(o.language)
        cols["oov"].append(o.oov)
        cols["label"].append(o.label)
        cols["confidence"].append(o.confidence)
    return cols


# ---- HTTP routes ---------------------------------------------------------------------------------


def _plain(obj: Any) -> dict[str, Any]:
    """A stored record (frozen dataclass) as JSON-able dict (times in ISO 8601)."""
    from dataclasses import asdict

    return {k: v.isoformat() if isinstance(v, datetime) else v for k, v in asdict(obj).items()}


class FeedbackIn(BaseModel):
    """Body of POST /v1/feedback (module level: FastAPI resolves the route's string annotations against the
    module's globals, so a class local to monitor_router breaks /openapi.json)."""

    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(min_length=1, max_length=200, description="request_id from /v1/predict.")
    label: str = Field(min_length=1, max_length=200, description="The label that would have been right.")


def monitor_router(monitors: dict[str, Monitor], store: Store, auth: Any) -> Any:
    """Routes for feedback, drift and alerts.

    - ``POST /v1/feedback`` ``{"request_id", "label"}`` (scope feedback): 404 for an unknown request id, 422 for
      a label the model does not have (listing its labels); answers the stored feedback row.
    - ``GET /v1/monitor/{model}/drift[?window_minutes=M]`` (scope admin): :meth:`Monitor.drift`.
    - ``GET /v1/alerts[?limit=N]`` (scope admin): the newest alerts, newest first.
    """
    from fastapi import APIRouter, Depends, HTTPException, Query

    from taskfit.errors import NotFoundError

    router = APIRouter(tags=["monitoring"])

    @router.post("/v1/feedback", summary="Correct the label of a logged prediction")
    def feedback(body: FeedbackIn, caller: Any = Depends(auth.require("feedback"))) -> dict[str, Any]:
        record = store.prediction(body.request_id)
        if record is None:
            raise HTTPException(404, f"no logged prediction has request_id {body.request_id!r}; use a request_id "
                                     "returned by /v1/predict (only logged requests can get feedback).")
        mon = monitors.get(record.model)
        labels = mon.labels if mon is not None else []
        if labels and body.label not in labels:
            raise HTTPException(422, f"label {body.label!r} is not a label of model {record.model!r}; expected one "
                                     f"of: {', '.join(labels)}.")
        try:
            row = store.add_feedback(body.request_id, body.label, key_name=getattr(caller, "name", None))
        except NotFoundError as e:  # the row went away between the two calls (retention)
            raise HTTPException(404, str(e)) from None
        return _plain(row)

    @router.get("/v1/monitor/{model}/drift", summary="Drift of recent traffic against the training reference")
    def drift(model: str, window_minutes: float | None = Query(None, gt=0, le=60 * 24 * 30),
              _: Any = Depends(auth.require("admin"))) -> dict[str, Any]:
        mon = monitors.get(model)
        if mon is None:
            raise HTTPException(404, f"model {model!r} is not served; monitored models: "
                                     f"{', '.join(sorted(monitors)) or 'none'}.")
        return mon.drift(window_minutes)

    @router.get("/v1/alerts", summary="Recent alerts, newest first")
    def alerts(limit: int = Query(100, ge=1, le=1000), _: Any = Depends(auth.require("admin"))) -> list[dict[str, Any]]:
        return [_plain(a) for a in store.alerts(limit)]

    return router
