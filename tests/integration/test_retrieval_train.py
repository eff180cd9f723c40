"""Retrieval end to end on the real MiniLM and real FAQ pairs (chatterbot-corpus): training improves
ranking over the off-the-shelf encoder, and the saved run answers queries from its corpus via the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.pipeline import prepare, train_recipe
from taskfit.train.loop import pick_precision


@pytest.fixture(scope="module")
def faq_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 real English FAQ pairs."""
    return write_dataset("faq_en", tmp_path_factory.mktemp("faq") / "faq_en.csv", n=300, seed=0)


def test_training_beats_the_untrained_encoder_and_cli_predicts(
    faq_csv: Path, minilm_dir: Path, tmp_path: Path
) -> None:
    recipe = parse_recipe({
        "task": {"name": "retrieval"}, "data": {"train": str(faq_csv), "max_length": 32},
        "model": {"name": str(minilm_dir)}, "method": {"name": "full"},
        "train": {"max_steps": 6, "lr": 1e-4, "batch_size": 32, "seed": 0, "checkpoint_every": 100},
        "output": {"dir": str(tmp_path / "runs"), "name": "faq"},
    })
    # The off-the-shelf encoder, scored by the same evaluate on the same test split and corpus.
    task, splits, model_dir, processor = prepare(recipe)
    test_enc = task.encode(splits.frames["test"], processor, [])
    model, _ = task.build_model(model_dir, [], "eager")
    cpu = torch.device("cpu")
    before = task.evaluate(model, test_enc, [], cpu, pick_precision(recipe.train.precision, cpu))

    summary = train_recipe(recipe)
    after = summary.test_metrics
    assert after is not None and after["n"] == before["n"] and after["corpus_size"] == before["corpus_size"]
    assert after["mrr"] >= before["mrr"] and after["recall@1"] >= before["recall@1"], (before, after)

    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "taskfit", "predict", str(summary.run_dir), "how are you",
                          "--top-k", "3"], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = [json.loads(ln) for ln in out.stdout.splitlines() if ln.strip()]
    corpus = set(task.corpus)
    assert len(lines) == 1 and lines[0]["input"] == "how are you"
    assert [t["rank"] for t in lines[0]["top"]] == [1, 2, 3]
    assert all(t["answer"] in corpus for t in lines[0]["top"])
