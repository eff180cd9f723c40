"""The training loop's own behaviour: early stopping and token-budget batches, on the tiny BERT."""

from __future__ import annotations

import json

import torch

from conftest import tiny_recipe
from taskfit.config import parse_recipe
from taskfit.pipeline import train_recipe


def test_early_stopping_stops_and_keeps_the_best_weights(tmp_path, bbc_csv, tiny_model_dir):
    # min_delta larger than any possible loss change: only the first evaluation counts as an improvement,
    # so with patience 2 the run must stop at the third evaluation, long before its 4 epochs end.
    es = {"metric": "loss", "patience": 2, "min_delta": 100.0}
    recipe = parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, tmp_path, epochs=4, eval_every=3,
                                      early_stopping=es))
    summary = train_recipe(recipe)
    result = summary.train
    assert result.stopped_early
    assert result.steps == 9  # evaluations at steps 3, 6, 9
    evals = [r for r in result.history if "valid_loss" in r]
    assert [r["step"] for r in evals] == [3, 6, 9]
    assert result.best == {"metric": "loss", "value": evals[0]["valid_loss"], "step": 3}
    # the saved model holds the step-3 weights, not the step-9 ones
    best = torch.load(summary.run_dir / "checkpoints" / "best.pt", weights_only=True)
    from safetensors.torch import load_file

    saved = load_file(summary.run_dir / "model" / "model.safetensors")
    torch.testing.assert_close(saved["classifier.weight"], best["classifier.weight"])


def test_token_budget_batches_train_every_row_each_epoch(tmp_path, bbc_csv, tiny_model_dir):
    recipe = parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, tmp_path, epochs=6, lr=5e-3, batch_tokens=1024))
    summary = train_recipe(recipe)
    results = json.loads((summary.run_dir / "results.json").read_text())
    n_train = results["data_stats"]["rows"]["train"]
    assert summary.train.samples_seen == 6 * n_train
    # with 1024 tokens and rows of up to 64 tokens, batches hold at least 16 rows: fewer steps than rows/16
    assert summary.train.steps <= 6 * -(-n_train // 16)
    losses = [r["train_loss"] for r in summary.train.history if "train_loss" in r]
    assert losses[-1] < losses[0]
