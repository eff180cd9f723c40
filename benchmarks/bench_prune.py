"""Sparsity vs accuracy: MiniLM fine-tuned on BBC news, pruned by every `taskfit compress` pruning method.

    .venv/bin/python benchmarks/bench_prune.py [--run benchmarks/out/compress/runs/src] [--recovery-steps 50]
                                               [--rows N]

Uses the run of benchmarks/bench_compress.py when it exists (else trains the same one: 2000 BBC rows, 2 epochs,
full fine-tuning). For prune-heads and prune-ffn at fractions 0.25 / 0.5 and prune-magnitude at 0.3 / 0.5 / 0.7,
each without and with recovery fine-tuning (and a 0-fraction control: recovery steps alone), it builds the
pruned model exactly as `taskfit compress` does and measures it on the run's test split with
`taskfit.compress.measure.measure` (accuracy, size on disk, p50 latency at batch 1, throughput at batch 32),
here in this one process (memory figures are left out for that reason). Prints a table; writes
benchmarks/results/prune.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

CONFIGS = [("prune-heads", 0.25), ("prune-heads", 0.5), ("prune-ffn", 0.25), ("prune-ffn", 0.5),
           ("prune-magnitude", 0.3), ("prune-magnitude", 0.5), ("prune-magnitude", 0.7)]


def source_run(path: Path, out: Path) -> Path:
    """The benchmark's fine-tuned MiniLM: ``path`` if it holds a model, else trained like bench_compress."""
    if (path / "model" / "taskfit.json").is_file():
        return path
    from taskfit.config import Recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe

    data = write_dataset("bbc_news", out / "bbc.csv", n=2000, seed=0)
    recipe = Recipe.model_validate({
        "data": {"train": str(data), "max_length": 128}, "model": {"name": "all-MiniLM-L6-v2"},
        "train": {"epochs": 2, "batch_size": 32, "lr": 1e-4, "head_lr": 2e-3, "seed": 0},
        "output": {"dir": str(out / "runs"), "name": "src", "overwrite": True}})
    return train_recipe(recipe).run_dir


def build(run: Path, method: str, options: dict[str, Any], dest: Path) -> dict[str, Any]:
    """What `taskfit compress` writes into NEW_RUN/model, without its fresh-process measurement."""
    from taskfit.compress.methods import COMPRESSORS, BuildContext
    from taskfit.compress.run import WEIGHT_FILES

    comp, src = COMPRESSORS.get(method), run / "model"
    meta = json.loads((src / "taskfit.json").read_text())
    opts = comp.check(run, src, meta, options) if comp.check else options
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for f in src.iterdir():
        if f.is_file() and f.name not in WEIGHT_FILES:
            shutil.copy2(f, dest / f.name)
    extra: dict[str, Any] = comp.build(src, dest, meta, BuildContext(opts, run, dest.with_name("work"), print))
    (dest / "taskfit.json").write_text(json.dumps({**meta, **extra, "compression_method": method}))
    return extra


def paired_speedups(run: Path, dirs: list[Path], texts: list[str], rounds: int = 5) -> list[float]:
    """Throughput at batch 32 of each model in ``dirs`` relative to the source, in CPU time of one thread over
    paired rounds (:func:`taskfit.compress.measure.paired_throughput`): on a shared machine, other processes'
    load changes wall-clock time a lot and CPU time little."""
    from taskfit.compress.measure import paired_throughput

    return [r["ratio"] for r in paired_throughput([run, *dirs], texts, rounds, clock="cpu")[1:]]


