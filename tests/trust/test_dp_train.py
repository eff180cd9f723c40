"""DP-SGD through the real pipeline: results.json["privacy"], the report section, exact resume of the
budget, the tasks it works with, and the recipes it refuses (with the reason and the fix)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from conftest import interrupt_at, tiny_recipe
from taskfit.config import Recipe, parse_recipe
from taskfit.data.packaged import DATASETS, write_dataset
from taskfit.errors import ConfigError
from taskfit.methods import METHODS
from taskfit.pipeline import prepare, train_recipe
from taskfit.train import Progress, train_loop
from taskfit.train.checkpoint import trainable_state
from taskfit.trust import recipe_problems, step_hooks

DP = {"dp": {"epsilon": 4.0, "delta": 1e-4, "max_grad_norm": 1.0, "accountant": "rdp"}}


def _results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text())  # type: ignore[no-any-return]


def test_lora_dp_run_on_bbc_with_minilm_reports_its_budget(tmp_path: Path, bbc_csv: Path, minilm_dir: Path) -> None:
    tree = tiny_recipe(bbc_csv, minilm_dir, tmp_path, max_steps=3, batch_size=16, lr=1e-3, threads=1)
    tree["method"] = {"name": "lora"}
    tree["privacy"] = {"dp": {"epsilon": 8.0}}  # prv accountant, δ = 1 / (10 × rows) by default
    run = train_recipe(parse_recipe(tree))
    privacy = _results(run.run_dir)["privacy"]
    n_train = round(16 / privacy["sample_rate"])
    assert privacy["steps"] == privacy["steps_planned"] == 3 and privacy["accountant"] == "prv"
    assert 7.5 < privacy["epsilon_spent"] <= privacy["epsilon_target"] == 8.0
    assert privacy["delta"] == pytest.approx(1 / (10 * n_train)) and privacy["noise_multiplier"] > 0
    report = (run.run_dir / "report.html").read_text()
    assert "Privacy (differential privacy)" in report and "-differentially private</b>" in report
    assert (run.run_dir / "model" / "model.safetensors").is_file()  # saved as a plain merged model


def _train(recipe: Recipe, run_dir: Path, resume: bool = False, progress: Progress | None = None
           ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The pipeline's training part (prepare, encode, build, hooks, loop) without scoring and report."""
    task, splits, model_dir, processor = prepare(recipe)
    encoded = {s: task.encode(df, processor, splits.labels) for s, df in splits.frames.items()}
    torch.manual_seed(recipe.train.seed)
    model, heads = task.build_model(model_dir, splits.labels, "eager")
    model = METHODS.get(recipe.method.name).apply(model, recipe.method, heads)
    result = train_loop(model=model, task=task, train=encoded["train"], valid=encoded["valid"],
                        labels=splits.labels, cfg=recipe.train, head_names=heads, run_dir=run_dir, resume=resume,
                        progress=progress, hooks=step_hooks(recipe, task, len(encoded["train"])))
    return trainable_state(model), result.extra["dp"]


