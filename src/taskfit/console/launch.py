"""Launching runs from the console: the form (generated from the recipe's JSON schema), its server-side
validation (the same checks as ``taskfit validate``), and ``taskfit train`` subprocesses with live progress.

The form is a flat list of fields keyed by dotted recipe paths (``train.lr``, ``method.r``); variant fields of a
discriminated block (the method's and the task's options) carry ``when`` = the variant they belong to, and
fields of an optional block (``fairness``, ``adversarial``...) carry ``block`` so the page can switch the whole
block on or off. Validation errors come back per field, in the project's own wording.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import signal
import subprocess
import sys
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from taskfit.config import Recipe, parse_recipe
from taskfit.console.runs import read_history
from taskfit.errors import ConfigError, TaskfitError

__all__ = ["FormError", "Job", "JobManager", "form_fields", "recipe_from_form"]

#: fields the console sets itself: runs always land in the console's runs directory
HIDDEN = {"output.dir", "output.overwrite"}
#: blocks the form leaves out: federated settings belong to `taskfit federate`, not to `taskfit train`
SKIPPED_BLOCKS = {"federated"}
_NAME = re.compile(r"^[^/\\\0]+$")


class FormError(ConfigError):
    """A launch form with problems; ``fields`` maps each dotted field key (or ``""``) to its messages."""

    def __init__(self, message: str, fields: dict[str, list[str]]) -> None:
        self.fields = fields
        super().__init__(message, [f"{k or '(form)'}: {m}" for k, ms in fields.items() for m in ms])


# ---- the form ------------------------------------------------------------------------------------------
def _deref(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        extra = {k: v for k, v in node.items() if k != "$ref"}
        node = {**defs[node["$ref"].rsplit("/", 1)[-1]], **extra}
    return node


def _leaf(key: str, node: dict[str, Any], defs: dict[str, Any], required: bool) -> dict[str, Any]:
    """One input: kind text | number | integer | bool | select | yaml (lists, unions, nested rules)."""
    options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
    nullable = len(options) < len(node.get("anyOf", []))
    base = _deref(options[0], defs) if len(options) == 1 else node
    kind, choices = "yaml", None
    if "enum" in base:
        kind, choices = "select", [str(c) for c in base["enum"]]
    elif base.get("type") == "boolean":
        kind = "bool"
    elif base.get("type") in ("integer", "number"):
        kind = base["type"]
    elif base.get("type") == "string":
        kind = "text"
    return {"key": key, "label": node.get("title") or key.rsplit(".", 1)[-1], "kind": kind, "options": choices,
            "default": node.get("default"), "description": node.get("description", ""), "required": required,
            "nullable": nullable}


def _walk(node: dict[str, Any], key: str, defs: dict[str, Any], out: list[dict[str, Any]],
          ctx: dict[str, Any], required: bool, blocks: dict[str, str]) -> None:
    node = _deref(node, defs)
    if "oneOf" in node and "discriminator" in node:  # method / task: a select, then each variant's own fields
        mapping = node["discriminator"]["mapping"]
        default = getattr(Recipe.model_fields[key].default_factory, "__name__", "")  # FullConfig, ...
        default = next((v for v, r in mapping.items() if r.endswith("/" + default)), None)
        out.append({**_leaf(f"{key}.name", {"title": "name", "description": node.get("description", "")},
                            defs, True), "kind": "select", "options": list(mapping), "default": default, **ctx})
        for variant, ref in mapping.items():
            sub = _deref({"$ref": ref}, defs)
            for prop, child in sub.get("properties", {}).items():
                if prop != "name":
                    _walk(child, f"{key}.{prop}", defs, out, {**ctx, "when": {f"{key}.name": variant}},
                          prop in sub.get("required", []), blocks)
        return
    options = [_deref(o, defs) for o in node.get("anyOf", []) if o.get("type") != "null"]
    if len(options) == 1 and options[0].get("type") == "object" and "properties" in options[0]:
        # An optional block (adversarial: null = off): its fields plus an on/off switch on the page.
        blocks[key] = node.get("description", "")
        _walk(options[0], key, defs, out, {**ctx, "block": key}, required, blocks)
        return
    if node.get("type") == "object" and "properties" in node:
        for prop, child in node["properties"].items():
            _walk(child, f"{key}.{prop}" if key else prop, defs, out, ctx, prop in node.get("required", []), blocks)
        return
    if key not in HIDDEN:
        out.append({**_leaf(key, node, defs, required), **ctx})


@functools.cache
def form_fields() -> dict[str, Any]:
    """The launch form, generated from ``Recipe.model_json_schema()``.

    Returns:
        ``{"fields": [...], "blocks": {optional block (dotted): its description}}``.
    """
    schema = Recipe.model_json_schema()
    defs = schema.get("$defs", {})
    props = {k: v for k, v in schema["properties"].items() if k not in SKIPPED_BLOCKS}
    fields: list[dict[str, Any]] = []
    blocks: dict[str, str] = {}
    _walk({"type": "object", "properties": props, "required": schema.get("required", [])}, "", defs, fields, {},
          True, blocks)
    return {"fields": fields, "blocks": blocks}


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value


def _coerce(spec: dict[str, Any], raw: Any) -> Any:
    """A form value as the recipe expects it: numbers and YAML fields parsed, text kept as typed.

    Unparseable numbers are passed on as text so the recipe validation names them in its own words.
    """
    if not isinstance(raw, str) or spec["kind"] in ("text", "select"):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def recipe_from_form(values: dict[str, Any], blocks: list[str], runs_root: Path, base_dir: Path) -> Recipe:
    """Validate a submitted launch form into a recipe that writes its run under ``runs_root``.

    Args:
        values: dotted field key → value (strings from inputs, booleans from checkboxes); empty = default.
        blocks: optional blocks switched on (their required keys must then be given).
        runs_root: the console's runs directory (``output.dir``).
        base_dir: where relative data paths resolve (the console's working directory).

    Raises:
        FormError: every problem at once, per field: unknown fields, schema errors, missing files, columns
            or model (the checks of ``taskfit validate``), and a run name already taken.
    """
    from taskfit.validate import input_problems

    spec = {f["key"]: f for f in form_fields()["fields"]}  # cached: the schema does not change at run time
    errors: dict[str, list[str]] = {}
    tree: dict[str, Any] = {}
    form = form_fields()
    for block in blocks:
        if block in form["blocks"]:
            _set(tree, block, {})
    for key, raw in values.items():
        if key not in spec:
            errors.setdefault(key, []).append(f"unknown form field {key!r}; the recipe has no such key here.")
            continue
        if raw is None or raw == "":
            continue
        block = spec[key].get("block")
        if block and block not in blocks:
            continue  # fields of a block that is switched off are not part of the recipe
        _set(tree, key, _coerce(spec[key], raw))
    name = str(values.get("output.name") or "").strip()
    if name and (name.startswith(".") or not _NAME.match(name)):
        errors.setdefault("output.name", []).append(
            f"run name {name!r} must be a plain folder name (no '/', '\\' or leading '.'); pick another.")
    if not name:
        task = (tree.get("task") or {}).get("name", "text_classification")
        name = f"{task}-{datetime.now():%Y%m%d-%H%M%S}"
    tree.setdefault("output", {}).update({"dir": str(runs_root), "name": name, "overwrite": False})
    if (runs_root / name).exists():
        errors.setdefault("output.name", []).append(
            f"a run named {name!r} already exists in {runs_root}; pick another name.")
    if errors:
        raise FormError(f"The launch form has {sum(map(len, errors.values()))} problem(s).", errors)
    try:
        recipe = parse_recipe(tree, base_dir=base_dir)
        for key in ("train", "valid", "test"):  # the subprocess may run elsewhere: pin paths absolute
            p = getattr(recipe.data, key)
            if p is not None and not p.is_absolute():
                setattr(recipe.data, key, (base_dir / p).resolve())
        problems = input_problems(recipe)
    except ConfigError as e:
        problems = e.problems or [f": {e}"]
    except TaskfitError as e:
        problems = [f": {e}"]
    if problems:
        for line in problems:
            key, _, msg = line.partition(": ")
            target = max((k for k in spec if key == k or key.startswith(k + ".")), key=len, default="")
            errors.setdefault(target, []).append(msg if target else line)
        raise FormError(f"The recipe has {len(problems)} problem(s).", errors)
    return recipe


# ---- jobs ----------------------------------------------------------------------------------------------
@dataclass
class Job:
    """One ``taskfit train`` subprocess started by the console."""

    id: str
    run: str
    run_dir: Path
    log: Path
    proc: subprocess.Popen[bytes]
    started: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    max_steps: int | None = None

    def status(self) -> str:
        rc = self.proc.poll()
        return "running" if rc is None else ("finished" if rc == 0 else "failed")

    def describe(self, tail_chars: int = 4000) -> dict[str, Any]:
        """Status, exit code, the loss history so far and the end of the log (for the progress view)."""
        history = read_history(self.run_dir / "metrics.jsonl")
        step = history["train"][-1]["step"] if history["train"] else 0
        try:
            with open(self.log, "rb") as fh:
                fh.seek(max(0, self.log.stat().st_size - tail_chars))
                tail = fh.read().decode("utf-8", "replace")
        except OSError:
            tail = ""
        return {"id": self.id, "run": self.run, "status": self.status(), "returncode": self.proc.poll(),
                "started": self.started, "step": step, "max_steps": self.max_steps, "history": history,
                "log": tail}


class JobManager:
    """Starts, tracks and stops the console's training subprocesses (at most ``max_running`` at a time)."""

    def __init__(self, runs_root: Path, max_running: int = 1) -> None:
        self.runs_root = Path(runs_root).resolve()
        self.max_running = max_running
        self.jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def running(self) -> list[Job]:
        return [j for j in self.jobs.values() if j.status() == "running"]

    def start(self, recipe: Recipe) -> Job:
        """Write the recipe beside a log under ``RUNS/.console/jobs/<id>/`` and start ``taskfit train`` on it.

        Raises:
            ConfigError: ``max_running`` trainings already run (the machine's cores are busy).
        """
        with self._lock:
            busy = self.running()
            if len(busy) >= self.max_running:
                raise ConfigError(f"{len(busy)} training(s) already running ({', '.join(j.run for j in busy)}); "
                                  f"the console runs at most {self.max_running} at a time. Wait for it to finish.")
            job_id = uuid.uuid4().hex[:12]
            folder = self.runs_root / ".console" / "jobs" / job_id
            folder.mkdir(parents=True)
            (folder / "recipe.yaml").write_text(recipe.to_yaml(), encoding="utf-8")
            log = folder / "train.log"
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "120", "PYTHONIOENCODING": "utf-8"}
            with open(log, "wb") as out:
                # Own process group: stopping the console stops the training and anything it started.
                proc = subprocess.Popen([sys.executable, "-m", "taskfit", "train", str(folder / "recipe.yaml")],
                                        stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                        start_new_session=True)
            name = str(recipe.output.name)
            job = Job(job_id, name, self.runs_root / name, log, proc, max_steps=recipe.train.max_steps)
            self.jobs[job_id] = job
            return job

    def get(self, job_id: str) -> Job | None:
        return self.jobs.get(job_id)

    def stop_all(self, timeout: float = 10.0) -> None:
        """Interrupt every running training (SIGINT: it keeps its last checkpoint), then kill what is left."""
        for job in self.running():
            try:
                os.killpg(job.proc.pid, signal.SIGINT)
            except ProcessLookupError:
                continue
        for job in list(self.jobs.values()):
            try:
                job.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(job.proc.pid, signal.SIGKILL)
                job.proc.wait()