def print_table(results: dict[str, Any]) -> None:
    base = results["baseline"]
    print(f"\nbaseline: accuracy {base['metrics']['accuracy']:.4f}, {base['size_mb']:.1f} MB, "
          f"{base['throughput_per_s']:.0f} rows/s at batch 32 ({results['rows']})")
    print("| method | fraction | recovery | real sparsity | heads | FFN | params M | test accuracy | size MB | "
          "zlib MB | throughput vs source (batch 32, CPU time, 1 thread) |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results["configs"]:
        sp = f"{r['real_sparsity']:.3f}" if r["real_sparsity"] is not None else "-"
        paired = f"{r['paired_speedup']:.2f}×" if r.get("paired_speedup") else "-"
        print(f"| {r['method']} | {r['sparsity']:g} | {r['recovery']} | {sp} | {r['heads'] or 72} | "
              f"{r['intermediate_size'] or 1536} | {r['params'] / 1e6:.2f} | {r['metrics']['accuracy']:.4f} | "
              f"{r['size_mb']:.1f} | {r['weights_zlib_mb']:.1f} | {paired} |")


def paired_only(args: argparse.Namespace) -> None:
    """Add paired throughput ratios to benchmarks/results/prune.json from the models built by a full run."""
    from taskfit.inference import held_out_rows
    from taskfit.tasks import TASKS

    dest = Path("benchmarks/results/prune.json")
    results = json.loads(dest.read_text())
    run = Path(results["source_run"])
    dirs = [args.out / f"{r['method']}-{r['sparsity']:g}-{'rec' if r['recovery'] else 'raw'}"
            for r in results["configs"]]
    meta = json.loads((run / "model" / "taskfit.json").read_text())
    task = TASKS.get(meta["task"]).from_meta(meta)
    texts = [str(t) for t in held_out_rows(run, task, meta)[0][task.text].head(64)]
    load = os.getloadavg()
    for r, s in zip(results["configs"], paired_speedups(run, dirs, texts), strict=True):
        r["paired_speedup"] = s
    results["paired"] = {"rows": len(texts), "rounds": 5, "clock": "process_time, 1 thread", "load_before": load,
                         "load_after": os.getloadavg()}
    dest.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"paired timing: load average before {load}, after {results['paired']['load_after']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=Path("benchmarks/out/compress/runs/src"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/prune"))
    ap.add_argument("--recovery-steps", type=int, default=50)
    ap.add_argument("--rows", type=int, default=None, help="measure on the first N test rows only")
    ap.add_argument("--paired-only", action="store_true", help="only add paired throughput ratios to the results "
                    "of an earlier full run (its models in --out)")
    args = ap.parse_args()

    from taskfit.utils.env import offline_defaults

    offline_defaults()
    from taskfit.compress.measure import measure
    from taskfit.inference import held_out_rows
    from taskfit.tasks import TASKS

    if args.paired_only:
        paired_only(args)
        return
    args.out.mkdir(parents=True, exist_ok=True)
    run = source_run(args.run, args.out)
    meta = json.loads((run / "model" / "taskfit.json").read_text())
    frame, where = held_out_rows(run, TASKS.get(meta["task"]).from_meta(meta), meta)
    if args.rows:
        frame, where = frame.head(args.rows), f"first {args.rows} rows of the {where}"
    rows_file = Path(tempfile.mkdtemp()) / "rows.jsonl"
    frame.to_json(rows_file, orient="records", lines=True, force_ascii=False)
    keep = ("metrics", "n", "size_mb", "latency_p50_ms", "throughput_per_s", "threads")

    def measured(model_dir: Path) -> dict[str, Any]:
        return {k: v for k, v in measure(model_dir, rows_file).items() if k in keep}

    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "source_run": str(run),
                               "rows": where, "recovery_steps": args.recovery_steps,
                               "load_before": os.getloadavg(), "baseline": measured(run / "model"), "configs": []}
    plan = [("prune-structured", 0.0, True), *((m, s, r) for m, s in CONFIGS for r in (False, True))]
    for method, sparsity, recover in plan:
        t0 = time.perf_counter()
        dest = args.out / f"{method}-{sparsity:g}-{'rec' if recover else 'raw'}"
        extra = build(run, method, {"sparsity": sparsity,
                                    "recovery_steps": args.recovery_steps if recover else 0}, dest)
        info = extra["pruning"]
        row = {"method": method, "sparsity": sparsity, "recovery": recover,
               "build_s": round(time.perf_counter() - t0, 1), "params": info["params_after"],
               "real_sparsity": info.get("sparsity"),
               "heads": sum(info.get("heads_per_layer") or info.get("heads_before") or []),
               "intermediate_size": info.get("intermediate_size", info.get("intermediate_before")),
               "weights_mb": info["weights_mb"], "weights_zlib_mb": info["weights_zlib_mb"],
               "valid": info.get("recovery", {}).get("valid_after"), **measured(dest)}
        results["configs"].append(row)
        print(json.dumps({k: row[k] for k in ("method", "sparsity", "recovery", "build_s")}), flush=True)
    results["load_after"] = os.getloadavg()
    dest = Path("benchmarks/results/prune.json")
    dest.write_text(json.dumps(results, indent=2))
    paired_only(args)
    print(f"load average before {results['load_before']}, after {results['load_after']}")


if __name__ == "__main__":
    main()
