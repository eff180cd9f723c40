"""FAQ retrieval on real data: taskfit fine-tuning vs the off-the-shelf encoder vs a hand-written loop.

Data: English FAQ / small-talk pairs from chatterbot-corpus 1.3.3 (BSD), split by query (held-out queries
never appear in train); the answer corpus is every distinct answer. Model: the packaged all-MiniLM-L6-v2.

Three rows of figures, all scored by the same ``Retrieval.evaluate`` (cosine over the whole corpus):

* ``untrained``: the off-the-shelf MiniLM embeddings (mean pooling), no training.
* ``taskfit``: ``train_recipe`` (bucketed batches, symmetric InfoNCE with duplicate answers masked,
  bf16 autocast where the CPU has it).
* ``hand_written``: what a user writes with plain PyTorch + ``AutoModel``: shuffled batches tokenised on
  the fly with ``padding=True``, mean pooling, in-batch InfoNCE (query→answer), AdamW, fp32. Same rows,
  batch size, learning rate, number of steps and seed.

    python benchmarks/bench_retrieval.py               # CPU, ≤ 5 minutes; writes benchmarks/out/retrieval.json
    python benchmarks/bench_retrieval.py --rows 1244 --steps 40
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np
import torch
import torch.nn.functional as F
from transformers import AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.models import resolve_model
from taskfit.pipeline import prepare, train_recipe
from taskfit.tasks.retrieval import Retrieval
from taskfit.train.loop import pick_precision
from taskfit.utils.io import atomic_write_json

hf_logging.set_verbosity_error()
OUT = Path(__file__).parent / "out"
CPU = torch.device("cpu")
KEYS = ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10", "loss")


def _scores(m: dict[str, Any]) -> dict[str, Any]:
    return {k: round(float(m[k]), 4) for k in KEYS} | {"n": m["n"], "corpus_size": m["corpus_size"]}


def hand_written(rows: list[tuple[str, str]], model_dir: Path, args: argparse.Namespace) -> tuple[Any, float, int]:
    """A plain PyTorch sentence-pair loop; returns (model, train seconds, samples seen)."""
    torch.manual_seed(args.seed)
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModel.from_pretrained(model_dir, attn_implementation="eager").train()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    rng = np.random.default_rng(args.seed)
    order = np.concatenate([rng.permutation(len(rows)) for _ in range(args.steps * args.batch // len(rows) + 1)])

    def embed(texts: list[str]) -> torch.Tensor:
        b = tok(texts, padding=True, truncation=True, max_length=args.max_length, return_tensors="pt")
        h = model(**b).last_hidden_state
        m = b["attention_mask"].unsqueeze(-1).float()
        return F.normalize((h * m).sum(1) / m.sum(1), dim=-1)

    seen, start = 0, time.perf_counter()
    for step in range(args.steps):
        idx = order[step * args.batch:(step + 1) * args.batch]
        q, a = embed([rows[i][0] for i in idx]), embed([rows[i][1] for i in idx])
        loss = F.cross_entropy(q @ a.T / args.temperature, torch.arange(len(idx)))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        seen += len(idx)
    return model, time.perf_counter() - start, seen


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=480, help="FAQ pairs sampled from faq_en (1,244 in all)")
    ap.add_argument("--steps", type=int, default=10, help="training steps of both loops")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--max-length", type=int, default=40)
    ap.add_argument("--temperature", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    model_dir = resolve_model("all-MiniLM-L6-v2")
    with tempfile.TemporaryDirectory() as tmp:
        data = write_dataset("faq_en", Path(tmp) / "faq_en.csv", n=args.rows, seed=args.seed)
        recipe = parse_recipe({
            "task": {"name": "retrieval", "temperature": args.temperature},
            "data": {"train": str(data), "max_length": args.max_length},
            "model": {"name": str(model_dir)}, "method": {"name": "full"},
            "train": {"max_steps": args.steps, "lr": args.lr, "batch_size": args.batch, "seed": args.seed,
                      "warmup": 0.0, "checkpoint_every": 10_000},
            "output": {"dir": str(Path(tmp) / "runs"), "name": "faq"},
        })
        task, splits, _, processor = prepare(recipe)
        assert isinstance(task, Retrieval)
        test = task.encode(splits.frames["test"], processor, [])
        dtype = pick_precision(recipe.train.precision, CPU)

        base = AutoModel.from_pretrained(model_dir, attn_implementation="eager")
        untrained = _scores(task.evaluate(base, test, [], CPU, dtype))
        del base

        summary = train_recipe(recipe)
        timing = json_load(summary.run_dir / "results.json")["timing"]
        assert summary.test_metrics is not None
        ours = _scores(summary.test_metrics)

        train_rows = list(zip(splits.frames["train"]["query"], splits.frames["train"]["answer"], strict=True))
        hw_model, hw_s, hw_seen = hand_written(train_rows, model_dir, args)
        hand = _scores(task.evaluate(hw_model, test, [], CPU, dtype))

    hw_sps = hw_seen / hw_s
    result = {
        "benchmark": "retrieval / FAQ matching, faq_en (chatterbot-corpus), all-MiniLM-L6-v2, full fine-tuning",
        "settings": vars(args) | {"rows_per_split": {s: len(f) for s, f in splits.frames.items()}},
        "untrained": untrained,
        "taskfit": ours | {"samples_per_s": timing["train_samples_per_s"], "train_s": timing["train_s"],
                           "precision": timing["precision"], "steps": timing["steps"]},
        "hand_written": hand | {"samples_per_s": round(hw_sps, 1), "train_s": round(hw_s, 2), "precision": "fp32",
                                "steps": args.steps},
        "ratios": {
            "taskfit_vs_untrained_mrr": round(ours["mrr"] / max(untrained["mrr"], 1e-9), 3),
            "taskfit_vs_untrained_recall@1": round(ours["recall@1"] / max(untrained["recall@1"], 1e-9), 3),
            "taskfit_vs_hand_written_samples_per_s": round(timing["train_samples_per_s"] / max(hw_sps, 1e-9), 2),
        },
        "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                     "torch_threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 1)},
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    OUT.mkdir(exist_ok=True)
    atomic_write_json(OUT / "retrieval.json", result)
    for name in ("untrained", "taskfit", "hand_written"):
        r = result[name]
        print(f"{name:13s} " + "  ".join(f"{k} {r[k]}" for k in (*KEYS[:4], "samples_per_s") if k in r))
    print("ratios", result["ratios"], "wall", result["wall_s"], "s")


def json_load(path: Path) -> dict[str, Any]:
    import json

    return dict(json.loads(path.read_text(encoding="utf-8")))


if __name__ == "__main__":
    main()
