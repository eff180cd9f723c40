"""Reading run directories for the console: the runs list, one run's page data, comparisons, and safe file access.

Everything here only *reads* what ``taskfit train`` / ``audit`` / ``explain`` wrote (recipe.yaml, metrics.jsonl,
results.json, model/taskfit.json, audit.json, report.html ...). A run name is always one direct child folder of
the runs root and a file is always inside its run folder: names and paths that would leave them (``..``,
absolute paths, symbolic links pointing out, hidden files) are refused, so a key holder cannot read other files
of the machine through the console.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from taskfit.errors import ConfigError, DataError

__all__ = ["RunNotFound", "RunsDir", "read_history"]

#: file types the console serves from a run directory (reports, audits, cards, metrics); nothing executable
SERVED_SUFFIXES = {".html": "text/html; charset=utf-8", ".json": "application/json", ".jsonl": "application/json",
                   ".md": "text/markdown; charset=utf-8", ".yaml": "text/plain; charset=utf-8",
                   ".txt": "text/plain; charset=utf-8", ".csv": "text/csv; charset=utf-8", ".png": "image/png"}
#: documents the run page links to when they exist
LINKED_FILES = ("report.html", "audit.html", "model_card.md", "results.json", "audit.json", "recipe.yaml")
#: optional predictions file ({"label": predicted, "true_label": truth} per line) for a confusion matrix
PREDICTIONS_FILE = "predictions.jsonl"
#: optional explanations written by ``taskfit explain --json > RUN_DIR/explanations.json``
EXPLANATIONS_FILE = "explanations.json"


class RunNotFound(DataError):
    """A run name or a file of a run that does not exist (or that the console refuses to serve)."""


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # absent, or being rewritten right now: the page shows what is there


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_history(path: Path) -> dict[str, list[dict[str, Any]]]:
    """metrics.jsonl as ``{"train": [{step, epoch, train_loss, lr}...], "valid": [{step, valid_*}...]}``.

    A resumed run may log a step twice; the later record wins. A line being written right now (no newline
    yet, or cut short) is skipped rather than failing the page.
    """
    train: dict[int, dict[str, Any]] = {}
    valid: dict[int, dict[str, Any]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        lines = []
    for line in lines:
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("step"), int):
            continue
        if any(k.startswith("valid_") for k in rec):
            valid[rec["step"]] = rec
        elif "train_loss" in rec:
            train[rec["step"]] = rec
    return {"train": [train[k] for k in sorted(train)], "valid": [valid[k] for k in sorted(valid)]}


def _confusion_from_predictions(path: Path, labels: list[str]) -> dict[str, Any] | None:
    """A confusion matrix counted from a predictions file with ``label`` (predicted) and ``true_label``."""
    pairs = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "label" in rec and "true_label" in rec:
            pairs.append((str(rec["true_label"]), str(rec["label"])))
    if not pairs:
        return None
    names = list(labels) + sorted({x for p in pairs for x in p} - set(labels))
    index = {n: i for i, n in enumerate(names)}
    matrix = [[0] * len(names) for _ in names]
    for truth, pred in pairs:
        matrix[index[truth]][index[pred]] += 1
    return {"labels": names, "matrix": matrix, "source": PREDICTIONS_FILE, "n": len(pairs)}


class RunsDir:
    """The run directories under one root (``taskfit console --runs DIR``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).resolve()

    # ---- names and paths ---------------------------------------------------------------------------
    def path(self, name: str) -> Path:
        """The run directory called ``name``; refuses anything that is not a direct, visible child folder.

        Raises:
            RunNotFound: no such run, or a name that would leave the runs root.
        """
        if not name or name.startswith(".") or "/" in name or "\\" in name or "\0" in name:
            raise RunNotFound(f"Run name {name!r} is not a run of {self.root}; expected a folder name listed by "
                              "GET /v1/console/runs.")
        path = (self.root / name).resolve()
        if path.parent != self.root or not path.is_dir() or not (path / "recipe.yaml").is_file():
            raise RunNotFound(f"No run {name!r} in {self.root}; runs: {', '.join(self.names()) or '(none)'}.")
        return path

    def file(self, name: str, rel: str) -> tuple[Path, str]:
        """A file of run ``name`` to serve, with its media type.

        Raises:
            RunNotFound: the file does not exist, is hidden, is of a type the console does not serve, or
                resolves (through ``..`` or a symbolic link) to somewhere outside the run directory.
        """
        run = self.path(name)
        parts = rel.replace("\\", "/").split("/")
        if rel.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise RunNotFound(f"File path {rel!r} is not a plain path inside run {name!r}; give a name such as "
                              f"{', '.join(LINKED_FILES)}.")
        target = (run / rel).resolve()
        if not target.is_relative_to(run) or not target.is_file():
            raise RunNotFound(f"Run {name!r} has no file {rel!r}.")
        media = SERVED_SUFFIXES.get(target.suffix.lower())
        if media is None:
            raise RunNotFound(f"The console does not serve {target.suffix or 'extension-less'} files ({rel!r}); "
                              f"served types: {', '.join(sorted(SERVED_SUFFIXES))}.")
        return target, media

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and not p.name.startswith(".") and (p / "recipe.yaml").is_file())

    # ---- summaries ---------------------------------------------------------------------------------
    def summary(self, name: str, run: Path | None = None) -> dict[str, Any]:
        """One row of the runs list: name, task, model, method, headline metric, time and status."""
        run = run or self.path(name)
        recipe = self._recipe(run)
        meta = _read_json(run / "model" / "taskfit.json") or {}
        task = recipe.get("task")
        task = task.get("name") if isinstance(task, dict) else task
        method = recipe.get("method")
        method = method.get("name") if isinstance(method, dict) else method
        metric_name, metric_value, split = None, None, None
        for s in ("test", "valid"):
            m = (meta.get("metrics") or {}).get(s) or {}
            first = next(((k, v) for k, v in m.items() if k != "n" and _finite(v)), None)
            if first:
                (metric_name, metric_value), split = first, s
                break
        created = meta.get("created") or datetime.fromtimestamp(
            (run / "recipe.yaml").stat().st_mtime, UTC).isoformat(timespec="seconds")
        results = _read_json(run / "results.json") or {}
        if meta:
            status = "finished"
        elif (run / "checkpoints").is_dir():
            status = "incomplete"
        else:
            status = "started"
        return {"name": name, "task": task or meta.get("task") or "text_classification",
                "model": (recipe.get("model") or {}).get("name") or meta.get("base_model"),
                "method": method or "full", "metric": metric_name, "value": metric_value, "split": split,
                "time": created, "train_s": (results.get("timing") or {}).get("train_s"), "status": status}

    def rows(self) -> list[dict[str, Any]]:
        """Every run's summary, newest first."""
        rows = [self.summary(n) for n in self.names()]
        return sorted(rows, key=lambda r: r["time"] or "", reverse=True)

    @staticmethod
    def _recipe(run: Path) -> dict[str, Any]:
        try:
            tree = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            return {}
        return tree if isinstance(tree, dict) else {}

    # ---- one run -----------------------------------------------------------------------------------
    def detail(self, name: str) -> dict[str, Any]:
        """All a run page shows: summary, metrics, history, confusion matrix, fairness, explanations, links."""
        run = self.path(name)
        results = _read_json(run / "results.json") or {}
        meta = _read_json(run / "model" / "taskfit.json") or {}
        return {
            "summary": self.summary(name, run),
            "metrics": {s: _scalars(results.get(s)) for s in ("valid", "test") if isinstance(results.get(s), dict)},
            "per_class": {s: results[s]["per_class"] for s in ("valid", "test")
                          if isinstance(results.get(s), dict) and isinstance(results[s].get("per_class"), dict)},
            "timing": results.get("timing"),
            "history": read_history(run / "metrics.jsonl"),
            "confusion": self._confusion(run, results, meta),
            "fairness": results.get("fairness"),
            "explanations": self._explanations(run),
            "labels": meta.get("labels"),
            "recipe": (run / "recipe.yaml").read_text(encoding="utf-8"),
            "files": [f for f in LINKED_FILES if (run / f).is_file()],
        }

    @staticmethod
    def _confusion(run: Path, results: dict[str, Any], meta: dict[str, Any]) -> dict[str, Any] | None:
        for split in ("test", "valid"):
            m = results.get(split)
            if isinstance(m, dict) and m.get("confusion_matrix") and m.get("labels"):
                return {"labels": m["labels"], "matrix": m["confusion_matrix"], "source": f"results.json ({split})",
                        "n": m.get("n")}
        if (run / PREDICTIONS_FILE).is_file():
            return _confusion_from_predictions(run / PREDICTIONS_FILE, list(meta.get("labels") or []))
        return None

    @staticmethod
    def _explanations(run: Path) -> list[dict[str, Any]]:
        """Token attributions: ``explanations.json`` (``taskfit explain --json``) or the audit's examples."""
        own = _read_json(run / EXPLANATIONS_FILE)
        if isinstance(own, dict):
            own = own.get("examples") or own.get("explanations")
        if isinstance(own, list):
            return [e for e in own if isinstance(e, dict) and isinstance(e.get("words"), list)]
        audit = _read_json(run / "audit.json") or {}
        section = ((audit.get("sections") or {}).get("explanations") or {}).get("data") or {}
        return [e for e in section.get("examples") or [] if isinstance(e, dict) and isinstance(e.get("words"), list)]

    def compare(self, names: list[str]) -> dict[str, Any]:
        """Metrics side by side and every run's loss history, for two or more runs.

        Raises:
            ConfigError: fewer than two distinct runs.
            RunNotFound: an unknown run (naming it).
        """
        unique = list(dict.fromkeys(names))
        if len(unique) < 2:
            raise ConfigError(f"compare needs two or more different runs, got {unique!r}; pass ?runs=A&runs=B.")
        runs: list[dict[str, Any]] = []
        for n in unique:
            run = self.path(n)
            results = _read_json(run / "results.json") or {}
            split = "test" if isinstance(results.get("test"), dict) else "valid"
            runs.append({"summary": self.summary(n, run), "split": split,
                         "metrics": _scalars(results.get(split)),
                         "timing": _scalars(results.get("timing")),
                         "history": read_history(run / "metrics.jsonl")})
        keys = list(dict.fromkeys(k for r in runs for k in r["metrics"]))
        table = [{"metric": k, "values": [r["metrics"].get(k) for r in runs]} for k in keys]
        return {"runs": runs, "table": table}


def _scalars(m: Any) -> dict[str, Any]:
    """The numeric top-level entries of a metrics mapping (drops per-class tables, matrices, curves)."""
    if not isinstance(m, dict):
        return {}
    return {k: v for k, v in m.items() if _finite(v)}
