"""The end of a distillation run: score and save the student, measure teacher and student side by side, and
write results.json (with its ``distillation`` block), report.html and model_card.md like a trained run's.

Teacher and student are measured as ``taskfit compress`` measures (:func:`taskfit.compress.run._measure`: a
fresh process per model, the same held-out rows, score / size on disk / latency p50-p95 at batch 1 /
throughput at batch 32 / memory), so the two tables read alike. A generation teacher gives no label
probabilities to score rows with, so only its size and parameter count are reported.
"""

from __future__ import annotations

import json
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from taskfit import __version__
from taskfit.compress.measure import dir_size_mb
from taskfit.compress.run import _measure, comparison_rows, score_drop
from taskfit.config import Recipe
from taskfit.data import Splits
from taskfit.evaluate import write_html_report
from taskfit.evaluate.html import esc, html_table
from taskfit.methods import count_trainable
from taskfit.pipeline import file_sha256, hardware, model_card, save_model
from taskfit.tasks import Task
from taskfit.tasks.base import Encoded
from taskfit.train import TrainResult
from taskfit.utils.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from taskfit.compress.distill import DistillSpec


def weight_count(model_dir: Path) -> int | None:
    """Parameters stored in a model directory's safetensors files, read from their headers (no weights load)."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        return None
    n = 0
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            for key in st.keys():  # noqa: SIM118 (a safetensors handle is not a dict)
                shape = st.get_slice(key).get_shape()
                n += int(torch.Size(shape).numel())
    return n


def _rows_file(meta: dict[str, Any], texts: list[str], labels: list[Any], dest: Path) -> Path:
    """Held-out rows under the column names ``meta``'s model reads (teacher and student may differ)."""
    frame = pd.DataFrame({meta.get("text", "text"): texts, meta.get("label", "label"): labels})
    frame.to_json(dest, orient="records", lines=True, force_ascii=False)
    return dest


def compare(spec: DistillSpec, student_dir: Path, frame: pd.DataFrame, text: str, label: str,
            metric: str, note: Any) -> dict[str, Any]:
    """Teacher vs student measured on the same rows (a ``compress``-style before/after document)."""
    tdir = Path(spec.teacher)
    tmeta = json.loads((tdir / "taskfit.json").read_text(encoding="utf-8"))
    smeta = json.loads((student_dir / "taskfit.json").read_text(encoding="utf-8"))
    texts, labels = [str(t) for t in frame[text]], frame[label].tolist()
    with tempfile.TemporaryDirectory() as td:
        note(f"measuring the student on {len(frame)} held-out rows")
        after = _measure(student_dir, _rows_file(smeta, texts, labels, Path(td) / "student.jsonl"))
        if tmeta["task"] == "generation":
            before: dict[str, Any] = {"metrics": {}, "size_mb": round(dir_size_mb(tdir), 2)}
        else:
            note("measuring the teacher on the same rows")
            before = _measure(tdir, _rows_file(tmeta, texts, labels, Path(td) / "teacher.jsonl"), cache=True)
    return {"method": "distillation", "metric": metric, "rows": len(frame), "before": before, "after": after,
            "drop": score_drop(metric, before, after), "tolerance": 0.0, "flagged": False}


