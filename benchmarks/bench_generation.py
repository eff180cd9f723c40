"""taskfit's LoRA chat tuning (packed) vs a hand-written Hugging Face Trainer SFT, side by side on CPU.

Same model (packaged SmolLM2-135M-Instruct), same rows (chatterbot-corpus English pairs), same steps,
batch size, learning rate, weight decay, clipping, LoRA rank/alpha/targets (q/k/v), bf16 autocast and seed.
The HF side is what a user writes from the docs: ChatML via ``apply_chat_template``, prompt tokens labelled
-100, ``DataCollatorForSeq2Seq`` padding (no packing), ``Trainer`` + PEFT ``get_peft_model``.
Both trained models are scored by the same ordered forward pass (``Task.evaluate``: token-mean NLL over
answer tokens of the held-out rows), because Trainer's own predictions need not come back in row order.

Throughput counts *supervised* (answer) tokens: rows are drawn uniformly by both loops, so it is samples/s
× the mean number of answer tokens per training row.

    python benchmarks/bench_generation.py            # writes benchmarks/out/generation.json
    python benchmarks/bench_generation.py --steps 20 --rows 256
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
import pandas as pd
import torch
from transformers.utils import logging as hf_logging

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.models import resolve_model
from taskfit.pipeline import train_recipe
from taskfit.tasks.generation import Generation
from taskfit.utils.io import atomic_write_json

hf_logging.set_verbosity_error()
OUT = Path(__file__).parent / "out"
MODEL = "SmolLM2-135M-Instruct"


def make_files(args: argparse.Namespace, work: Path) -> dict[str, Path]:
    df = pd.read_csv(write_dataset("chat_en", work / "all.csv", seed=args.seed))
    df.iloc[: args.rows].to_csv(work / "train.csv", index=False)
    df.iloc[args.rows: args.rows + args.valid_rows].to_csv(work / "valid.csv", index=False)
    return {"train": work / "train.csv", "valid": work / "valid.csv"}


def recipe_tree(args: argparse.Namespace, files: dict[str, Path], work: Path) -> dict:
    return {"task": {"name": "generation", "packing": True, "eval_prompts": 0},
            "data": {"train": str(files["train"]), "valid": str(files["valid"]), "max_length": args.max_length,
                     "test_fraction": 0.0, "checks": {"leakage": "ignore"}},
            "model": {"name": MODEL}, "method": {"name": "lora", "r": 8, "alpha": 16, "dropout": 0.05},
            "train": {"lr": args.lr, "batch_size": args.batch_size, "max_steps": args.steps, "warmup": 0,
                      "weight_decay": 0.01, "max_grad_norm": 1.0, "eval_every": args.steps, "seed": args.seed,
                      "checkpoint_every": 10_000, "precision": "bf16"},
            "output": {"dir": str(work / "runs"), "name": "taskfit", "overwrite": True}}


def held_out(task: Generation, model: torch.nn.Module, tok: object, frame: pd.DataFrame) -> dict:
    m = task.evaluate(model, task.encode(frame, tok, []), [], torch.device("cpu"), torch.bfloat16)
    return {"loss": round(m["loss"], 4), "perplexity": round(m["perplexity"], 3), "tokens": m["tokens"]}


def run_taskfit(args: argparse.Namespace, files: dict[str, Path], work: Path) -> dict:
    summary = train_recipe(parse_recipe(recipe_tree(args, files, work)))
    t = summary.train
    return {"train_s": round(t.train_seconds, 2), "samples": t.samples_seen, "steps": t.steps,
            "valid": {"loss": round(summary.valid_metrics["loss"], 4),
                      "perplexity": round(summary.valid_metrics["perplexity"], 3)}}


def hf_rows(tok: object, frame: pd.DataFrame, max_length: int) -> list[dict]:
    """Hand-written SFT features: ChatML text, prompt tokens labelled -100, truncated to max_length."""
    out = []
    for conv in frame["_messages"]:
        prompt = tok.apply_chat_template(conv[:-1], tokenize=False, add_generation_prompt=True)  # type: ignore[attr-defined]
        full = tok.apply_chat_template(conv, tokenize=False).rstrip()  # type: ignore[attr-defined]
        ids = tok(full, add_special_tokens=False)["input_ids"][:max_length]  # type: ignore[operator]
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])  # type: ignore[operator]
        out.append({"input_ids": ids, "attention_mask": [1] * len(ids),
                    "labels": [-100] * min(n_prompt, len(ids)) + ids[n_prompt:]})
    return out


def run_hf(args: argparse.Namespace, frames: dict[str, pd.DataFrame], work: Path) -> tuple[dict, object]:
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(args.seed)
    model_dir = resolve_model(MODEL)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.05, bias="none",
                                             target_modules=["q_proj", "k_proj", "v_proj"], task_type="CAUSAL_LM"))
    train = hf_rows(tok, frames["train"], args.max_length)  # a list is a map-style dataset for Trainer
    targs = TrainingArguments(output_dir=str(work / "hf"), max_steps=args.steps,
                              per_device_train_batch_size=args.batch_size,
                              learning_rate=args.lr, weight_decay=0.01, warmup_steps=0, lr_scheduler_type="linear",
                              max_grad_norm=1.0, bf16=True, seed=args.seed, logging_steps=max(1, args.steps),
                              save_strategy="no", report_to=[], use_cpu=True, dataloader_num_workers=0,
                              disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=train,
                      data_collator=DataCollatorForSeq2Seq(tok, padding=True, label_pad_token_id=-100))
    out = trainer.train()
    secs = float(out.metrics["train_runtime"])
    return {"train_s": round(secs, 2), "samples": args.steps * args.batch_size, "steps": args.steps}, model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=128, help="training rows")
    ap.add_argument("--valid-rows", type=int, default=24)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    work = OUT / "generation_work"
    work.mkdir(parents=True, exist_ok=True)
    files = make_files(args, work)
    tree = recipe_tree(args, files, work)
    recipe = parse_recipe(tree)
    task = Generation.from_config(recipe.task, recipe.data)
    assert isinstance(task, Generation)
    splits = task.load_splits(recipe.data)
    tok = task.load_processor(resolve_model(MODEL))
    enc = task.encode(splits.frames["train"], tok, [])
    sup_per_row = float(np.mean([(t != -100).sum() for t in enc["targets"]]))
    tok_per_row = float(np.mean(enc.lengths))

    base, _ = task.build_model(resolve_model(MODEL), [], "eager")
    before = held_out(task, base, tok, splits.frames["valid"])
    del base

    t0 = time.perf_counter()
    ours = run_taskfit(args, files, work)
    ours["wall_s"] = round(time.perf_counter() - t0, 1)
    t0 = time.perf_counter()
    hf, hf_model = run_hf(args, splits.frames, work)
    hf["wall_s"] = round(time.perf_counter() - t0, 1)
    hf["valid"] = held_out(task, hf_model, tok, splits.frames["valid"])  # type: ignore[arg-type]
    for r in (ours, hf):
        r["samples_per_s"] = round(r["samples"] / r["train_s"], 3)
        r["supervised_tokens_per_s"] = round(r["samples"] * sup_per_row / r["train_s"], 1)
    result = {
        "setup": {**vars(args), "model": MODEL, "data": "chatterbot-corpus chat_en", "method": "LoRA r8 q/k/v",
                  "precision": "bf16 autocast", "mean_tokens_per_row": round(tok_per_row, 1),
                  "mean_supervised_tokens_per_row": round(sup_per_row, 1), "threads": torch.get_num_threads(),
                  "cpu": platform.processor() or platform.machine(), "cpu_cores": os.cpu_count(),
                  "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "untrained_valid": before, "taskfit_packed": ours, "hf_trainer_padded": hf,
        "speedup_samples_per_s": round(ours["samples_per_s"] / hf["samples_per_s"], 2),
    }
    atomic_write_json(OUT / "generation.json", result)
    print(json.dumps(result, indent=2))
    if not math.isfinite(hf["valid"]["loss"]):
        raise SystemExit("HF run diverged")


if __name__ == "__main__":
    main()
