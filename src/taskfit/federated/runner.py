"""`taskfit federate`: checks, the federation (simulation or processes), then a normal taskfit run directory.

Order of work: every check that needs no model (recipe combinations, partition column present, Flower
installed) → the run directory and the spec → this process's context (data, shares, model: data errors
such as too few rows per client surface here, before any Flower or Ray process starts) → the rounds →
scoring the final global model on valid/test → ``model/`` (merged, loadable by ``taskfit predict``),
``results.json`` with a ``federated`` block, ``metrics.jsonl`` (one line per round), ``report.html``.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch

from taskfit import __version__
from taskfit.config import FederatedConfig, Recipe
from taskfit.data.readers import read_columns
from taskfit.errors import DataError, IncompatibleError, TaskfitError
from taskfit.evaluate import write_html_report
from taskfit.federated.report import federated_section
from taskfit.federated.server import GLOBAL_FILE, ROUNDS_FILE
from taskfit.federated.state import FedContext, clear_cache, load_context, write_spec
from taskfit.methods import METHODS, count_trainable
from taskfit.pipeline import hardware, make_task, model_card, run_dir_for, save_model
from taskfit.tasks import TASKS
from taskfit.train import Progress
from taskfit.train.loop import pick_device
from taskfit.trust import fairness_results
from taskfit.trust import report_sections as trust_sections
from taskfit.utils.io import atomic_write_json, atomic_write_text, read_jsonl, write_jsonl


@dataclass
class FederatedSummary:
    """Where a finished federated run lives and how it scored."""

    run_dir: Path
    report: Path
    valid_metrics: dict[str, Any]
    test_metrics: dict[str, Any] | None
    rounds: list[dict[str, Any]]
    federated: dict[str, Any]


def recipe_problems(recipe: Recipe) -> list[str]:
    """What cannot work in a federated run of this recipe, one dotted-path line each (no data read)."""
    problems: list[str] = []
    fed = recipe.federated or FederatedConfig()
    if recipe.privacy.dp is not None:
        from taskfit.trust import dp

        problems += dp.recipe_problems(recipe)
        if fed.strategy == "fedprox":
            problems.append("federated.strategy: fedprox cannot be combined with privacy.dp (DP-SGD noises and "
                            "clips per-example gradients of the task loss only, so the proximal term would be "
                            "silently dropped); use strategy: fedavg with privacy.dp.")
    if recipe.adversarial is not None:
        problems.append("adversarial: adversarial training is not available in federated local training; remove "
                        "the adversarial block for `taskfit federate`.")
    try:
        TASKS.get(recipe.task.name).check_method(recipe.method.name)
    except IncompatibleError as e:
        problems.append(f"method.name: {e}")
    if fed.partition == "column" and Path(recipe.data.train).is_file():
        try:
            columns = read_columns(Path(recipe.data.train))
        except DataError:
            columns = None  # unreadable files are reported by the pipeline's own input checks
        if columns is not None and fed.partition_column not in columns:
            problems.append(f"federated.partition_column: column {fed.partition_column!r} not found in "
                            f"{recipe.data.train}; available columns: {', '.join(columns)}.")
    return problems


def _watch(path: Path, total: int, progress: Progress, stop: threading.Event) -> threading.Thread:
    """Print each round's line as the server appends it (the server may be another process)."""

    def loop() -> None:
        seen = 0
        while True:
            done = stop.is_set()
            records = read_jsonl(path) if path.is_file() else []
            for record in records[seen:]:
                progress.note(round_line(record, total))
            seen = max(seen, len(records))
            if done:
                return
            stop.wait(0.5)

    thread = threading.Thread(target=loop, name="taskfit-federated-progress", daemon=True)
    thread.start()
    return thread


def round_line(record: dict[str, Any], total: int) -> str:
    """One progress line: ``round 2/3  clients ok 3 failed 0  train_loss 1.2  valid accuracy 0.71 ...``."""
    metrics = "  ".join(f"{k.removeprefix('valid_')} {v:.4f}" for k, v in record.items()
                        if k.startswith("valid_") and isinstance(v, float))
    if record["round"] == 0:
        return f"round 0/{total}  (untrained)  valid {metrics}"
    clients = f"clients ok {record.get('clients_ok', 0)} failed {record.get('clients_failed', 0)}"
    loss = f"  train_loss {record['train_loss']:.4f}" if isinstance(record.get("train_loss"), float) else ""
    kept = "" if record.get("aggregated", True) else "  (too few results: global model kept)"
    return f"round {record['round']}/{total}  {clients}{loss}  valid {metrics}{kept}"


