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
    t0 = time.perf_counter()
    summary = train_recipe(recipe)
    teacher_s = time.perf_counter() - t0
    print(f"teacher trained in {teacher_s:.0f} s; test accuracy {summary.test_metrics['accuracy']:.4f}")
    runs: dict[str, dict[str, Any]] = {}
    for name, alpha in (("distilled", 0.5), ("hard_labels_only", 1.0)):
        t1 = time.perf_counter()
        run = distill(summary.run_dir, layers=args.layers, alpha=alpha, temperature=2.0,
                      epochs=args.student_epochs, lr=1e-4, out=args.out / "runs" / name, overwrite=True)
        block = json.loads((run / "results.json").read_text(encoding="utf-8"))["distillation"]
        runs[name] = {"alpha": alpha, "seconds": round(time.perf_counter() - t1, 1), "block": block}
    teacher = runs["distilled"]["block"]["comparison"]["before"]
    rows = [("teacher (6 layers)", teacher, runs["distilled"]["block"]["teacher_params"])]
    rows += [(f"{args.layers}-layer student, {name.replace('_', ' ')}", r["block"]["comparison"]["after"],
              r["block"]["student_params"]) for name, r in runs.items()]
    n = teacher["n"]
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
    results = {"machine": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
               "load_average_at_start": [round(x, 2) for x in load],
               "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "rows": args.rows,
               "teacher_recipe": yaml.safe_load(recipe.to_yaml()), "teacher_train_s": round(teacher_s, 1),
               "students": {k: {"alpha": v["alpha"], "seconds": v["seconds"], "temperature": 2.0,
                                "kept_layers": v["block"]["kept_layers"], "epochs": args.student_epochs}
                            for k, v in runs.items()},
               "table": table}
    dest = Path("benchmarks/results/distill.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nwrote {dest}")


if __name__ == "__main__":
    main()
