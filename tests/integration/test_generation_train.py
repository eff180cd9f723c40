"""Chat tuning end to end on the real SmolLM2-135M-Instruct with LoRA and real chatterbot-corpus rows.

A few packed steps must lower the held-out loss below the untrained model's on the same rows, and the saved
run must load through ``Predictor`` and write replies. Uses the converted model in the user's cache
(converted on first use, about 30 s once); the conversion itself is tested in tests/models/test_smollm2.py.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.inference import Predictor
from taskfit.models import resolve_model
from taskfit.pipeline import train_recipe
from taskfit.tasks import TASKS

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def chat_files(tmp_path_factory) -> dict[str, Path]:
    """80 short real dialogue pairs: 64 to train on, 16 held out."""
    d = tmp_path_factory.mktemp("chat")
    df = pd.read_csv(write_dataset("chat_en", d / "all.csv", seed=0))
    df = df[(df["prompt"].str.len() + df["response"].str.len()) < 160].iloc[:80]
    df.iloc[:64].to_csv(d / "train.csv", index=False)
    df.iloc[64:].to_csv(d / "valid.csv", index=False)
    return {"train": d / "train.csv", "valid": d / "valid.csv"}


def test_lora_chat_tuning_lowers_held_out_loss_and_predicts(tmp_path, chat_files):
    tree = {"task": {"name": "generation", "max_new_tokens": 12, "eval_prompts": 4},
            "data": {"train": str(chat_files["train"]), "valid": str(chat_files["valid"]), "max_length": 128,
                     "test_fraction": 0.0},
            "model": {"name": "SmolLM2-135M-Instruct"}, "method": {"name": "lora", "r": 8, "alpha": 16},
            "train": {"lr": 1e-3, "batch_size": 8, "max_steps": 5, "eval_every": 5, "warmup": 0,
                      "checkpoint_every": 100, "seed": 0},
            "output": {"dir": str(tmp_path), "name": "chat"}}
    recipe = parse_recipe(tree)

    # the untrained model's loss on the same held-out rows
    no_replies = recipe.task.model_copy(update={"eval_prompts": 0})  # only the loss is needed here
    task = TASKS.get("generation").from_config(no_replies, recipe.data)
    splits = task.load_splits(recipe.data)
    model_dir = resolve_model("SmolLM2-135M-Instruct")
    tok = task.load_processor(model_dir)
    base, _ = task.build_model(model_dir, [], "eager")
    before = task.evaluate(base, task.encode(splits.frames["valid"], tok, []), [], torch.device("cpu"), None)
    del base

    summary = train_recipe(recipe)
    after = summary.valid_metrics
    print(f"held-out loss before {before['loss']:.4f} after {after['loss']:.4f}")
    assert after["n"] == before["n"] == 16 and after["tokens"] == before["tokens"]
    assert after["loss"] < before["loss"], (before["loss"], after["loss"])
    assert len(after["samples"]) == 4 and all(s["generated"] for s in after["samples"])

    preds = Predictor.load(summary.run_dir).predict(["Hello, how are you?", "What is AI?"])
    assert all(isinstance(p["response"], str) and p["response"].strip() and 0 < p["tokens"] <= 64 for p in preds)
