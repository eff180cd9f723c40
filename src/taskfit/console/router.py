"""The console's routes: static pages under ``/console/`` and JSON APIs under ``/v1/console/``.

The pages (one HTML file, its script and style, and plotly.js from the installed plotly wheel) need no key:
they hold no data. Every data route needs an API key (``X-API-Key`` or ``Authorization: Bearer``), checked by
the serving stack's :class:`~taskfit.serve.auth.Auth`: scope ``admin`` for runs, files, launching, the model
registry and alerts; ``/v1/console/session`` (which scopes does this key have?) takes any valid key, and the
playground calls the service's own ``/v1/models`` and ``/v1/predict`` (scope ``predict``).

This module deliberately has no ``from __future__ import annotations``: FastAPI reads the endpoint signatures
at run time.
"""

import dataclasses
import os
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, HTTPException, Query
from fastapi.encoders import jsonable_encoder
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse

from taskfit.console.launch import FormError, JobManager, form_fields, recipe_from_form
from taskfit.console.runs import RunNotFound, RunsDir
from taskfit.errors import ConfigError, TaskfitError

__all__ = ["console_router", "plotly_js"]

STATIC = Path(str(resources.files("taskfit.console") / "static"))
#: what the console's own pages may load: scripts only from here (no inline script), plotly's inline styles,
#: plots' data: images; a report is shown in a sandboxed frame without scripts
PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
            "frame-src 'self' blob: data:; object-src 'none'; base-uri 'none'; frame-ancestors 'self'")
#: a run's own files (report.html ...) never run scripts in the console's origin, even when opened directly
FILE_HEADERS = {"Content-Security-Policy": "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'",
                "X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"}
_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
          ".css": "text/css; charset=utf-8"}


def plotly_js() -> Path:
    """plotly.min.js inside the installed plotly wheel (interactive plots with no network).

    Raises:
        ConfigError: plotly is not installed (it comes with the ``serve`` extra).
    """
    try:
        path = Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))
    except ModuleNotFoundError:
        raise ConfigError("The console draws its plots with plotly.js from the plotly package, which is not "
                          "installed; install it with `pip install taskfit[serve]`.") from None
    if not path.is_file():
        raise ConfigError(f"plotly is installed but has no {path}; reinstall it (`pip install --force-reinstall "
                          "plotly`).")
    return path


