"""Compression on a real task: MiniLM fine-tuned on BBC news, then `taskfit compress` methods and chains.

    .venv/bin/python benchmarks/bench_compress.py [--rows 2000] [--epochs 2] [--out benchmarks/out/compress]
        [--rounds 5]

Trains one run (taskfit, full fine-tuning), compresses it with onnx, onnx-int8, torch-int8 and the chains
prune-ffn,onnx-int8 / distill,onnx-int8 / distill,prune-ffn,onnx-int8 (FFN sparsity 0.5, 3 of 6 layers),
and prints the before/after table of each (test accuracy on the run's own test split, size on disk, p50/p95
latency at batch 1, throughput at batch 32, memory), measured in a fresh process per model, as `taskfit
compress` measures (the throughput ratio from its paired rounds). Then every model's batch-32 throughput
relative to the eager source is measured again in paired rounds in one process, all models together
(taskfit.compress.measure.paired_throughput): in CPU time with one thread (robust to other load and to a
hypervisor's steal time) and in wall-clock time with all cores. Results go to benchmarks/results/compress.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import yaml

#: (method or chain, options): FFN sparsity 0.5 and 3 of 6 layers, the settings measured in BENCHMARKS.md.
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("onnx", {}), ("onnx-int8", {}), ("torch-int8", {}), ("prune-ffn,onnx-int8", {"sparsity": 0.5}),
    ("distill,onnx-int8", {"layers": 3}), ("distill,prune-ffn,onnx-int8", {"layers": 3, "sparsity": 0.5})]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/compress"))
    ap.add_argument("--rounds", type=int, default=5, help="paired rounds per clock")
    args = ap.parse_args()

    from taskfit.utils.env import offline_defaults

    offline_defaults()
    from taskfit.compress import compress_run
    from taskfit.config import Recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe

    args.out.mkdir(parents=True, exist_ok=True)
    data = write_dataset("bbc_news", args.out / "bbc.csv", n=args.rows, seed=0)
    recipe = Recipe.model_validate({
        "data": {"train": str(data), "max_length": 128}, "model": {"name": "all-MiniLM-L6-v2"},
        "train": {"epochs": args.epochs, "batch_size": 32, "lr": 1e-4, "head_lr": 2e-3, "seed": 0},
        "output": {"dir": str(args.out / "runs"), "name": "src", "overwrite": True}})
    t0 = time.perf_counter()
    summary = train_recipe(recipe)
    print(f"trained in {time.perf_counter() - t0:.0f} s; test accuracy {summary.test_metrics['accuracy']:.4f}")
    results = {"machine": platform.processor() or platform.machine(), "rows": args.rows,
               "recipe": yaml.safe_load(recipe.to_yaml()), "methods": {}}
    print("| method | accuracy before → after | size MB | p50 ms (batch 1) | p95 ms | rows/s (batch 32) | "
          "model memory MB |")
    print("|---|---|---|---|---|---|---|")
    dirs = []
    for method, options in METHODS:
        t1 = time.perf_counter()
        r = compress_run(summary.run_dir, method, overwrite=True, options=options)
        b, a = r.before, r.after
        results["methods"][method] = {"before": b, "after": a, "drop": r.drop, "flagged": r.flagged,
                                      "paired": r.paired, "options": options,
                                      "build_and_measure_s": round(time.perf_counter() - t1)}
        dirs.append(r.run_dir)
        print(f"| {method} | {b['metrics']['accuracy']:.4f} → {a['metrics']['accuracy']:.4f} | "
              f"{b['size_mb']:.1f} → {a['size_mb']:.1f} | {b['latency_p50_ms']:.2f} → {a['latency_p50_ms']:.2f} "
              f"({b['latency_p50_ms'] / a['latency_p50_ms']:.2f}×) | {b['latency_p95_ms']:.2f} → "
              f"{a['latency_p95_ms']:.2f} | {b['throughput_per_s']:.0f} → {a['throughput_per_s']:.0f} "
              f"(paired {r.paired['ratio'] if r.paired else float('nan'):.2f}×) | {b['model_rss_mb']:.0f} → "
              f"{a['model_rss_mb']:.0f} |")
    paired_table(results, summary.run_dir, dirs, args.rounds)
    dest = Path("benchmarks/results/compress.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2))


def paired_table(results: dict[str, Any], run: Path, dirs: list[Path], rounds: int) -> None:
    """Throughput ratios to the eager source in paired rounds, both clocks; printed and kept in ``results``."""
    import os

    from taskfit.compress.measure import paired_throughput
    from taskfit.inference import Predictor, held_out_rows

    pred = Predictor.load(run)
    texts = [str(t) for t in held_out_rows(run, pred.task, pred.meta)[0][pred.task.text]]
    del pred
    load = os.getloadavg()
    cpu = paired_throughput([run, *dirs], texts, rounds, clock="cpu")
    wall = paired_throughput([run, *dirs], texts, rounds, clock="wall")
    results["paired"] = {"rows": len(texts), "rounds": rounds, "load_before": load, "load_after": os.getloadavg(),
                         "eager_cpu_1_thread": cpu[0], "eager_wall": wall[0]}
    print(f"\npaired batch-32 throughput vs eager ({len(texts)} rows, {rounds} rounds; eager {cpu[0]['rows_per_s']} "
          f"rows/s in CPU time, 1 thread; {wall[0]['rows_per_s']} rows/s wall-clock, all cores)")
    print("| method | accuracy | ratio, CPU time, 1 thread | ratio, wall clock, all cores |")
    print("|---|---|---|---|")
    for (method, _), c, w in zip(METHODS, cpu[1:], wall[1:], strict=True):
        entry = results["methods"][method]
        entry["paired_cpu_1_thread"], entry["paired_wall"] = c, w
        print(f"| {method} | {entry['after']['metrics']['accuracy']:.4f} | {c['ratio']:.2f}× | {w['ratio']:.2f}× |")


if __name__ == "__main__":
    main()
