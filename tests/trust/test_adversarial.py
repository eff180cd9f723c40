"""Adversarial training hook (FGM / PGD on the input embeddings): exact identities on a tiny BERT built from
config (dropout off, so every pass is deterministic), the frozen-embedding (LoRA) case, and a short real run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from taskfit.config import AdversarialConfig, parse_recipe
from taskfit.tasks.text_classification import TextClassification
from taskfit.trust.adversarial import AdversarialHook, adversarial_section, recipe_problems

EPS = 0.7


def _model(seed: int = 0) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=3, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, attn_implementation="eager")
    return BertForSequenceClassification(cfg)


def _batch(pad: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 64, (4, 9), generator=g)
    mask = torch.ones_like(ids)
    if pad:  # rows 1 and 3 are shorter: right padding with pad id 0, as the task collates
        ids[1, 5:], mask[1, 5:] = 0, 0
        ids[3, 2:], mask[3, 2:] = 0, 0
    return {"input_ids": ids, "attention_mask": mask, "labels": torch.tensor([0, 1, 2, 1])}


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _hook_step(model: torch.nn.Module, batch: dict[str, torch.Tensor], scale: float = 1.0,
               **cfg: Any) -> tuple[AdversarialHook, dict[str, torch.Tensor]]:
    task = TextClassification()
    hook = AdversarialHook(AdversarialConfig(**cfg), task)
    hook.attach(model)
    model.zero_grad(set_to_none=True)

    def compute_loss() -> torch.Tensor:
        return task.loss(model, batch)

    hook.backward(compute_loss, compute_loss(), scale)
    hook.detach()
    return hook, _grads(model)


def _embeds_loss(model: torch.nn.Module, batch: dict[str, torch.Tensor], embeds: torch.Tensor) -> torch.Tensor:
    logits = model(inputs_embeds=embeds, attention_mask=batch["attention_mask"]).logits
    return F.cross_entropy(logits.float(), batch["labels"])


def _clean_plus_adv(model: torch.nn.Module, batch: dict[str, torch.Tensor], delta: torch.Tensor,
                    weight: float, scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Reference gradients written out by hand: clean loss + weight × loss at (embeddings + delta)."""
    model.zero_grad(set_to_none=True)
    emb = model.get_input_embeddings()
    (_embeds_loss(model, batch, emb(batch["input_ids"])) * scale).backward()
    (_embeds_loss(model, batch, emb(batch["input_ids"]) + delta) * weight * scale).backward()
    return _grads(model)


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], **tol: float) -> bool:
    assert a.keys() == b.keys()
    return all(torch.allclose(a[k], b[k], **tol) for k in a)


def test_fgm_gradients_equal_the_hand_written_fgm_step() -> None:
    model, batch = _model(), _batch()
    hook, got = _hook_step(model, batch, scale=0.5, method="fgm", epsilon=EPS, weight=0.8)
    # FGM by hand: g = d loss / d embeddings, r = ε g / ‖g‖ per example over [L, H]
    emb = model.get_input_embeddings()(batch["input_ids"]).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(_embeds_loss(model, batch, emb), emb)
    r = EPS * g / g.flatten(1).norm(dim=1).view(-1, 1, 1)
    assert torch.allclose(hook.last_perturbation[0], r, atol=1e-6)
    expected = _clean_plus_adv(model, batch, r, weight=0.8, scale=0.5)
    assert _close(got, expected, atol=1e-6, rtol=1e-5)
    # ...and that is not what plain clean training (scaled to the same total weight) would do
    model.zero_grad(set_to_none=True)
    (TextClassification().loss(model, batch) * 0.5 * 1.8).backward()
    clean = _grads(model)
    assert max(float((got[k] - clean[k]).abs().max()) for k in got) > 1e-4
    summary = hook.summary()
    assert summary["method"] == "fgm" and summary["batches"] == 1
    assert summary["mean_adversarial_loss"] > summary["mean_clean_loss"]  # the step went uphill
    assert summary["mean_perturbation_norm"] == pytest.approx(EPS, rel=1e-5)


def test_tiny_epsilon_gives_clean_gradients_times_one_plus_weight() -> None:
    model, batch = _model(), _batch()
    _, got = _hook_step(model, batch, method="fgm", epsilon=1e-7, weight=1.0)
    model.zero_grad(set_to_none=True)
    (TextClassification().loss(model, batch) * 2.0).backward()
    assert _close(got, _grads(model), atol=1e-6, rtol=1e-4)