def run_federated(recipe: Recipe, progress: Progress | None = None,
                  faults: dict[int, dict[str, Any]] | None = None) -> FederatedSummary:
    """Train ``recipe`` federated (its ``federated`` block, or the defaults) and write a run directory.

    Args:
        recipe: the validated recipe.
        progress: receives one note per round (the CLI prints them).
        faults: test aid: partition id → {"round": r, "how": "raise" | "exit"} makes that client fail.

    Raises:
        ConfigError / DataError / IncompatibleError: before any training, for anything the inputs prevent.
    """
    t_start = time.perf_counter()
    progress = progress or Progress()
    problems = recipe_problems(recipe)
    if problems:
        raise IncompatibleError("The recipe cannot run federated:\n" + "\n".join(f"  - {p}" for p in problems))
    fed = recipe.federated or FederatedConfig()
    if fed.mode == "processes":
        from taskfit.federated.processes import check_installed

        check_installed()
    make_task(recipe)  # task options fail here, before a run directory exists
    run_dir = run_dir_for(recipe, resume=False)
    run_dir.mkdir(parents=True)
    # train.threads applies to this federation, not to the caller's process; Ray's start-up also rewrites
    # os.environ (PYTHONPATH with its vendored packages first, RAY_* flags): both are put back afterwards.
    threads, environ = torch.get_num_threads(), dict(os.environ)
    try:
        spec = write_spec(run_dir, recipe, faults)
        ctx = load_context(spec)
        atomic_write_text(run_dir / "recipe.yaml", ctx.recipe.to_yaml())
        progress.note(f"data: {ctx.task.describe_data(ctx.splits)}")
        progress.note(f"federated: {fed.clients} clients ({fed.partition}; rows "
                      f"{', '.join(str(len(s)) for s in ctx.shares)}), {fed.rounds} rounds, {fed.strategy}, "
                      f"{fed.mode}")
        t_prep = time.perf_counter()
        _run_rounds(ctx, spec, progress)
        t_train = time.perf_counter()
        return _finish(ctx, t_start, t_prep, t_train)
    except TaskfitError:
        # Nothing trained yet is worth keeping: a failed check must not leave a half run directory behind.
        if not (run_dir / "federated" / ROUNDS_FILE).exists():
            import shutil

            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    finally:
        clear_cache()
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(environ)


def _run_rounds(ctx: FedContext, spec: Path, progress: Progress) -> None:
    stop = threading.Event()
    watcher = _watch(ctx.run_dir / "federated" / ROUNDS_FILE, ctx.fed.rounds, progress, stop)
    flwr_logger = logging.getLogger("flwr")
    level = flwr_logger.level
    flwr_logger.setLevel(logging.ERROR)  # Flower logs every message at INFO; taskfit prints one line a round
    try:
        if ctx.fed.mode == "processes":
            from taskfit.federated.processes import run_processes

            run_processes(ctx, spec, log=progress.note)
        else:
            _simulate(ctx, spec)
    finally:
        flwr_logger.setLevel(level)
        stop.set()
        watcher.join(timeout=10)
    if not (ctx.run_dir / "federated" / GLOBAL_FILE).is_file():
        raise RuntimeError("the federation ended without a global model (see the Flower log above)")


def _simulate(ctx: FedContext, spec: Path) -> None:
    """Flower's simulation engine: the ServerApp in a thread here, clients in one Ray actor process (one CPU:
    clients run one after another, which is what a 2-core machine can afford and what keeps memory at one
    extra model copy)."""
    from flwr.simulation import run_simulation

    from taskfit.federated.client import make_client_app
    from taskfit.federated.processes import reap, watch_children
    from taskfit.federated.server import make_server_app

    backend = {"client_resources": {"num_cpus": 1, "num_gpus": 0.0},
               "init_args": {"num_cpus": 1, "include_dashboard": False, "log_to_driver": False}}
    seen: set[int] = set()
    stop = threading.Event()
    watcher = watch_children(stop, seen)
    try:
        run_simulation(server_app=make_server_app(str(spec)), client_app=make_client_app(str(spec)),
                       num_supernodes=ctx.fed.clients, backend_config=backend)  # type: ignore[arg-type]
    finally:
        stop.set()
        watcher.join(timeout=5)
        reap(seen, "ray::")  # an actor whose raylet stopped first would otherwise live on, orphaned