def finish_run(run_dir: Path, recipe: Recipe, spec: DistillSpec, task: Task, splits: Splits,
               encoded: dict[str, Encoded], model: torch.nn.Module, processor: Any, result: TrainResult,
               kept: list[int], *, measure: bool, note: Any) -> Path:
    """Score, save, measure and report a trained student; returns ``run_dir``."""
    device = next(model.parameters()).device
    dtype = torch.bfloat16 if result.precision == "bf16" else None
    scores: dict[str, dict[str, Any]] = {s: task.evaluate(model, encoded[s], splits.labels, device, dtype)
                                          for s in ("valid", "test") if s in encoded}
    trainable, total = count_trainable(model)
    meta = {
        "taskfit_version": __version__, **task.meta(), "labels": splits.labels, "precision": result.precision,
        "base_model": recipe.model.name, "method": recipe.method.model_dump(mode="json"),
        "pii_mask": recipe.data.pii_mask, "distilled_from": spec.teacher,
        "metrics": {s: {k: m[k] for k in (*task.headline, "n") if k in m} for s, m in scores.items()},
        "data": {s: {"file": str(getattr(recipe.data, s) or recipe.data.train),
                     "sha256": file_sha256(Path(getattr(recipe.data, s) or recipe.data.train)),
                     "rows": len(df)} for s, df in splits.frames.items()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    save_model(task, model.cpu(), processor, run_dir / "model", meta, splits)
    held = "test" if "test" in splits.frames else "valid"
    metric = task.default_metric if task.default_metric in task.headline else task.headline[0]
    block: dict[str, Any] = {
        "teacher": spec.teacher, "student": spec.student or f"teacher layers {kept}", "kept_layers": kept or None,
        "mode": "pool" if spec.pool else "teacher_run", "temperature": spec.temperature, "alpha": spec.alpha,
        "teacher_targets": "soft labels from the labelled pool" if spec.pool else
        "teacher logits precomputed once per training row (teacher_logits.npy)",
        "teacher_params": weight_count(Path(spec.teacher)), "student_params": total,
        "teacher_size_mb": round(dir_size_mb(Path(spec.teacher)), 2),
        "student_size_mb": round(dir_size_mb(run_dir / "model"), 2),
    }
    if spec.pool:
        pool = pd.read_csv(run_dir / "pool_labelled.csv")
        block["pool"] = {"file": str(run_dir / "pool_labelled.csv"), "source": spec.pool, "rows": len(pool),
                         "label_counts": {str(k): int(v) for k, v in pool["teacher_label"].value_counts().items()},
                         "mean_teacher_score": round(float(pool["teacher_score"].mean()), 4),
                         "note": "held-out scores are agreement with the teacher's labels"}
    if measure:
        block["comparison"] = compare(spec, run_dir / "model", splits.frames[held], task.text, task.label, metric,
                                      note)
    timing = {"train_s": round(result.train_seconds, 2), "steps": result.steps,
              "train_samples_per_s": round(result.samples_per_s, 1), "precision": result.precision,
              "device": result.device, "trainable_params": trainable, "total_params": total,
              "stopped_early": result.stopped_early, "best": result.best}
    stats = task.data_stats(splits)
    hw = hardware()
    results = {"valid": scores["valid"], "test": scores.get("test"), "timing": timing, "data_stats": stats,
               "data_issues": splits.issues, "hardware": hw, "distillation": block}
    atomic_write_json(run_dir / "results.json", results)
    write_html_report(
        run_dir / "report.html", title=f"taskfit distill {run_dir.name}", test_metrics=scores.get("test"),
        valid_metrics=scores["valid"], history=result.history, recipe_yaml=recipe.to_yaml(), data_stats=stats,
        data_issues=splits.issues, timing=timing, hardware=hw,
        extra_sections=[*task.report_sections(scores), ("Distillation", distill_html(block))])
    card = model_card(recipe, meta, timing, task, results)
    atomic_write_text(run_dir / "model_card.md", card + "\n" + card_lines(block))
    return run_dir


def summary_rows(block: dict[str, Any]) -> list[list[Any]]:
    """Settings of a distillation run as (setting, value) rows."""
    rows: list[list[Any]] = [["teacher", block["teacher"]], ["student", block["student"]],
                             ["temperature T", block["temperature"]], ["alpha (hard-label weight)", block["alpha"]],
                             ["teacher targets", block["teacher_targets"]],
                             ["parameters teacher / student", f"{block['teacher_params'] or '-'} / "
                                                               f"{block['student_params']}"]]
    if "pool" in block:
        p = block["pool"]
        rows += [["pool rows labelled", p["rows"]], ["teacher labels", p["label_counts"]],
                 ["mean teacher confidence", p["mean_teacher_score"]], ["note", p["note"]]]
    return rows


def distill_html(block: dict[str, Any]) -> str:
    """The report's Distillation section: settings, and teacher (before) vs student (after) when measured."""
    html = html_table(["setting", "value"], summary_rows(block))
    if "comparison" in block:
        html += "<p>Teacher = before, student = after; same rows, each model in a fresh process.</p>"
        html += html_table(["", "teacher", "student", "student / teacher"], comparison_rows(block["comparison"]))
    else:
        html += f"<p>{esc('Not measured (--no-measure).')}</p>"
    return html


def card_lines(block: dict[str, Any]) -> str:
    """The model card's distillation paragraph."""
    lines = ["## Distillation", "", f"- Teacher: `{block['teacher']}`; student: {block['student']}",
             f"- T = {block['temperature']}, alpha = {block['alpha']}; parameters {block['teacher_params']} → "
             f"{block['student_params']}"]
    if "comparison" in block:
        for label, b, a, _r in comparison_rows(block["comparison"]):
            lines.append(f"- {label}: teacher {b}, student {a}")
    return "\n".join(lines) + "\n"


def render(console: Any, run_dir: Path) -> None:
    """The teacher vs student table in the terminal."""
    from rich.table import Table

    block = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["distillation"]
    table = Table(title=f"distillation: teacher vs student (T={block['temperature']}, alpha={block['alpha']})")
    for col in ("", "teacher", "student", "student / teacher"):
        table.add_column(col, justify="right" if col else "left")
    table.add_row("parameters", str(block["teacher_params"] or "-"), str(block["student_params"]),
                  f"{block['student_params'] / block['teacher_params']:.2f}×" if block["teacher_params"] else "-")
    for label, b, a, r in comparison_rows(block["comparison"]) if "comparison" in block else []:
        table.add_row(label, *(f"{v:.4g}" if isinstance(v, float) else str(v) for v in (b, a)),
                      f"{r:.2f}×" if r is not None else "-")
    console.print(table)
