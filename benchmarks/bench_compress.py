"""Compression on a real task: MiniLM fine-tuned on BBC news, then every `taskfit compress` method.

    .venv/bin/python benchmarks/bench_compress.py [--rows 2000] [--epochs 2] [--out benchmarks/out/compress]

Trains one run (taskfit, full fine-tuning), compresses it with onnx, onnx-int8 and torch-int8, and prints
the before/after table of each (test accuracy on the run's own test split, size on disk, p50/p95 latency
at batch 1, throughput at batch 32, memory), measured in a fresh process per model on this machine.
Results go to benchmarks/results/compress.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import yaml


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2000)
    ap.add_argument("--epochs", type=float, default=2)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/compress"))
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
    for method in ("onnx", "onnx-int8", "torch-int8"):
        r = compress_run(summary.run_dir, method, overwrite=True)
        b, a = r.before, r.after
        results["methods"][method] = {"before": b, "after": a, "drop": r.drop, "flagged": r.flagged}
        print(f"| {method} | {b['metrics']['accuracy']:.4f} → {a['metrics']['accuracy']:.4f} | "
              f"{b['size_mb']:.1f} → {a['size_mb']:.1f} | {b['latency_p50_ms']:.2f} → {a['latency_p50_ms']:.2f} "
              f"({b['latency_p50_ms'] / a['latency_p50_ms']:.2f}×) | {b['latency_p95_ms']:.2f} → "
              f"{a['latency_p95_ms']:.2f} | {b['throughput_per_s']:.0f} → {a['throughput_per_s']:.0f} "
              f"({a['throughput_per_s'] / b['throughput_per_s']:.2f}×) | {b['model_rss_mb']:.0f} → "
              f"{a['model_rss_mb']:.0f} |")
    dest = Path("benchmarks/results/compress.json")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
