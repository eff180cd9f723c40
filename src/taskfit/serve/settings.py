"""What ``taskfit serve`` serves and how: :class:`ServeSettings`, from CLI flags or a YAML file.

A YAML file (``taskfit serve --config serve.yaml``) holds the same keys as :class:`ServeSettings`; flags given
on the command line override it. Every problem is reported at once with its dotted key, before any model loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from taskfit.config import MonitorConfig, _problems
from taskfit.errors import ConfigError

__all__ = ["ModelSpec", "ServeSettings", "load_settings", "parse_model_name"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """One served model version."""

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="Name clients use in requests ('model'); letters, digits, '.', '_', '-'.")
    path: Path = Field(description="A finished run directory (or its model/ directory), including compressed "
                       "runs written by `taskfit compress`.")
    version: str = Field("1", min_length=1, max_length=50, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
                         description="Registry version of this model ('version' in requests).")
    backend: Literal["auto", "torch", "onnx"] = Field(
        "auto", description="auto: whatever the directory holds; torch: require PyTorch weights (fp32 or "
        "torch-int8); onnx: require an ONNX model (`taskfit compress --method onnx|onnx-int8`).")


class ServeSettings(_Strict):
    """Everything ``create_app`` needs; the YAML keys of ``taskfit serve --config``."""

    models: list[ModelSpec] = Field(default_factory=list, description="Served models; empty serves only the "
                                    "routes of extra routers (a console-only app).")
    host: str = Field("127.0.0.1", description="Interface to listen on (0.0.0.0: every interface).")
    port: int = Field(8000, ge=0, le=65535, description="TCP port (0: any free port).")
    db_url: str | None = Field(None, description="Database of keys, registry and logs: sqlite:///path.db or "
                               "postgresql+psycopg://user:pw@host/db. Default: RUN_DIR/serve.db of the first model.")
    require_keys: bool = Field(True, description="Requests need an API key (`taskfit keys create`); false: "
                               "everyone may do everything (local development only).")
    public_metrics: bool = Field(False, description="Serve /metrics without a key (for a Prometheus scraper on "
                                 "a private network); otherwise it needs a key with scope admin.")
    max_batch: int = Field(32, ge=1, le=4096, description="Most inputs run in one forward pass.")
    max_wait_ms: float = Field(5.0, ge=0, le=10_000, description="How long the first request of a batch waits "
                               "for others to join it.")
    queue_size: int = Field(256, ge=1, description="Most inputs waiting per model; more are answered 429.")
    request_timeout_s: float = Field(30.0, gt=0, description="A request not answered within this time gets 504.")
    max_request_bytes: int = Field(1_000_000, ge=1024, description="Larger request bodies get 413 unread.")
    max_items: int = Field(256, ge=1, description="Most texts in one request.")
    max_text_chars: int = Field(20_000, ge=1, description="Longest accepted text, in characters.")
    max_top_k: int = Field(20, ge=1, description="Largest accepted top_k.")
    threads: int | None = Field(None, ge=1, le=256, description="PyTorch intra-op threads for the forward passes "
                                "(default: PyTorch's choice, one per core). On a machine shared with other busy "
                                "processes 1 is often faster: threads that wait for each other lose most when "
                                "the CPU is oversubscribed.")
    log_sample_rate: float = Field(1.0, ge=0, le=1, description="Share of answered inputs written to the "
                                   "request log (the monitor sees them all).")
    monitor: MonitorConfig | None = Field(None, description="Drift and alert settings; default: each run's "
                                            "recipe monitor block, else the monitor defaults.")

    @model_validator(mode="after")
    def _consistent(self) -> ServeSettings:
        seen: set[tuple[str, str]] = set()
        for i, m in enumerate(self.models):
            if (m.name, m.version) in seen:
                raise ValueError(f"models.{i}: model {m.name!r} version {m.version!r} is served twice; give each "
                                 f"copy its own version (--name {m.name}@2) or name.")
            seen.add((m.name, m.version))
        if self.max_items > self.queue_size:
            raise ValueError(f"max_items ({self.max_items}) is larger than queue_size ({self.queue_size}): such a "
                             "request could never be queued; raise queue_size or lower max_items.")
        return self

    def default_db_url(self) -> str:
        """``db_url``, else a SQLite file beside the first model (``./taskfit-serve.db`` without models)."""
        if self.db_url:
            return self.db_url
        base = self.models[0].path if self.models else Path.cwd()
        return f"sqlite:///{(base / 'serve.db') if self.models else (base / 'taskfit-serve.db')}"


def parse_model_name(value: str) -> tuple[str, str | None]:
    """``"name"`` or ``"name@version"`` (the ``--name`` flag) as (name, version or None)."""
    name, _, version = value.partition("@")
    return name, (version or None)


def _validated(tree: dict[str, Any], source: str) -> ServeSettings:
    try:
        return ServeSettings.model_validate(tree)
    except ValidationError as e:
        problems = _problems(e.errors())  # type: ignore[arg-type]
        raise ConfigError(f"{source} has {len(problems)} problem(s):", problems) from None


def load_settings(config: Path | None = None, run_dirs: list[Path] | None = None, names: list[str] | None = None,
                  backend: str | None = None, **flags: Any) -> ServeSettings:
    """Settings from an optional YAML file, then command-line values on top.

    Args:
        config: YAML file with ServeSettings keys (relative model paths resolve against its folder).
        run_dirs: models given on the command line; they replace the file's ``models``.
        names: ``name`` or ``name@version`` per run dir, in order (default: the directory's name, version 1).
        backend: backend for the command-line models.
        **flags: other ServeSettings keys; ``None`` values mean "not given".

    Raises:
        ConfigError: every problem at once, each with its dotted key, before any model loads.
    """
    tree: dict[str, Any] = {}
    if config is not None:
        if not config.is_file():
            raise ConfigError(f"--config {str(config)!r} is not a file; give a YAML file of serve settings.")
        loaded = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"{config} must hold a mapping of serve settings, got {type(loaded).__name__}.")
        tree = loaded
        for m in tree.get("models") or []:
            if isinstance(m, dict) and "path" in m and not Path(m["path"]).is_absolute():
                m["path"] = str(config.parent / m["path"])
    names = list(names or [])
    if run_dirs:
        if len(names) > len(run_dirs):
            raise ConfigError(f"--name was given {len(names)} times for {len(run_dirs)} run directories; give at "
                              "most one --name per RUN_DIR, in the same order.")
        specs = []
        for i, path in enumerate(run_dirs):
            name, version = parse_model_name(names[i]) if i < len(names) else (_default_name(path), None)
            spec: dict[str, Any] = {"name": name, "path": str(path), "version": version or "1"}
            if backend:
                spec["backend"] = backend
            specs.append(spec)
        tree["models"] = specs
    elif names:
        raise ConfigError("--name needs a RUN_DIR to name; give `taskfit serve RUN_DIR --name NAME`.")
    tree.update({k: v for k, v in flags.items() if v is not None})
    settings = _validated(tree, str(config) if config else "The serve options")
    missing = [f"models.{i}.path: {str(m.path)!r} does not exist" for i, m in enumerate(settings.models)
               if not m.path.exists()]
    if missing:
        raise ConfigError(f"{len(missing)} model path(s) not found; give finished run directories:", missing)
    return settings


def _default_name(path: Path) -> str:
    """The run directory's name (``runs/support-intents`` → ``support-intents``; a model/ dir → its run's)."""
    path = path.resolve()
    name = path.parent.name if path.name == "model" else path.name
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in name).lstrip("._-")
    return cleaned or "model"
