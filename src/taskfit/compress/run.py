"""``taskfit compress RUN_DIR --method M``: a new run directory with the compressed model and a
before/after table (score, size on disk, p50/p95 latency at batch 1, throughput at batch 32, peak memory).

The new directory holds ``model/`` (loadable by ``taskfit predict`` / ``Predictor.load`` by path),
``compression.json`` (both measurements, the method, the flag) and ``report.html``; the source run is
never modified. A compressed model whose headline score drops by more than ``tolerance`` is flagged.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from taskfit.compress.methods import COMPRESSORS, BuildContext, check_task
from taskfit.compress.recovery import recipe_of
from taskfit.errors import ConfigError, TaskfitError
from taskfit.evaluate.html import cards, esc, html_table, img_tag, write_page
from taskfit.inference import held_out_rows, model_dir_of
from taskfit.models.pruned import WEIGHTS as PRUNED_WEIGHTS
from taskfit.tasks import TASKS
from taskfit.train.loop import LOWER_IS_BETTER
from taskfit.utils.io import atomic_write_json

#: Weights a step does not copy from its source (it writes its own): plain and head-pruned transformers weights.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", PRUNED_WEIGHTS)


@dataclass
class CompressResult:
    run_dir: Path
    before: dict[str, Any]
    after: dict[str, Any]
    metric: str
    drop: float
    flagged: bool
    report: Path
    #: batch-32 throughput of both models timed in the same rounds (``before_per_s``, ``after_per_s``, ``ratio``)
    paired: dict[str, Any] | None = None


def _eval_rows(run_dir: Path, meta: dict[str, Any], data: Path | None, rows: int | None) -> pd.DataFrame:
    """The labelled rows both models are scored on: --data, else the run's test split (valid without one)."""
    frame, _ = held_out_rows(run_dir, TASKS.get(meta["task"]).from_meta(meta), meta, data)
    return frame.head(rows) if rows else frame


_MEASURED: dict[tuple[str, float, str], dict[str, Any]] = {}


def score_drop(metric: str, before: dict[str, Any], after: dict[str, Any]) -> float:
    """How much ``metric`` got worse from ``before`` to ``after`` (measurement documents; a rise of a
    lower-is-better metric such as RMSE counts as a drop); 0 when either side lacks it."""
    b, a = before["metrics"].get(metric), after["metrics"].get(metric)
    if not isinstance(a, int | float) or not isinstance(b, int | float):
        return 0.0
    return float(a - b if metric in LOWER_IS_BETTER else b - a)