def test_resume_continues_the_budget_and_the_noise_exactly(tmp_path: Path, bbc_csv: Path,
                                                           tiny_model_dir: Path) -> None:
    tree = tiny_recipe(bbc_csv, tiny_model_dir, tmp_path, max_steps=6, checkpoint_every=3, eval_every=3,
                       batch_size=16)
    # LoRA: full fine-tuning would spend most of the test on [B, 30522, 32] per-example embedding gradients.
    tree.update(privacy=DP, method={"name": "lora"})
    recipe = parse_recipe(tree)
    weights_a, privacy_a = _train(recipe, tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        _train(recipe, tmp_path / "b", progress=interrupt_at(5))
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "step-00000003.pt"
    weights_b, privacy_b = _train(recipe, tmp_path / "b", resume=True)
    assert privacy_a == privacy_b and privacy_a["steps"] == 6  # 3 steps charged before the checkpoint, 3 after
    assert weights_a.keys() == weights_b.keys()
    for k in weights_a:  # same Poisson batches and the same noise draws (the RNG state is in the checkpoint)
        torch.testing.assert_close(weights_a[k], weights_b[k], atol=1e-6, rtol=0, msg=k)


@pytest.mark.parametrize(("dataset", "method"), [("wnut_entity_types", "full"), ("vader_tweets", "lora")])
def test_multi_label_and_regression_train_under_dp(tmp_path: Path, tiny_model_dir: Path, dataset: str,
                                                   method: str) -> None:
    ds = DATASETS.get(dataset)
    path = write_dataset(dataset, tmp_path / f"{dataset}.csv", n=160, seed=0)
    tree = {**ds.recipe, "model": {"name": str(tiny_model_dir)}, "method": {"name": method},
            "data": {**ds.recipe["data"], "train": str(path), "max_length": 48}, "privacy": DP,
            "train": {"max_steps": 3, "batch_size": 8, "lr": 1e-3}, "output": {"dir": str(tmp_path), "name": "r"}}
    privacy = _results(train_recipe(parse_recipe(tree)).run_dir)["privacy"]
    assert privacy["steps"] == 3 and 0 < privacy["epsilon_spent"] <= 4.0


def test_image_classification_with_a_frozen_backbone_trains_under_dp(tmp_path: Path) -> None:
    """EfficientNet-Lite0's BatchNorm stays in eval mode when its weights are frozen, so the head alone gets
    per-example gradients; training the backbone is refused (see the refusals test)."""
    ds = DATASETS.get("mnist_digits")
    path = write_dataset("mnist_digits", tmp_path / "digits", n=100, seed=0)
    tree = {**ds.recipe, "data": {"train": str(path)}, "privacy": DP, "output": {"dir": str(tmp_path), "name": "r"},
            "train": {"max_steps": 2, "batch_size": 8, "lr": 3e-3, "threads": 1}}
    privacy = _results(train_recipe(parse_recipe(tree)).run_dir)["privacy"]
    assert privacy["steps"] == 2 and 0 < privacy["epsilon_spent"] <= 4.0


def _problems(tmp_path: Path, bbc_csv: Path, **changes: Any) -> list[str]:
    tree = tiny_recipe(bbc_csv, tmp_path, tmp_path)
    tree["privacy"] = DP
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            tree.setdefault(section, {})[field] = value
        else:
            tree[section] = value
    return recipe_problems(parse_recipe(tree))


def test_recipes_dp_cannot_serve_are_refused_before_any_work(tmp_path: Path, bbc_csv: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    assert _problems(tmp_path, bbc_csv) == []
    [accum] = _problems(tmp_path, bbc_csv, train__grad_accum=4)
    assert accum.startswith("train.grad_accum: 4 is not supported with privacy.dp")
    assert "raise train.batch_size" in accum
    [tokens] = _problems(tmp_path, bbc_csv, train__batch_tokens=2048)
    assert tokens.startswith("train.batch_tokens: 2048 cannot be used with privacy.dp")
    [retrieval] = _problems(tmp_path, bbc_csv, task={"name": "retrieval"}, method={"name": "lora"})
    assert retrieval.startswith("privacy.dp: task 'retrieval' cannot be trained with DP-SGD: its in-batch "
                                "contrastive loss")
    [ner] = _problems(tmp_path, bbc_csv, task={"name": "ner"})
    assert "averaged over all tokens of the batch" in ner
    [image] = _problems(tmp_path, bbc_csv, task={"name": "image_classification"})
    assert "method 'full' trains the BatchNorm layers" in image and "method.name: frozen" in image
    assert _problems(tmp_path, bbc_csv, task={"name": "image_classification"}, method={"name": "frozen"}) == []
    monkeypatch.setenv("WORLD_SIZE", "2")
    [ddp] = _problems(tmp_path, bbc_csv)
    assert ddp.startswith("privacy.dp: 2 processes (--nproc / WORLD_SIZE) are not supported")


@pytest.mark.parametrize(("epsilon", "expected"), [(0, "greater than 0"), (-1, "greater than 0"),
                                                   (float("inf"), "finite number")])
def test_epsilon_must_be_a_positive_finite_budget(tmp_path: Path, bbc_csv: Path, epsilon: float,
                                                  expected: str) -> None:
    tree = tiny_recipe(bbc_csv, tmp_path, tmp_path)
    tree["privacy"] = {"dp": {"epsilon": epsilon}}
    with pytest.raises(ConfigError, match=r"privacy\.dp\.epsilon") as err:
        parse_recipe(tree)
    assert expected in str(err.value)