def test_pgd_stays_in_the_epsilon_ball_and_keeps_ascent_gradients_out_of_the_parameters() -> None:
    model, batch = _model(), _batch()
    hook, got = _hook_step(model, batch, method="pgd", epsilon=0.5, steps=4, alpha=0.3, weight=1.0)
    (delta,) = hook.last_perturbation
    norms = delta.flatten(1).norm(dim=1)
    assert bool((norms <= 0.5 + 1e-5).all())
    assert bool((norms > 0.5 - 1e-4).all())  # 4 steps of 0.3 reach the boundary: the projection acted
    # Parameter grads are exactly clean + adversarial at the final perturbation: no trace of the 3 ascent passes.
    assert _close(got, _clean_plus_adv(model, batch, delta, weight=1.0), atol=1e-6, rtol=1e-5)
    assert hook.summary()["steps"] == 4 and hook.summary()["alpha"] == 0.3


@pytest.mark.parametrize("method", ["fgm", "pgd"])
def test_padding_positions_are_not_perturbed(method: str) -> None:
    model, batch = _model(), _batch(pad=True)
    hook, _ = _hook_step(model, batch, method=method, epsilon=EPS, steps=2)
    (delta,) = hook.last_perturbation
    pad = batch["attention_mask"] == 0
    assert float(delta[pad].abs().max()) == 0.0
    assert bool((delta[~pad].abs().sum(-1) > 0).all())
    norms = delta.flatten(1).norm(dim=1)
    # FGM puts the whole budget on the real tokens; PGD stays inside the ball
    if method == "fgm":
        assert torch.allclose(norms, torch.full((4,), EPS), atol=1e-5)
    else:
        assert bool((norms <= EPS + 1e-5).all())


def test_frozen_embeddings_with_lora_and_bf16_autocast() -> None:
    from taskfit.methods import METHODS

    method = METHODS.get("lora")
    model = method.apply(_model(), method.config_cls(name="lora", r=4), ["classifier"])
    batch = _batch(pad=True)
    task = TextClassification()
    hook = AdversarialHook(AdversarialConfig(method="fgm", epsilon=EPS), task)
    hook.attach(model)  # through the PeftModel wrapper

    def compute_loss() -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return task.loss(model, batch)

    hook.backward(compute_loss, compute_loss(), 1.0)
    got = _grads(model)
    assert not any("word_embeddings" in k for k in got)  # frozen: the embedding weights got no gradient
    assert any("lora_" in k for k in got) and all(torch.isfinite(v).all() for v in got.values())
    assert float(hook.last_perturbation[0].flatten(1).norm(dim=1).max()) == pytest.approx(EPS, rel=1e-4)
    # the adversarial pass moved the LoRA gradients away from the clean ones
    hook.detach()
    model.zero_grad(set_to_none=True)
    (compute_loss() * 2).backward()
    clean = _grads(model)
    assert max(float((got[k] - clean[k]).abs().max()) for k in got if "lora_" in k) > 1e-5


def test_image_tasks_are_refused_with_a_clear_line() -> None:
    recipe = parse_recipe({"task": {"name": "image_classification"}, "data": {"train": "images"},
                           "adversarial": {"method": "fgm", "epsilon": 1.0}})
    (line,) = recipe_problems(recipe)
    assert line.startswith("adversarial: task 'image_classification'") and "Remove the adversarial block" in line
    text = parse_recipe({"data": {"train": "x.csv"}, "adversarial": {"method": "pgd", "epsilon": 1.0}})
    assert recipe_problems(text) == []


def test_section_escapes_and_shows_the_losses() -> None:
    title, html = adversarial_section({"method": "pgd", "epsilon": 0.5, "steps": 3, "alpha": 0.25, "weight": 1.0,
                                       "batches": 7, "mean_clean_loss": 0.4, "mean_adversarial_loss": 0.9,
                                       "mean_perturbation_norm": 0.5})
    assert title == "Adversarial training" and "PGD" in html and "0.9" in html and "<script" not in html


def test_two_step_run_on_real_rows_reports_adversarial(tmp_path: Path, minilm_dir: Path, bbc_csv: Path) -> None:
    from conftest import tiny_recipe
    from taskfit.pipeline import train_recipe

    tree = tiny_recipe(bbc_csv, minilm_dir, tmp_path, max_steps=2, batch_size=8, lr=1e-4)
    tree["adversarial"] = {"method": "fgm", "epsilon": 1.0}
    summary = train_recipe(parse_recipe(tree))
    results = json.loads((summary.run_dir / "results.json").read_text())
    adv = results["adversarial"]
    assert adv["method"] == "fgm" and adv["batches"] == 2 and adv["epsilon"] == 1.0
    assert adv["mean_adversarial_loss"] > adv["mean_clean_loss"] > 0
    assert "Adversarial training" in (summary.run_dir / "report.html").read_text(encoding="utf-8")
