"""Fairness and explanations on real data with a real group column (vader_domains: pos/neg sentiment of
tweets, movie reviews, product reviews and news editorials; group = the source domain).

1. Train all-MiniLM-L6-v2 through taskfit with ``fairness: {group_column: domain, mitigate: true}`` and report
   per-domain accuracy / selection rate, the demographic-parity and equalized-odds differences, and the
   before/after of fairlearn's ThresholdOptimizer (fitted on validation, applied to test).
2. Explain test texts with integrated gradients (captum): seconds per text, the convergence delta relative
   to f(x) − f(baseline), and a deletion check of faithfulness: replacing the 3 words with the largest
   positive attribution by padding must lower the explained probability more than replacing 3 random words.

Writes ``benchmarks/results/fairness.json``.

    python benchmarks/fairness_explain.py                  # 2,400 rows, 1 epoch, 24 texts explained
    python benchmarks/fairness_explain.py --rows 1200 --explain 12
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.inference import Predictor
from taskfit.pipeline import train_recipe
from taskfit.trust.explain import explain_texts

OUT = Path(__file__).parent / "results" / "fairness.json"


def train(data: Path, out: Path, args: argparse.Namespace) -> tuple[Path, dict[str, Any], float]:
    recipe = {"data": {"train": str(data), "valid_fraction": 0.2, "test_fraction": 0.2, "max_length": 64},
              "model": {"name": "all-MiniLM-L6-v2"}, "method": {"name": "full"},
              "train": {"epochs": args.epochs, "lr": 1e-4, "batch_size": 32, "seed": 0, "checkpoint_every": 10_000},
              "fairness": {"group_column": "domain", "mitigate": True, "constraint": args.constraint},
              "output": {"dir": str(out), "name": "vader", "overwrite": True}}
    start = time.perf_counter()
    summary = train_recipe(parse_recipe(recipe))
    wall = time.perf_counter() - start
    return summary.run_dir, json.loads((summary.run_dir / "results.json").read_text()), wall


def deletion_drop(p: Predictor, expl: dict[str, Any], words: list[dict[str, Any]]) -> float:
    """Drop of the explained label's probability when ``words`` are replaced by the pad token."""
    tok = p.processor
    text = expl["text"]
    for w in sorted(words, key=lambda w: -w["start"]):
        text = text[:w["start"]] + f" {tok.pad_token} " + text[w["end"]:]
    k = p.labels.index(expl["target"])
    return float(expl["target_score"] - p.predict_proba([text])[0, k])


def explain_figures(run_dir: Path, texts: list[str], steps: int) -> dict[str, Any]:
    p = Predictor.load(run_dir)
    start = time.perf_counter()
    out = explain_texts(p.task, p.model, p.processor, p.labels, texts, p.device, steps=steps)
    per_text = (time.perf_counter() - start) / len(texts)
    rel = [abs(e["delta"]) / max(abs(e["target_score"] - e["baseline_score"]), 1e-6) for e in out]
    rng = random.Random(0)
    top, rand = [], []
    for e in out:
        scored = [w for w in e["words"] if w["score"] is not None and w["word"].isalnum()]
        if len(scored) < 6:
            continue
        top.append(deletion_drop(p, e, sorted(scored, key=lambda w: -w["score"])[:3]))
        rand.append(deletion_drop(p, e, rng.sample(scored, 3)))
    return {"texts": len(out), "steps": steps, "seconds_per_text": round(per_text, 3),
            "median_abs_delta": float(np.median([abs(e["delta"]) for e in out])),
            "median_relative_delta": float(np.median(rel)), "max_relative_delta": float(np.max(rel)),
            "deletion_texts": len(top), "prob_drop_top3": float(np.mean(top)) if top else None,
            "prob_drop_random3": float(np.mean(rand)) if rand else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=2400)
    ap.add_argument("--epochs", type=float, default=1.0)
    ap.add_argument("--constraint", default="demographic_parity", choices=["demographic_parity", "equalized_odds"])
    ap.add_argument("--explain", type=int, default=24, help="test texts explained")
    ap.add_argument("--steps", type=int, default=32, help="integration steps")
    args = ap.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset("vader_domains", Path(tmp) / "vader_domains.csv", n=args.rows, seed=0)
        run_dir, results, wall = train(data, Path(tmp) / "runs", args)
        fair = results["fairness"]
        test = pd.read_csv(data).sample(frac=1.0, random_state=1)  # a spread of texts (train and test rows)
        texts = test["text"].head(args.explain).tolist()
        expl = explain_figures(run_dir, texts, args.steps)
    mit = fair["mitigation"]
    print(f"vader_domains {args.rows} rows, test accuracy {results['test']['accuracy']:.4f}, train+eval {wall:.0f}s")
    print(f"{'domain':<16}{'n':>5}{'acc':>8}{'sel.rate':>10}{'TPR':>8}{'FPR':>8}")
    for r in fair["groups"]:
        print(f"{r['group']:<16}{r['n']:>5}{r['accuracy']:>8.3f}{r['selection_rate']:>10.3f}{r['tpr']:>8.3f}"
              f"{r['fpr']:>8.3f}")
    print(f"{'':<16}{'before':>10}{'after':>10}   (ThresholdOptimizer, {mit['constraint']})")
    for k in ("accuracy", "demographic_parity_difference", "equalized_odds_difference"):
        print(f"{k[:15]:<16}{mit['before'][k]:>10.4f}{mit['after'][k]:>10.4f}")
    print(f"IG ({expl['steps']} steps): {expl['seconds_per_text']}s/text, median |delta|/|change| "
          f"{expl['median_relative_delta']:.2e}; deletion: top-3 words -{expl['prob_drop_top3']:.3f} vs random-3 "
          f"-{expl['prob_drop_random3']:.3f}")
    record = {"dataset": "vader_domains", "rows": args.rows, "epochs": args.epochs, "model": "all-MiniLM-L6-v2",
              "test": {k: results["test"][k] for k in ("accuracy", "macro_f1", "n")},
              "train_eval_wall_s": round(wall, 1), "fairness": fair, "explain": expl, "torch": torch.__version__,
              "cpu": platform.processor(),
              "load_avg": os.getloadavg()}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
