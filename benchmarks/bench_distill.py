"""Distillation on a real task: a MiniLM-L6 teacher fine-tuned on BBC news, then two 3-layer students cut from it.

    .venv/bin/python benchmarks/bench_distill.py [--rows 600] [--layers 3] [--out benchmarks/out/distill]

Both students start from the same teacher layers (every 2nd layer, 1/3/5, plus embeddings, pooler and head) and
train the same steps on the same rows; one with the distillation loss (alpha 0.5, T 2: half hard-label CE, half
the teacher's softened distribution), one on the hard labels only (alpha 1). Each model is measured in a fresh
process on the run's test split (accuracy, parameters, size on disk, batch-1 p50 latency, batch-32 throughput),
as `taskfit compress` measures. Results go to benchmarks/results/distill.json. Keep it short (≈ 5 min on 2 cores):
the teacher trains briefly, so absolute accuracy is below a full run's; the comparison is what matters.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=600)
    ap.add_argument("--teacher-epochs", type=float, default=2)
    ap.add_argument("--student-epochs", type=float, default=2)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/distill"))
    ap.add_argument("--repeats", type=int, default=2, help="Measure the three models this many times, in turn; "
                    "keep each one's best latency / throughput (the machine is shared).")
    ap.add_argument("--reuse", action="store_true", help="Re-measure the runs already under --out (no training).")
    args = ap.parse_args()

    from taskfit.utils.env import offline_defaults

    offline_defaults()
    from taskfit.compress.distill import distill
    from taskfit.config import Recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe

    args.out.mkdir(parents=True, exist_ok=True)
    load = os.getloadavg()
    data = write_dataset("bbc_news", args.out / "bbc.csv", n=args.rows, seed=0)
    recipe = Recipe.model_validate({
        "data": {"train": str(data), "max_length": 128}, "model": {"name": "all-MiniLM-L6-v2"},
        "train": {"epochs": args.teacher_epochs, "batch_size": 32, "lr": 1e-4, "head_lr": 2e-3, "seed": 0},
        "output": {"dir": str(args.out / "runs"), "name": "teacher", "overwrite": True}})
    teacher_dir = args.out / "runs" / "teacher"
    t0 = time.perf_counter()
    if not args.reuse:
        summary = train_recipe(recipe)
        print(f"teacher trained in {time.perf_counter() - t0:.0f} s; test accuracy "
              f"{summary.test_metrics['accuracy']:.4f}")
    teacher_s = time.perf_counter() - t0
    runs: dict[str, dict[str, Any]] = {}
    for name, alpha in (("distilled", 0.5), ("hard_labels_only", 1.0)):
        t1 = time.perf_counter()
        run = args.out / "runs" / name
        if not args.reuse:
            distill(teacher_dir, layers=args.layers, alpha=alpha, temperature=2.0, epochs=args.student_epochs,
                    lr=1e-4, out=run, overwrite=True, measure=False)
        block = json.loads((run / "results.json").read_text(encoding="utf-8"))["distillation"]
        runs[name] = {"alpha": alpha, "seconds": round(time.perf_counter() - t1, 1), "block": block, "dir": run}
    dirs = {"teacher": teacher_dir / "model", **{k: v["dir"] / "model" for k, v in runs.items()}}
    measured = measure_in_turn(dirs, teacher_dir, args.repeats)
    rows = [("teacher (6 layers)", measured["teacher"], runs["distilled"]["block"]["teacher_params"])]
    rows += [(f"{args.layers}-layer student, {name.replace('_', ' ')}", measured[name],
              r["block"]["student_params"]) for name, r in runs.items()]
    n = measured["teacher"]["n"]
    print(f"\n| model | accuracy ({n} test rows) | macro-F1 | parameters | size MB | p50 ms (batch 1) | "
          "rows/s (batch 32) |")
    print("|---|---|---|---|---|---|---|")
    table = []
    for label, m, params in rows:
        line = {"model": label, "accuracy": m["metrics"].get("accuracy"), "macro_f1": m["metrics"].get("macro_f1"),
                "params": params, "size_mb": m["size_mb"], "latency_p50_ms": m["latency_p50_ms"],
                "throughput_per_s": m["throughput_per_s"]}
        table.append(line)
        print(f"| {label} | {line['accuracy']:.4f} | {line['macro_f1']:.4f} | {params / 1e6:.1f} M | "
              f"{line['size_mb']:.1f} | {line['latency_p50_ms']:.2f} | {line['throughput_per_s']:.0f} |")
    results = {"repeats": args.repeats, "machine": platform.processor() or platform.machine(),
               "cpu_cores": os.cpu_count(),
               "load_average_at_start": [round(x, 2) for x in load],
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "rows": args.rows,
               "teacher_recipe": yaml.safe_load(recipe.to_yaml()),
               "teacher_train_s": _train_s(teacher_dir), "wall_s_this_call": round(teacher_s, 1),
               "students": {k: {"alpha": v["alpha"], "train_s": _train_s(v["dir"]), "temperature": 2.0,
                                "kept_layers": v["block"]["kept_layers"], "epochs": args.student_epochs}
                            for k, v in runs.items()},
               "table": table}
    dest = Path("benchmarks/results/distill.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {dest}")


def _train_s(run: Path) -> float:
    """Seconds the run's training loop took (results.json), so --reuse reports the original training time."""
    return float(json.loads((run / "results.json").read_text(encoding="utf-8"))["timing"]["train_s"])


def measure_in_turn(dirs: dict[str, Path], teacher_run: Path, repeats: int) -> dict[str, dict[str, Any]]:
    """Each model measured ``repeats`` times, models taking turns (so a burst of load on the shared machine hits
    all of them), each time in a fresh process on the teacher run's test split; keep the best timing of each."""
    import tempfile

    from taskfit.compress.run import _measure
    from taskfit.inference import held_out_rows
    from taskfit.tasks import TASKS

    meta = json.loads((teacher_run / "model" / "taskfit.json").read_text(encoding="utf-8"))
    frame, _ = held_out_rows(teacher_run, TASKS.get(meta["task"]).from_meta(meta), meta)
    best: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as td:
        rows_file = Path(td) / "rows.jsonl"
        frame.to_json(rows_file, orient="records", lines=True, force_ascii=False)
        for _ in range(repeats):
            for name, mdir in dirs.items():
                m = _measure(mdir, rows_file)
                old = best.setdefault(name, m)
                old["latency_p50_ms"] = min(old["latency_p50_ms"], m["latency_p50_ms"])
                old["throughput_per_s"] = max(old["throughput_per_s"], m["throughput_per_s"])
    return best


if __name__ == "__main__":
    main()