def _measure(model_dir: Path, rows_file: Path, cache: bool = False, paired_with: Path | None = None) -> dict[str, Any]:
    """Measure in a fresh process. ``cache``: reuse this process's earlier measurement of the same (unchanged)
    source model on the same rows (compressing one run with several methods measures the source once).
    ``paired_with``: also time the two models' batch-32 throughput in paired rounds (result key ``paired``)."""
    import hashlib

    key = (str(model_dir.resolve()), (model_dir / "taskfit.json").stat().st_mtime,
           hashlib.sha256(rows_file.read_bytes()).hexdigest())
    if cache and key in _MEASURED:
        return _MEASURED[key]
    out = rows_file.with_name(f"measure-{abs(hash(str(model_dir)))}.json")
    env = {**os.environ, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "1")}
    extra = ["--paired-with", str(paired_with)] if paired_with is not None else []
    res = subprocess.run([sys.executable, "-m", "taskfit.compress.measure", str(model_dir), str(rows_file), str(out),
                          *extra], capture_output=True, text=True, env=env, timeout=3600)
    if res.returncode != 0:
        raise RuntimeError(f"measuring {model_dir} failed:\n{res.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    if cache:
        _MEASURED[key] = result
    return result


#: Methods whose output is a plain transformers model, which another step of a chain can take as its input.
CHAIN_INPUTS = ("prune-ffn", "prune-magnitude", "distill", "merge")
#: Methods whose output keeps different numbers of heads per layer (``backend: pruned``), and the methods that
#: can take such a model: the ONNX exports (each fused attention node gets its own layer's head count).
HEAD_PRUNING = ("prune-heads", "prune-structured")
PRUNED_INPUTS = ("onnx", "onnx-int8")


def parse_methods(method: str) -> list[str]:
    """The steps of ``--method`` (one method, or a chain ``a,b,c`` applied in order), checked before any work.

    Raises:
        ConfigError: an unknown method, a repeated one, or a step that cannot feed the next (only methods that
            write a plain transformers model can: distill, prune-ffn, prune-magnitude, merge; a head-pruned
            model from prune-heads or prune-structured can feed an ONNX export).
    """
    steps = [m.strip() for m in method.split(",")]
    for m in steps:
        if not m:
            raise ConfigError(f"--method {method!r} has an empty step; give methods separated by commas, e.g. "
                              "distill,prune-ffn,onnx-int8.")
        COMPRESSORS.get(m)  # unknown names list the known ones
    repeated = sorted({m for m in steps if steps.count(m) > 1})
    if repeated:
        raise ConfigError(f"--method {method!r} repeats {', '.join(repeated)}; give each method once.")
    for m, nxt in itertools.pairwise(steps):
        if m in HEAD_PRUNING and nxt in PRUNED_INPUTS:
            continue
        if m in HEAD_PRUNING:
            raise ConfigError(f"--method {method!r}: {m} (a model with different head counts per layer) can be "
                              f"followed only by {' or '.join(PRUNED_INPUTS)}, not {nxt}.")
        if m not in CHAIN_INPUTS:
            raise ConfigError(f"--method {method!r}: {m} cannot be followed by another method (its model is not a "
                              f"plain transformers model); only {', '.join(CHAIN_INPUTS)} can (and "
                              f"{' and '.join(HEAD_PRUNING)} by {' or '.join(PRUNED_INPUTS)}); an export (onnx, "
                              "onnx-int8, torch-int8) goes last.")
    if "merge" in steps[1:]:
        raise ConfigError(f"--method {method!r}: merge reads the run's LoRA adapter, so it must be the first step.")
    return steps


def compress_run(run_dir: str | Path, method: str, *, out: Path | None = None, data: Path | None = None,
                 rows: int | None = None, tolerance: float = 0.005, overwrite: bool = False,
                 note: Callable[[str], None] = lambda _m: None, options: dict[str, Any] | None = None,
                 progress: Any = None) -> CompressResult:
    """Compress a finished run's model; see the module docstring.

    Args:
        method: a registered method, or a chain of them separated by commas (``distill,onnx-int8``): each step
            compresses the previous step's model, and the table compares the original with the last one.
        options: the methods' options (e.g. ``{"sparsity": 0.3, "recovery_steps": 50}`` for the pruning
            methods); None values count as not given. An option no step takes is a ConfigError; in a chain,
            each step gets the options it takes.
        progress: training progress callbacks for methods that fine-tune (:class:`taskfit.train.Progress`).

    Raises:
        ConfigError: unknown method or bad chain, a destination that exists (without ``overwrite``), bad
            tolerance, an option no step takes or a value out of range.
        IncompatibleError: a task the method cannot compress.
        NotFittedError: no finished model in ``run_dir``.
    """
    steps = parse_methods(method)
    method = ",".join(steps)
    if not 0 <= tolerance < 1:
        raise ConfigError(f"--tolerance must be in [0, 1), got {tolerance}.")
    src_model = model_dir_of(run_dir)
    src_run = src_model.parent
    meta = json.loads((src_model / "taskfit.json").read_text(encoding="utf-8"))
    backend = meta.get("backend", "transformers")
    if backend == "pruned" and steps[0] not in PRUNED_INPUTS:
        raise ConfigError(f"{str(src_run)!r} holds a head-pruned model, which only --method "
                          f"{' or '.join(PRUNED_INPUTS)} can take, not {steps[0]}; compress the original run for "
                          "other methods.")
    if backend not in ("transformers", "pruned"):
        raise ConfigError(f"{str(src_run)!r} already holds a compressed model ({backend}); compress the "
                          "original run instead.")
    for m in steps:
        check_task(meta["task"], m)
    # Every step's options are checked against the source model before any work (a chain's later steps get
    # the same architecture family, so the source's config answers for them).
    opts = _chain_options(steps, src_run, src_model, meta, options or {})
    dest = Path(out) if out is not None else src_run.with_name(f"{src_run.name}-{method.replace(',', '-')}")
    if dest.exists() and not overwrite:
        raise ConfigError(f"{str(dest)!r} already exists; pick another --out or pass --overwrite.")
    frame = _eval_rows(src_run, meta, data, rows)  # bad --data fails here, before any work
    task = TASKS.get(meta["task"]).from_meta(meta)

    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    work = dest.with_name(dest.name + ".work")  # survives Ctrl-C: a method that trains resumes from it
    note(f"compressing with {method}: " + "; then ".join(COMPRESSORS.get(m).description for m in steps))
    try:
        extra = _run_steps(steps, opts, src_run, src_model, meta, tmp, work, note, progress)
    except Exception as e:  # no half-written directory is left behind; an exporter failure names the method
        shutil.rmtree(tmp, ignore_errors=True)
        kept = [f.parent.name for f in sorted(work.glob("*/step.json"))] if len(steps) > 1 else []
        if kept:  # a chain's finished steps (minutes of training) stay for the same command to start after
            note(f"the finished steps ({', '.join(kept)}) are kept in {work}; the same command starts after them")
        else:
            shutil.rmtree(work, ignore_errors=True)
        if isinstance(e, TaskfitError):
            raise
        raise RuntimeError(f"compress --method {method} failed on {src_model}: {e}") from e
    new_meta = {**meta, **extra, "compressed_from": str(src_run), "compression_method": method}
    atomic_write_json(tmp / "model" / "taskfit.json", new_meta)

    metric = task.default_metric if task.default_metric in task.headline else task.headline[0]
    with tempfile.TemporaryDirectory() as td:
        rows_file = Path(td) / "rows.jsonl"
        frame.to_json(rows_file, orient="records", lines=True, force_ascii=False)
        note(f"measuring the original model on {len(frame)} rows")
        before = _measure(src_model, rows_file, cache=True)
        note("measuring the compressed model, then its throughput beside the original's in paired rounds")
        after = _measure(tmp / "model", rows_file, paired_with=src_model)
        paired = after.pop("paired")
    drop = score_drop(metric, before, after)
    flagged = drop > tolerance
    doc = {"method": method, "steps": steps, "source": str(src_run), "metric": metric, "drop": drop,
           "tolerance": tolerance, "flagged": flagged, "rows": len(frame), "before": before, "after": after,
           "paired_throughput": paired, "export": extra, "options": opts[steps[0]] if len(steps) == 1 else opts}
    atomic_write_json(tmp / "compression.json", doc)
    if (src_run / "recipe.yaml").is_file():  # so the compressed run's test rows can be found again
        shutil.copy2(src_run / "recipe.yaml", tmp / "recipe.yaml")
    report = write_page(tmp / "report.html", f"taskfit compress: {src_run.name} → {method}",
                        [("Before and after", comparison_html(doc)), *details_sections(extra)], intro=_cards(doc))
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    shutil.rmtree(work, ignore_errors=True)
    return CompressResult(dest, before, after, metric, drop, flagged, dest / report.name, paired)


def _chain_options(steps: list[str], src_run: Path, src_model: Path, meta: dict[str, Any],
                   options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each step's checked options; an option that no step takes names the methods that do."""
    given = {k: v for k, v in options.items() if v is not None}
    for key in given:
        if not any(key in COMPRESSORS.get(m).options for m in steps):
            takers = [n for n in COMPRESSORS.names() if key in COMPRESSORS.get(n).options]
            raise ConfigError(f"--{key.replace('_', '-')} does not apply to --method {','.join(steps)}; it is an "
                              f"option of {', '.join(takers) or 'no method'}.")
    out = {}
    for m in steps:
        comp = COMPRESSORS.get(m)
        mine = {k: v for k, v in given.items() if k in comp.options}
        out[m] = comp.check(src_run, src_model, meta, mine) if comp.check else mine
    return out


def _run_steps(steps: list[str], opts: dict[str, dict[str, Any]], src_run: Path, src_model: Path,
               meta: dict[str, Any], tmp: Path, work: Path, note: Callable[[str], None], progress: Any
               ) -> dict[str, Any]:
    """Build every step; the last writes ``tmp/model``. Returns the merged ``taskfit.json`` fields.

    A chain's intermediate models live in ``work/<i>-<method>/`` (a run-like directory: ``model/`` and the
    source's recipe.yaml, which the next step's training rows come from) with a ``step.json`` once complete;
    after an interruption, the same command skips the finished steps and resumes the unfinished one.
    """
    extra: dict[str, Any] = {}
    cur_run, cur_model, cur_meta = src_run, src_model, meta
    for i, m in enumerate(steps):
        last = i == len(steps) - 1
        out_dir = tmp if last else work / f"{i + 1}-{m}"
        step_file = out_dir / "step.json"
        state = {"source": str(cur_model.resolve()), "source_mtime": (cur_model / "taskfit.json").stat().st_mtime,
                 "method": m, "options": opts[m]}
        done = json.loads(step_file.read_text(encoding="utf-8")) if not last and step_file.is_file() else None
        if done is not None and done["state"] == json.loads(json.dumps(state)):
            note(f"step {i + 1}/{len(steps)} {m}: already done in {out_dir}")
            step_extra = done["extra"]
        else:
            if len(steps) > 1:
                note(f"step {i + 1}/{len(steps)}: {m}")
            shutil.rmtree(out_dir, ignore_errors=True)
            (out_dir / "model").mkdir(parents=True)
            for f in cur_model.iterdir():  # tokenizer, config, taskfit.json: everything but the weights
                if f.is_file() and f.name not in WEIGHT_FILES:
                    shutil.copy2(f, out_dir / "model" / f.name)
            step_work = work / f"{i + 1}-{m}.work" if len(steps) > 1 else work
            comp = COMPRESSORS.get(m)
            if comp.context or comp.options:
                step_extra = comp.build(cur_model, out_dir / "model", cur_meta,
                                        BuildContext(opts[m], cur_run, step_work, note, progress))
            else:
                step_extra = comp.build(cur_model, out_dir / "model", cur_meta)
            if not last:
                atomic_write_json(out_dir / "model" / "taskfit.json", {**cur_meta, **step_extra})
                if (recipe := recipe_of(cur_run)) is not None:
                    shutil.copy2(recipe, out_dir / "recipe.yaml")
                atomic_write_json(step_file, {"state": state, "extra": step_extra})  # last: marks it complete
        extra.update(step_extra)
        cur_run, cur_model = out_dir, out_dir / "model"
        cur_meta = {**cur_meta, **step_extra}
    if len(steps) > 1:
        extra["compression_steps"] = steps
    return extra


def details_sections(extra: dict[str, Any]) -> list[tuple[str, str]]:
    """Report sections for what a method did (pruning facts and recovery, the merge check)."""
    out = []
    for key, title in (("distillation", "Distillation"), ("pruning", "Pruning"), ("merge", "Merge")):
        info = extra.get(key)
        if not isinstance(info, dict):
            continue
        rows = [[k, json.dumps(v, ensure_ascii=False) if isinstance(v, (list, dict)) else v]
                for k, v in info.items() if k not in ("per_linear", "recovery", "valid_after")]
        rec = info.get("recovery")
        if isinstance(rec, dict):
            rows += [[f"recovery {k}", json.dumps(v) if isinstance(v, dict) else v] for k, v in rec.items()
                     if k != "history"]
        out.append((title, html_table(["", "value"], rows)))
    return out


ROWS = (("metric", "score"), ("size_mb", "size on disk (MB)"), ("latency_p50_ms", "latency p50, batch 1 (ms)"),
        ("latency_p95_ms", "latency p95, batch 1 (ms)"), ("throughput_per_s", "throughput, batch 32 (rows/s)"),
        ("model_rss_mb", "memory added by the model (MB)"), ("peak_rss_mb", "peak process memory (MB)"))


def comparison_rows(doc: dict[str, Any]) -> list[list[Any]]:
    """Table rows: quantity, before, after, ratio (after / before)."""
    out = []
    for key, label in ROWS:
        if key == "metric":
            b, a = doc["before"]["metrics"].get(doc["metric"]), doc["after"]["metrics"].get(doc["metric"])
            label = f"{doc['metric']} ({doc['rows']} rows)"
        elif key == "throughput_per_s" and doc.get("paired_throughput"):
            p = doc["paired_throughput"]  # both models timed in the same rounds: the ratio to trust
            out.append([f"{label}, paired rounds", p["before_per_s"], p["after_per_s"], p["ratio"]])
            continue
        else:
            b, a = doc["before"].get(key), doc["after"].get(key)
        ratio = a / b if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b else None
        out.append([label, b, a, ratio])
    return out


def throughput_ratio(doc: dict[str, Any]) -> float:
    """Compressed / original throughput at batch 32: the paired rounds' median ratio when measured."""
    if doc.get("paired_throughput"):
        return float(doc["paired_throughput"]["ratio"])
    return float(doc["after"]["throughput_per_s"] / max(doc["before"]["throughput_per_s"], 1e-9))


def _cards(doc: dict[str, Any]) -> str:
    b, a = doc["before"], doc["after"]
    return cards([("method", doc["method"]), ("score change", f"{-doc['drop']:+.4f}"),
                  ("size", f"{a['size_mb'] / max(b['size_mb'], 1e-9):.2f}×"),
                  ("throughput", f"{throughput_ratio(doc):.2f}×"),
                  ("flag", "over tolerance" if doc["flagged"] else "within tolerance")])


def comparison_html(doc: dict[str, Any]) -> str:
    """The before/after table, a bar plot of the ratios and the tolerance verdict."""
    rows = comparison_rows(doc)
    verdict = (f'<p class="bad">{esc(doc["metric"])} dropped by {doc["drop"]:.4f}, more than the tolerance '
               f'{doc["tolerance"]:g}: check before serving this model.</p>' if doc["flagged"] else
               f'<p class="ok">{esc(doc["metric"])} change within the tolerance {doc["tolerance"]:g}.</p>')
    return verdict + html_table(["", "before", "after", "after / before"], rows) + img_tag(
        _ratio_plot(rows[1:]), "after / before ratios")


def _ratio_plot(rows: list[list[Any]]) -> bytes:
    from taskfit.evaluate.plots import _plot_style, _to_png

    @_plot_style
    def draw() -> bytes:
        from matplotlib.figure import Figure

        names = [r[0] for r in rows if r[3] is not None]
        values = [r[3] for r in rows if r[3] is not None]
        fig = Figure(figsize=(7, 0.45 * len(names) + 1.2))
        ax = fig.add_subplot()
        ax.barh(names, values, color=["#2da44e" if ("throughput" in n) == (v >= 1) else "#cf222e"
                                      for n, v in zip(names, values, strict=True)])
        ax.axvline(1.0, color="#57606a", lw=1)
        ax.invert_yaxis()
        ax.set_xlabel("after / before")
        fig.tight_layout()
        return _to_png(fig)

    return draw()


def render(console: Any, result: CompressResult) -> None:
    """The before/after table in the terminal."""
    from rich.table import Table

    doc = json.loads((result.run_dir / "compression.json").read_text(encoding="utf-8"))
    table = Table(title=f"{doc['method']}: before / after ({doc['rows']} rows)")
    for col in ("", "before", "after", "after / before"):
        table.add_column(col, justify="right" if col else "left")
    for label, b, a, r in comparison_rows(doc):
        table.add_row(label, *(f"{v:.4g}" if isinstance(v, float) else str(v) for v in (b, a)),
                      f"{r:.2f}×" if r is not None else "-")
    console.print(table)
    style = "red" if result.flagged else "green"
    console.print(f"[{style}]{result.metric} change {-result.drop:+.4f} (tolerance {doc['tolerance']:g})[/]")
