"""``taskfit serve RUN_DIR [RUN_DIR...]``: the REST service (FastAPI + uvicorn) over trained runs."""

from __future__ import annotations

from pathlib import Path

import typer

from taskfit.commands.common import console, err_console, fail, offline_defaults
from taskfit.errors import TaskfitError


def register(app: typer.Typer) -> None:
    app.command("serve")(serve)


def serve(
    run_dirs: list[Path] = typer.Argument(None, help="Finished run directories (compressed runs too). Default: "
                                          "the models of --config."),
    name: list[str] = typer.Option([], "--name", help="Model name per RUN_DIR, in order; NAME or NAME@VERSION "
                                   "(default: the directory name, version 1)."),
    port: int | None = typer.Option(None, "--port", help="TCP port (default 8000)."),
    host: str | None = typer.Option(None, "--host", help="Interface (default 127.0.0.1; 0.0.0.0 for all)."),
    backend: str | None = typer.Option(None, "--backend", help="auto, torch or onnx: require this backend."),
    config: Path | None = typer.Option(None, "--config", help="YAML file of serve settings (flags override)."),
    db: str | None = typer.Option(None, "--db", help="Database URL: sqlite:///serve.db or "
                                  "postgresql+psycopg://... (default: RUN_DIR/serve.db of the first model)."),
    no_keys: bool = typer.Option(False, "--no-keys", help="Serve without API keys (local development only)."),
    max_batch: int | None = typer.Option(None, "--max-batch", help="Most inputs per forward pass (default 32)."),
    max_wait_ms: float | None = typer.Option(None, "--max-wait-ms", help="Batching wait in ms (default 5)."),
    threads: int | None = typer.Option(None, "--threads", help="PyTorch threads for forward passes (default: "
                                       "one per core; 1 on a busy shared machine)."),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level."),
) -> None:
    """Serve models over HTTP: POST /v1/predict, GET /v1/models, /healthz, /readyz, /metrics, /docs.

    Requests need an API key (`taskfit keys create NAME --db URL`) unless --no-keys. SIGTERM or Ctrl-C stops
    taking requests, answers the queued ones, flushes the request log and exits."""
    offline_defaults()
    import uvicorn

    from taskfit.serve.app import create_app
    from taskfit.serve.settings import load_settings

    try:
        settings = load_settings(config, run_dirs or None, name, backend, port=port, host=host, db_url=db,
                                 require_keys=False if no_keys else None, max_batch=max_batch,
                                 max_wait_ms=max_wait_ms, threads=threads)
        if not settings.models:
            raise _no_models()
        with console.status(f"loading {len(settings.models)} model(s)"):
            app = create_app(settings)
    except TaskfitError as e:
        fail(e)
    if not settings.require_keys:
        err_console.print("[bold yellow]warning:[/] API keys are off (--no-keys): anyone who can reach "
                          f"{settings.host}:{settings.port} can predict and administer. Use for local development "
                          "only.", highlight=False)
    models = ", ".join(f"{m.name} v{m.version}" for m in settings.models)
    console.print(f"[bold]serving[/] {models} at http://{settings.host}:{settings.port}  "
                  f"(docs /docs, database {app.state.store.dialect})", highlight=False)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level,
                timeout_graceful_shutdown=int(settings.request_timeout_s) + 5)


def _no_models() -> TaskfitError:
    from taskfit.errors import ConfigError

    return ConfigError("nothing to serve: give RUN_DIR arguments or a --config file with models.")
