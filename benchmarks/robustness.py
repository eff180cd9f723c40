"""Robustness with and without adversarial training: all-MiniLM-L6-v2 on BBC news (5 topics), through taskfit.

Two runs on the same rows with the same steps, batch, learning rate and seed: one plain, one with
``adversarial: {method: fgm, epsilon: E}`` (optionally a third with PGD). Each trained model is then attacked on
the same held-out rows with the English attack suite (typo, word_swap, word_delete, synonym; same seed, budget
and tries), as ``taskfit attack RUN --compare OTHER`` does. Prints a table and writes
``benchmarks/results/robustness.json``. CPU-sized: about 5 minutes on 2 busy shared cores.

    python benchmarks/robustness.py                       # 300 train rows, 60 test rows, 24 steps, FGM ε=0.3
    python benchmarks/robustness.py --epsilon 2 --pgd     # also a PGD run (3 steps)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pandas as pd
import torch

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.inference import Predictor
from taskfit.pipeline import train_recipe
from taskfit.trust.robustness import run_attacks

OUT = Path(__file__).parent / "results" / "robustness.json"
ATTACKS = ("typo", "word_swap", "word_delete", "synonym")


def train(name: str, data: dict[str, Path], out: Path, args: argparse.Namespace,
          adversarial: dict[str, object] | None) -> tuple[Path, dict[str, object]]:
    recipe: dict[str, object] = {
        "task": "text_classification",
        "data": {"train": str(data["train"]), "test": str(data["test"]), "valid_fraction": 0.1,
                 "max_length": args.max_length},
        "model": {"name": "all-MiniLM-L6-v2"}, "method": {"name": "full"},
        "train": {"epochs": 100, "max_steps": args.steps, "lr": args.lr, "head_lr": args.head_lr, "warmup": 0.1,
                  "batch_size": args.batch, "seed": args.seed, "eval_every": args.steps, "checkpoint_every": 10_000},
        "output": {"dir": str(out), "name": name, "overwrite": True},
    }
    if adversarial:
        recipe["adversarial"] = adversarial
    start = time.perf_counter()
    summary = train_recipe(parse_recipe(recipe))
    results = json.loads((summary.run_dir / "results.json").read_text(encoding="utf-8"))
    return summary.run_dir, {"train_wall_s": round(time.perf_counter() - start, 1),
                             "train_s": results["timing"]["train_s"], "steps": results["timing"]["steps"],
                             "test_accuracy": results["test"]["accuracy"], "adversarial": results.get("adversarial")}


def attack(run_dir: Path, frame: pd.DataFrame, args: argparse.Namespace) -> dict[str, object]:
    p = Predictor.load(run_dir)
    start = time.perf_counter()
    res = run_attacks(p.task, p.model, p.processor, p.labels, p.device, frame, names=list(ATTACKS),
                      budget=args.budget, tries=args.tries, seed=args.seed, examples=1)
    res["attack_wall_s"] = round(time.perf_counter() - start, 1)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-rows", type=int, default=300)
    ap.add_argument("--test-rows", type=int, default=60)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=2e-3)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--epsilon", type=float, default=0.3)
    ap.add_argument("--pgd", action="store_true", help="also train with PGD (3 steps) at the same epsilon")
    ap.add_argument("--budget", type=float, default=0.15)
    ap.add_argument("--tries", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmpd = Path(tmp)
        rows = pd.read_csv(write_dataset("bbc_news", tmpd / "bbc.csv", n=args.train_rows + args.test_rows,
                                         seed=args.seed))
        data = {"train": tmpd / "train.csv", "test": tmpd / "test.csv"}
        rows.iloc[: args.train_rows].to_csv(data["train"], index=False)
        test = rows.iloc[args.train_rows:].reset_index(drop=True)
        test.to_csv(data["test"], index=False)
        variants: list[tuple[str, dict[str, object] | None]] = [
            ("plain", None), (f"fgm_eps{args.epsilon:g}", {"method": "fgm", "epsilon": args.epsilon})]
        if args.pgd:
            variants.append((f"pgd_eps{args.epsilon:g}", {"method": "pgd", "epsilon": args.epsilon, "steps": 3}))
        runs = {}
        for name, adv in variants:
            run_dir, info = train(name, data, tmpd / "runs", args, adv)
            info["attacks"] = attack(run_dir, test, args)
            runs[name] = info
            print(f"{name}: trained in {info['train_wall_s']} s, attacked in {info['attacks']['attack_wall_s']} s",
                  flush=True)

    print(f"\nall-MiniLM-L6-v2, BBC news: {args.train_rows} train rows, {len(test)} test rows, {args.steps} steps "
          f"(batch {args.batch}, lr {args.lr}, head lr {args.head_lr}, max_length {args.max_length}); attacks: budget "
          f"{args.budget:.0%} of words, {args.tries} tries\n")
    names = list(runs)
    print(f"| measure | {' | '.join(names)} |\n|---|" + "---|" * len(names))
    print("| train s | " + " | ".join(f"{runs[n]['train_s']}" for n in names) + " |")
    print("| clean test accuracy | " + " | ".join(f"{runs[n]['attacks']['clean_accuracy']:.3f}" for n in names) + " |")
    for i, a in enumerate(ATTACKS):
        cells = [runs[n]["attacks"]["attacks"][i] for n in names]  # type: ignore[index]
        print(f"| {a}: accuracy / success | " + " | ".join(
            f"{c['accuracy_under_attack']:.3f} / {c['success_rate']:.3f}" for c in cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for info in runs.values():  # the examples quote news texts: keep the JSON small
        for a in info["attacks"]["attacks"]:  # type: ignore[index]
            a.pop("examples", None)
    record = {"benchmark": "robustness", "model": "all-MiniLM-L6-v2", "dataset": "bbc_news",
              "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
              "runs": runs, "load_avg": os.getloadavg(), "torch": torch.__version__, "cpu": platform.processor(),
              "cpu_cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
    args.out.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwritten {args.out}")


if __name__ == "__main__":
    main()