def _plain(obj: Any) -> Any:
    """Store records (frozen dataclasses with datetimes) as JSON-ready dicts."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    return jsonable_encoder(obj)


def _http(e: TaskfitError) -> HTTPException:
    """404 for things that do not exist, 422 for bad input (the message is the error's own)."""
    status = 404 if isinstance(e, (RunNotFound, LookupError)) else 422
    return HTTPException(status_code=status, detail=str(e))


def console_router(runs: str | Path, store: Any, auth: Any, jobs: JobManager | None = None,
                   base_dir: str | Path | None = None) -> APIRouter:
    """The web console as a router for ``create_app(settings, extra_routers=[...])``.

    Args:
        runs: the runs directory the console lists and launches into.
        store: the serving :class:`~taskfit.serve.db.Store` (model registry, alerts).
        auth: the serving :class:`~taskfit.serve.auth.Auth` over that store.
        jobs: the launcher of training subprocesses (default: one for ``runs``, one training at a time); the
            caller stops them with ``jobs.stop_all()`` when the server ends.
        base_dir: where relative data paths of the launch form resolve (default: the working directory).
    """
    runs_dir = RunsDir(runs)
    jobs = jobs or JobManager(runs_dir.root)
    base = Path(base_dir or os.getcwd()).resolve()
    admin = [Depends(auth.require("admin"))]
    router = APIRouter()

    # ---- pages -------------------------------------------------------------------------------------
    @router.get("/console", include_in_schema=False)
    def console_root() -> RedirectResponse:
        return RedirectResponse("/console/")

    @router.get("/console/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type=_TYPES[".html"],
                            headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-cache"})

    @router.get("/console/static/{name}", include_in_schema=False)
    def static(name: str) -> FileResponse:
        if name == "plotly.min.js":
            return FileResponse(plotly_js(), media_type=_TYPES[".js"], headers={"Cache-Control": "max-age=86400"})
        path = STATIC / name
        if "/" in name or name.startswith(".") or path.suffix not in _TYPES or not path.is_file():
            raise HTTPException(404, f"No console file {name!r}.")
        return FileResponse(path, media_type=_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})

    # ---- who am I ----------------------------------------------------------------------------------
    @router.get("/v1/console/session", tags=["console"], summary="The key's name and scopes (any valid key).")
    def session(caller: Any = Depends(auth.require("predict"))) -> dict[str, Any]:
        return {"name": caller.name, "scopes": list(caller.scopes), "runs": str(runs_dir.root)}

    # ---- runs --------------------------------------------------------------------------------------
    @router.get("/v1/console/runs", tags=["console"], dependencies=admin, summary="Every run, newest first.")
    def list_runs() -> dict[str, Any]:
        rows = runs_dir.rows()
        for job in jobs.jobs.values():  # a run the console started knows better whether it still runs
            for row in rows:
                if row["name"] == job.run and job.status() != "finished":
                    row["status"], row["job"] = job.status(), job.id
        return {"runs": rows, "root": str(runs_dir.root)}

    @router.get("/v1/console/runs/{name}", tags=["console"], dependencies=admin,
                summary="One run: metrics, loss history, confusion matrix, fairness, explanations, files.")
    def run_detail(name: str) -> dict[str, Any]:
        try:
            return jsonable_encoder(runs_dir.detail(name))
        except TaskfitError as e:
            raise _http(e) from None

    @router.get("/v1/console/runs/{name}/files/{path:path}", tags=["console"], dependencies=admin,
                summary="A report or other document of a run (never a path outside the run).")
    def run_file(name: str, path: str) -> FileResponse:
        try:
            target, media = runs_dir.file(name, path)
        except TaskfitError as e:
            raise _http(e) from None
        return FileResponse(target, media_type=media, headers=FILE_HEADERS)

    @router.get("/v1/console/compare", tags=["console"], dependencies=admin,
                summary="Two or more runs: metrics side by side and their loss histories.")
    def compare(runs: list[str] = Query(..., description="Run names (repeat: ?runs=a&runs=b).")) -> dict[str, Any]:
        try:
            return jsonable_encoder(runs_dir.compare(runs))
        except TaskfitError as e:
            raise _http(e) from None

    # ---- launching ---------------------------------------------------------------------------------
    @router.get("/v1/console/form", tags=["console"], dependencies=admin,
                summary="The launch form's fields, generated from the recipe's JSON schema.")
    def form() -> dict[str, Any]:
        return form_fields()

    @router.post("/v1/console/launch", tags=["console"], dependencies=admin, status_code=202,
                 summary="Validate a launch form and start `taskfit train` on it (422 with per-field errors).")
    def launch(values: dict[str, Any] = Body(..., embed=True),
               blocks: list[str] = Body(default_factory=list, embed=True)) -> Any:
        try:
            recipe = recipe_from_form(values, blocks, runs_dir.root, base)
            job = jobs.start(recipe)
        except FormError as e:
            return JSONResponse({"detail": str(e), "errors": e.fields}, status_code=422)
        except ConfigError as e:  # busy: another training runs
            return JSONResponse({"detail": str(e), "errors": {"": [str(e)]}}, status_code=409)
        return {"job": job.id, "run": job.run}

    @router.get("/v1/console/jobs", tags=["console"], dependencies=admin, summary="Trainings started here.")
    def list_jobs() -> dict[str, Any]:
        return {"jobs": [{k: v for k, v in j.describe(0).items() if k not in ("history", "log")}
                         for j in jobs.jobs.values()]}

    @router.get("/v1/console/jobs/{job_id}", tags=["console"], dependencies=admin,
                summary="A training's status, loss history so far and the end of its log.")
    def job_status(job_id: str) -> dict[str, Any]:
        job = jobs.get(job_id)
        if job is None:
            raise HTTPException(404, f"No job {job_id!r}; jobs: {', '.join(jobs.jobs) or '(none)'}.")
        return jsonable_encoder(job.describe())

    # ---- operations: registry and alerts -----------------------------------------------------------
    @router.get("/v1/console/registry", tags=["console"], dependencies=admin, summary="Registered model versions.")
    def registry() -> dict[str, Any]:
        return {"versions": [_plain(v) for v in store.model_versions()]}

    @router.post("/v1/console/registry/{name}/promote", tags=["console"], dependencies=admin,
                 summary="Promote a version (the previous production version is archived).")
    def promote(name: str, version: str = Body(..., embed=True),
                stage: str = Body("production", embed=True)) -> Any:
        try:
            return _plain(store.promote(name, version, stage))
        except TaskfitError as e:
            raise _http(e) from None

    @router.post("/v1/console/registry/{name}/rollback", tags=["console"], dependencies=admin,
                 summary="Make the previous production version production again.")
    def rollback(name: str) -> Any:
        try:
            return _plain(store.rollback(name))
        except TaskfitError as e:
            raise _http(e) from None

    @router.get("/v1/console/alerts", tags=["console"], dependencies=admin, summary="Recent alerts, newest first.")
    def alerts(limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
        return {"alerts": [_plain(a) for a in store.alerts(limit)]}

    return router
