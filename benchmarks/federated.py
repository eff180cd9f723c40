"""Federated vs central fine-tuning on real BBC news topics: accuracy, traffic and time.

Every row trains the packaged all-MiniLM-L6-v2 with LoRA (r 8 on query/key/value + the head) on the same
rows, learning rate, batch size and seed. "central" is one ``taskfit train`` run over all training rows for
``rounds × local_epochs`` epochs (constant learning rate, as the clients use); the federated rows split the
same training rows across clients (iid, or label-skewed Dirichlet(alpha)) and run ``rounds`` rounds of
``local_epochs`` local epochs with FedAvg or FedProx in Flower's simulation engine. Reported: test accuracy /
macro-F1 of the final model, validation accuracy after each round, bytes one client receives (= sends) per
round vs the full model, and wall seconds. Writes ``benchmarks/results/federated.json``.

    python benchmarks/federated.py                       # 600 rows, 3 clients, 3 rounds
    python benchmarks/federated.py --rows 1200 --clients 4 --rounds 5 --alpha 0.3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.federated import run_federated
from taskfit.pipeline import train_recipe

OUT = Path(__file__).parent / "results" / "federated.json"


def base_recipe(data: Path, out: Path, name: str, args: argparse.Namespace) -> dict[str, Any]:
    return {"data": {"train": str(data), "valid_fraction": 0.1, "test_fraction": 0.2, "max_length": args.max_length},
            "model": {"name": "all-MiniLM-L6-v2"}, "method": {"name": "lora", "r": 8, "save_adapter": False},
            "train": {"epochs": args.rounds * args.local_epochs, "lr": args.lr, "batch_size": args.batch,
                      "schedule": "constant", "warmup": 0, "seed": args.seed, "threads": args.threads,
                      "checkpoint_every": 10_000},
            "output": {"dir": str(out), "name": name, "overwrite": True}}


def central(data: Path, out: Path, args: argparse.Namespace) -> dict[str, Any]:
    start = time.perf_counter()
    summary = train_recipe(parse_recipe(base_recipe(data, out, "central", args)))
    wall = time.perf_counter() - start
    test = summary.test_metrics or {}
    return {"setup": "central", "partition": "-", "strategy": "-", "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"), "valid_accuracy_per_round": None, "bytes_per_client_round": None,
            "full_model_bytes": None, "failures": 0, "wall_s": round(wall, 1)}


def federated(data: Path, out: Path, args: argparse.Namespace, partition: str, strategy: str) -> dict[str, Any]:
    name = f"fed-{partition}-{strategy}"
    tree = base_recipe(data, out, name, args)
    tree["federated"] = {"clients": args.clients, "rounds": args.rounds, "local_epochs": args.local_epochs,
                         "partition": partition, "dirichlet_alpha": args.alpha, "strategy": strategy,
                         "proximal_mu": args.mu}
    start = time.perf_counter()
    summary = run_federated(parse_recipe(tree))
    wall = time.perf_counter() - start
    fed, test = summary.federated, summary.test_metrics or {}
    return {"setup": f"federated {args.clients} clients", "partition":
            f"dirichlet α={args.alpha:g}" if partition == "dirichlet" else partition,
            "strategy": strategy if strategy == "fedavg" else f"fedprox μ={args.mu:g}",
            "client_rows": fed["client_rows"], "test_accuracy": test.get("accuracy"),
            "test_macro_f1": test.get("macro_f1"),
            "valid_accuracy_per_round": [round(r["valid_accuracy"], 4) for r in fed["per_round"]],
            "bytes_per_client_round": fed["bytes_per_client"], "full_model_bytes": fed["full_model_bytes"],
            "failures": fed["failures"], "wall_s": round(wall, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=600)
    p.add_argument("--clients", type=int, default=3)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--local-epochs", type=float, default=1.0)
    p.add_argument("--alpha", type=float, default=0.3, help="Dirichlet concentration of the skewed split")
    p.add_argument("--mu", type=float, default=0.01, help="FedProx proximal weight")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (1 on a busy shared machine)")
    args = p.parse_args()

    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="taskfit-bench-fed-") as tmp:
        out = Path(tmp)
        data = write_dataset("bbc_news", out / "bbc.csv", n=args.rows, seed=args.seed)
        rows = [central(data, out, args)]
        for partition, strategy in (("iid", "fedavg"), ("dirichlet", "fedavg"), ("dirichlet", "fedprox")):
            rows.append(federated(data, out, args, partition, strategy))
    header = f"{'setup':<22}{'partition':<18}{'strategy':<15}{'test acc':>9}{'macro-F1':>9}  valid acc per round" \
             f"{'':<8}{'KB/client/round':>16}{'wall s':>8}"
    print(header)
    for r in rows:
        per_round = " ".join(f"{a:.2f}" for a in r["valid_accuracy_per_round"] or []) or "-"
        kb = f"{r['bytes_per_client_round'] / 1024:,.0f}" if r["bytes_per_client_round"] else "-"
        print(f"{r['setup']:<22}{r['partition']:<18}{r['strategy']:<15}{r['test_accuracy']:>9.4f}"
              f"{r['test_macro_f1']:>9.4f}  {per_round:<27}{kb:>16}{r['wall_s']:>8}")
    full = next(r["full_model_bytes"] for r in rows if r["full_model_bytes"])
    print(f"full model: {full / 1024:,.0f} KB; LoRA exchange per client and round: "
          f"{rows[1]['bytes_per_client_round'] / full:.2%} of it")
    result = {"benchmark": "federated", "args": vars(args), "rows": rows, "load_avg_at_start": load,
              "load_avg_at_end": os.getloadavg(), "machine": {"python": platform.python_version(),
                                                             "cpu_cores": os.cpu_count()},
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
