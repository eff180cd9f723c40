"""Regression and multi-label on real data: taskfit's loop vs Hugging Face Trainer (regression), and
taskfit's multi-label figures against trivial baselines.

Regression: VADER tweets (mean human sentiment rating -4..4; MIT) with the packaged all-MiniLM-L6-v2.
Both trainers get the same model, rows, standardised targets, epochs, batch size, learning rate,
warm-up, schedule, weight decay, clipping and seed; both models are scored by the same ordered forward
pass (``Regression.evaluate``), because HF ``Trainer.predict`` after group_by_length training returned
rows out of order here (shared/DEPENDENCIES.md).

Multi-label: WNUT-2016 tweets → the entity types their annotation marks (10 labels, most tweets none),
thresholds tuned per label on the validation split, scored on the test split.

    python benchmarks/bench_scoring.py                  # CPU, ≤ 5 minutes; writes benchmarks/out/scoring.json
    python benchmarks/bench_scoring.py --rows 800 --epochs 1
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

import numpy as np
import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from taskfit.config import DataConfig, TrainConfig
from taskfit.data.packaged import write_dataset
from taskfit.models import resolve_model
from taskfit.pipeline import attention_kernel
from taskfit.tasks.multi_label import MultiLabel
from taskfit.tasks.regression import Regression
from taskfit.train import Progress, train_loop
from taskfit.utils.io import atomic_write_json

hf_logging.set_verbosity_error()
OUT = Path(__file__).parent / "out"
CPU = torch.device("cpu")


def regression_data(args: argparse.Namespace, tmp: Path, model_dir: Path) -> tuple[Regression, Any, dict]:
    """VADER rows → (task with train mean/sd, tokenizer, encoded train/test)."""
    df = pd.read_csv(write_dataset("vader_tweets", tmp / "vader.csv", n=args.rows + args.test_rows, seed=args.seed))
    df.iloc[: args.rows].to_csv(tmp / "train.csv", index=False)
    df.iloc[args.rows:].to_csv(tmp / "test.csv", index=False)
    task = Regression(label="score", max_length=64)
    # the held-out rows are read as valid (the loop's validation) and test: both trainers are scored on them
    splits = task.load_splits(DataConfig(train=tmp / "train.csv", valid=tmp / "test.csv", test=tmp / "test.csv",
                                         label="score"))
    tok = task.load_processor(model_dir)
    enc = {s: task.encode(f, tok, []) for s, f in splits.frames.items() if s in ("train", "test")}
    return task, tok, enc


def train_cfg(args: argparse.Namespace, precision: str = "auto") -> TrainConfig:
    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed, warmup=0.06,
                       checkpoint_every=10_000, eval_every=10_000, precision=precision)


def scored(task: Regression, model: torch.nn.Module, enc: dict, wall: float, epochs: float) -> dict:
    m = task.evaluate(model, enc["test"], [], CPU, None)
    return {"train_wall_s": round(wall, 2), "samples_per_s": round(len(enc["train"]) * epochs / wall, 1),
            "test_rmse": round(m["rmse"], 4), "test_mae": round(m["mae"], 4), "test_r2": round(m["r2"], 4),
            "test_spearman": round(m["spearman"], 4), "test_pearson": round(m["pearson"], 4)}


def run_taskfit_regression(args: argparse.Namespace, task: Regression, enc: dict, model_dir: Path) -> dict:
    torch.manual_seed(args.seed)
    model, heads = task.build_model(model_dir, [], attention_kernel("auto"))
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        train_loop(model=model, task=task, train=enc["train"], valid=enc["test"], labels=[], cfg=train_cfg(args),
                   head_names=heads, run_dir=Path(run_dir), progress=Progress())
        wall = time.perf_counter() - t0
    return scored(task, model, enc, wall, args.epochs)


def run_hf_regression(args: argparse.Namespace, task: Regression, tok: Any, enc: dict, model_dir: Path,
                      bf16: bool) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    torch.manual_seed(args.seed)
    model, _ = task.build_model(model_dir, [], "sdpa")
    train = enc["train"]
    rows = [{"input_ids": train["input_ids"][i].tolist(), "labels": float(train["targets"][i])}
            for i in range(len(train))]
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
            learning_rate=args.lr, warmup_steps=0.06, weight_decay=0.01, max_grad_norm=1.0, seed=args.seed,
            lr_scheduler_type="linear", save_strategy="no", eval_strategy="no", report_to="none",
            logging_steps=10_000, disable_tqdm=True, use_cpu=not torch.cuda.is_available(), bf16=bf16,
            train_sampling_strategy="group_by_length", dataloader_num_workers=0)
        trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=DataCollatorWithPadding(tok))
        t0 = time.perf_counter()
        trainer.train()  # the model's own MSE loss (problem_type="regression") on the same standardised targets
        wall = time.perf_counter() - t0
    return scored(task, model, enc, wall, args.epochs)


def run_multi_label(args: argparse.Namespace, tmp: Path, model_dir: Path) -> dict:
    path = write_dataset("wnut_entity_types", tmp / "wnut.csv", n=args.ml_rows, seed=args.seed)
    task = MultiLabel(label="labels", max_length=64)
    splits = task.load_splits(DataConfig(train=path, label="labels", valid_fraction=0.15, test_fraction=0.15,
                                         split_seed=args.seed))
    tok = task.load_processor(model_dir)
    enc = {s: task.encode(f, tok, splits.labels) for s, f in splits.frames.items()}
    torch.manual_seed(args.seed)
    model, heads = task.build_model(model_dir, splits.labels, attention_kernel("auto"))
    cfg = TrainConfig(epochs=args.ml_epochs, lr=args.lr, head_lr=1e-3, batch_size=args.batch_size, seed=args.seed,
                      warmup=0.06, checkpoint_every=10_000, eval_every=10_000)
    with tempfile.TemporaryDirectory() as run_dir:
        t0 = time.perf_counter()
        train_loop(model=model, task=task, train=enc["train"], valid=enc["valid"], labels=splits.labels, cfg=cfg,
                   head_names=heads, run_dir=Path(run_dir), progress=Progress())
        wall = time.perf_counter() - t0
    task.evaluate(model, enc["valid"], splits.labels, CPU, None)  # tunes the thresholds on validation
    m = task.evaluate(model, enc["test"], splits.labels, CPU, None)
    truth = enc["test"]["targets"] > 0.5
    share = float(truth.mean())
    return {"rows": {s: len(f) for s, f in splits.frames.items()}, "labels": len(splits.labels),
            "train_wall_s": round(wall, 2), "samples_per_s": round(len(enc["train"]) * args.ml_epochs / wall, 1),
            "test_micro_f1": round(m["micro_f1"], 4), "test_macro_f1": round(m["macro_f1"], 4),
            "test_subset_accuracy": round(m["subset_accuracy"], 4), "test_hamming_loss": round(m["hamming_loss"], 4),
            "baseline_all_negative": {"micro_f1": 0.0, "subset_accuracy": round(float((~truth.any(1)).mean()), 4),
                                      "hamming_loss": round(share, 4)},
            "baseline_all_positive": {"micro_f1": round(2 * share / (1 + share), 4)},
            "thresholds": task.thresholds,
            "per_label_f1": {k: round(v["f1"], 3) for k, v in m["per_label"].items()}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=2000, help="VADER training rows")
    p.add_argument("--test-rows", type=int, default=800)
    p.add_argument("--epochs", type=float, default=1)
    p.add_argument("--ml-epochs", type=float, default=2, help="multi-label epochs")
    p.add_argument("--ml-rows", type=int, default=None, help="multi-label rows (default: all 2,394 tweets)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--only", nargs="*", default=None, help="subset of: taskfit hf_group_by_length "
                   "hf_group_by_length_bf16 multi_label")
    args = p.parse_args()
    model_dir = resolve_model("all-MiniLM-L6-v2")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        task, tok, enc = regression_data(args, tmp, model_dir)
        settings = {
            "taskfit": lambda: run_taskfit_regression(args, task, enc, model_dir),
            "hf_group_by_length": lambda: run_hf_regression(args, task, tok, enc, model_dir, False),
            "hf_group_by_length_bf16": lambda: run_hf_regression(args, task, tok, enc, model_dir, True),
            "multi_label": lambda: run_multi_label(args, tmp, model_dir),
        }
        for name, fn in settings.items():
            if args.only is None or name in args.only:
                results[name] = fn()
                print(name, json.dumps(results[name]), flush=True)
    for name in ("hf_group_by_length", "hf_group_by_length_bf16"):
        if name in results and "taskfit" in results:
            results["taskfit"][f"speed_vs_{name}"] = round(
                results["taskfit"]["samples_per_s"] / results[name]["samples_per_s"], 2)
    lengths = enc["train"].lengths
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(), "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
            "args": vars(args), "regression_target": {"mean": task.target_mean, "sd": task.target_sd},
            "train_token_lengths": {"p50": int(np.median(lengths)), "max": int(lengths.max())}}
    if args.only and (OUT / "scoring.json").is_file():  # a partial run updates the settings it ran
        results = {**json.loads((OUT / "scoring.json").read_text())["results"], **results}
    atomic_write_json(OUT / "scoring.json", {"meta": meta, "results": results})
    print(json.dumps({"meta": meta}))


if __name__ == "__main__":
    main()