def _sha256(path: Path) -> str:
    """Content hash of a data file (a folder of images: of its files' names and contents)."""
    h = hashlib.sha256()
    for f in sorted(q for q in path.rglob("*") if q.is_file()) if path.is_dir() else [path]:
        h.update(str(f.relative_to(path) if path.is_dir() else "").encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _exchange_bytes(state: dict[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in state.values())


def _finish(ctx: FedContext, t_start: float, t_prep: float, t_train: float) -> FederatedSummary:
    """Score the final global model, save it as a taskfit model and write results, metrics and the report."""
    recipe, task, splits, run_dir = ctx.recipe, ctx.task, ctx.splits, ctx.run_dir
    rounds = read_jsonl(run_dir / "federated" / ROUNDS_FILE)
    state = torch.load(run_dir / "federated" / GLOBAL_FILE, map_location="cpu", weights_only=True)
    ctx.load_state(state)
    model = ctx.model
    device = pick_device()
    model.to(device).eval()
    scores: dict[str, dict[str, Any]] = {s: task.evaluate(model, ctx.encoded[s], splits.labels, device, None)
              for s in ("valid", "test") if s in ctx.encoded}
    fairness = fairness_results(recipe, task, model, ctx.encoded, splits, device, None)
    exchanged = _exchange_bytes(state)
    trainable, total_params = count_trainable(model)
    final = METHODS.get(recipe.method.name).finalize(model, recipe.method).cpu()
    full_bytes = _exchange_bytes(dict(final.state_dict()))
    fed = ctx.fed
    summary: dict[str, Any] = {
        "clients": fed.clients, "rounds": fed.rounds, "strategy": fed.strategy,
        "proximal_mu": fed.proximal_mu if fed.strategy == "fedprox" else None, "partition": fed.partition,
        "partition_column": fed.partition_column, "mode": fed.mode, "local_epochs": fed.local_epochs,
        "client_rows": [len(s) for s in ctx.shares],
        "bytes_per_client": exchanged, "full_model_bytes": full_bytes,
        "exchange_share": exchanged / max(full_bytes, 1),
        "bytes_total": sum(int(r.get("bytes_down", 0)) + int(r.get("bytes_up", 0)) for r in rounds),
        "failures": sum(int(r.get("clients_failed", 0)) for r in rounds),
        "per_round": rounds,
    }
    if ctx.owners is not None:
        summary["owners"] = ctx.owners
    if recipe.privacy.dp is not None:
        spent = [r["epsilon_max"] for r in rounds if isinstance(r.get("epsilon_max"), float)]
        summary["dp"] = {"epsilon_target": recipe.privacy.dp.epsilon, "epsilon_spent_max": max(spent, default=None),
                         "max_grad_norm": recipe.privacy.dp.max_grad_norm, "accountant": recipe.privacy.dp.accountant,
                         "scope": "per client: each row of a client's data, over all rounds (DP-SGD on the client)"}
    meta = {"taskfit_version": __version__, **task.meta(), "labels": splits.labels, "precision": "fp32",
            "base_model": recipe.model.name, "method": recipe.method.model_dump(mode="json"),
            "metrics": {s: {k: m[k] for k in (*task.headline, "n") if k in m} for s, m in scores.items()},
            "data": {s: {"file": str(getattr(recipe.data, s) or recipe.data.train),
                         "sha256": _sha256(Path(getattr(recipe.data, s) or recipe.data.train)), "rows": len(df)}
                     for s, df in splits.frames.items()},
            "federated": {k: summary[k] for k in ("clients", "rounds", "strategy", "partition")},
            "created": datetime.now(UTC).isoformat(timespec="seconds")}
    save_model(task, final, ctx.processor, run_dir / "model", meta, splits)
    steps = sum(int(r.get("client_steps", 0)) for r in rounds)  # optimiser steps over all clients
    timing = {"prepare_s": round(t_prep - t_start, 2), "train_s": round(t_train - t_prep, 2),
              "total_s": round(time.perf_counter() - t_start, 2), "steps": steps, "precision": "fp32",
              "device": str(device), "trainable_params": trainable, "total_params": total_params}
    # metrics.jsonl: one line per round, "step" = round, so the usual loss plot and sparklines work.
    write_jsonl(run_dir / "metrics.jsonl", [{"step": r["round"], **{k: v for k, v in r.items()
                if k == "train_loss" or k.startswith("valid_")}} for r in rounds])
    stats = task.data_stats(splits)
    stats["client_rows"] = {f"client {i}": n for i, n in enumerate(summary["client_rows"])}
    results: dict[str, Any] = {"valid": scores["valid"], "test": scores.get("test"), "timing": timing,
                               "data_stats": stats, "data_issues": splits.issues, "hardware": hardware(),
                               "federated": summary}
    if fairness:
        results["fairness"] = fairness
    atomic_write_json(run_dir / "results.json", results)
    history = read_jsonl(run_dir / "metrics.jsonl")
    report = write_html_report(
        run_dir / "report.html", title=f"taskfit federated run {run_dir.name}", test_metrics=scores.get("test"),
        valid_metrics=scores["valid"], history=history, recipe_yaml=recipe.to_yaml(), data_stats=stats,
        data_issues=splits.issues, timing=timing, hardware=results["hardware"],
        extra_sections=[federated_section(summary), *task.report_sections(scores), *trust_sections(results)])
    atomic_write_text(run_dir / "model_card.md", model_card(recipe, meta, timing, task))
    return FederatedSummary(run_dir, report, scores["valid"], scores.get("test"), rounds, summary)

