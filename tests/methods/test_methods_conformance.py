"""One conformance suite for every registered tuning method.

Parametrized over ``METHODS.names()``, so a newly registered method is checked automatically: its
config round-trips through a recipe, ``apply`` leaves exactly the parameters it trains with
``requires_grad`` (and training touches nothing else), ``finalize`` gives a plain transformers model
that reloads with identical outputs, and bad options are reported with their ``method.<key>`` path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from taskfit.config import parse_recipe
from taskfit.errors import ConfigError
from taskfit.methods import METHODS, count_trainable
from taskfit.tasks import TASKS

LABELS = ["a", "b", "c"]
TEXTS = ["The match ended in a draw.", "Shares fell sharply on Monday.", "这个手机很好用",
         "A new album from the band.", "Parliament passed the bill.", "质量太差了，不推荐"]

# Options of each built-in method that must be rejected; a new method only gets the generic checks.
BAD_OPTIONS: dict[str, list[Any]] = {
    "lora": [
        ("r", 0), ("r", 2.5), ("alpha", 0), ("dropout", 1.0),
        ("target_modules", []),
        pytest.param("target_modules", "mlp"),
    ],
    "frozen": [("train_layer_norm", "sometimes")],
    "full": [("freeze_embeddings", "partly")],
}

# Non-default settings, to check they survive the recipe round-trip too.
NON_DEFAULT: dict[str, dict[str, Any]] = {
    "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["query", "value"], "save_adapter": False},
    "frozen": {"train_layer_norm": True},
    "full": {"freeze_embeddings": True},
}


def _build(model_dir: Path) -> tuple[torch.nn.Module, list[str]]:
    torch.manual_seed(0)  # the new head's init
    return TASKS.get("text_classification")().build_model(model_dir, LABELS, attention="eager")


def _batch(model_dir: Path) -> dict[str, torch.Tensor]:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    task = TASKS.get("text_classification")(max_length=32)  # type: ignore[call-arg]
    task.pad_id = tok.pad_token_id
    frame = pd.DataFrame({"text": TEXTS, "label": [LABELS[i % 3] for i in range(len(TEXTS))]})
    enc = task.encode(frame, tok, LABELS)
    return task.collate(enc, np.arange(len(enc)))


def _applied(name: str, model_dir: Path, **options: Any) -> tuple[torch.nn.Module, Any, list[str]]:
    method = METHODS.get(name)
    cfg = method.config_cls(name=name, **options)
    model, heads = _build(model_dir)
    return method.apply(model, cfg, heads), cfg, heads


def _bare(name: str) -> str:
    """Parameter name without PEFT's wrapper prefix."""
    return name.removeprefix("base_model.model.")


def _is_head(name: str, heads: list[str]) -> bool:
    return any(_bare(name).startswith(h + ".") for h in heads)


def _train_steps(model: torch.nn.Module, batch: dict[str, torch.Tensor], steps: int = 2) -> None:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    for _ in range(steps):
        loss = F.cross_entropy(model(**inputs).logits, batch["labels"])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)


@torch.no_grad()
def _logits(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    return model(**{k: v for k, v in batch.items() if k != "labels"}).logits


@pytest.mark.parametrize("name", METHODS.names())
def test_method_block_round_trips_through_recipe_yaml(name: str) -> None:
    cls = METHODS.get(name).config_cls
    blocks = [cls(name=name).model_dump(mode="json"), {"name": name, **NON_DEFAULT.get(name, {})}]
    for block in blocks:
        recipe = parse_recipe({"data": {"train": "t.csv"}, "method": block})
        assert isinstance(recipe.method, cls)
        again = parse_recipe(yaml.safe_load(recipe.to_yaml()))
        assert again.method == recipe.method
        assert again.method.model_dump() == cls(**block).model_dump()


@pytest.mark.parametrize("name", METHODS.names())
def test_training_changes_exactly_the_trainable_parameters(name: str, tiny_model_dir: Path) -> None:
    model, _, heads = _applied(name, tiny_model_dir)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable, "a method must leave something to train"

    _train_steps(model, _batch(tiny_model_dir))

    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    frozen = set(before) - trainable
    assert changed <= trainable, f"frozen parameters changed: {sorted(changed - trainable)[:5]}"
    for n, p in model.named_parameters():
        if n in frozen:
            assert torch.equal(p.detach(), before[n]), n  # bit-identical
    # The head is new: every method trains it.
    assert any(_is_head(n, heads) for n in changed), sorted(changed)

    if name == "frozen":
        assert all(_is_head(n, heads) for n in changed), sorted(changed)
        assert all(_is_head(n, heads) for n in trainable)
    elif name == "lora":
        assert all("lora_" in n or _is_head(n, heads) for n in trainable), sorted(trainable)
        assert any("lora_" in n for n in changed)
        # PEFT keeps the original head frozen and trains its copy.
        assert all("original_module" not in n for n in changed)
    elif name == "full":
        assert trainable == set(before)
        assert any(_bare(n).startswith("bert.encoder.") for n in changed)


def test_frozen_with_layer_norm_trains_only_head_and_norms(tiny_model_dir: Path) -> None:
    model, _, heads = _applied("frozen", tiny_model_dir, train_layer_norm=True)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert any("LayerNorm" in n for n in trainable)
    assert all(_is_head(n, heads) or "LayerNorm" in n for n in trainable)


def test_full_with_frozen_embeddings_keeps_only_the_word_embeddings_fixed(tiny_model_dir: Path) -> None:
    model, _, _ = _applied("full", tiny_model_dir, freeze_embeddings=True)
    words = model.get_input_embeddings().weight
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    _train_steps(model, _batch(tiny_model_dir))
    fixed = {n for n, p in model.named_parameters() if torch.equal(p.detach(), before[n])}
    assert not words.requires_grad
    assert fixed == {"bert.embeddings.word_embeddings.weight"}, sorted(fixed)
    trainable, total = count_trainable(model)
    assert trainable == total - words.numel()


@pytest.mark.parametrize("name", METHODS.names())
def test_finalized_model_saves_and_reloads_identically(name: str, tiny_model_dir: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    model, cfg, _ = _applied(name, tiny_model_dir)
    batch = _batch(tiny_model_dir)
    _train_steps(model, batch)
    trained = _logits(model, batch)

    final = METHODS.get(name).finalize(model, cfg)
    assert isinstance(final, torch.nn.Module)
    assert hasattr(final, "save_pretrained")
    assert not any("lora_" in n or "modules_to_save" in n for n, _ in final.named_parameters())
    finalized = _logits(final, batch)
    # Finalizing (e.g. merging adapters) keeps the trained function, trained head included.
    torch.testing.assert_close(finalized, trained, atol=1e-5, rtol=0)

    final.save_pretrained(tmp_path)
    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path, attn_implementation="eager")
    assert reloaded.config.id2label == dict(enumerate(LABELS))
    torch.testing.assert_close(_logits(reloaded, batch), finalized, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", METHODS.names())
def test_unknown_option_is_reported_with_its_path(name: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe({"data": {"train": "t.csv"}, "method": {"name": name, "no_such_option": 1}})
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith("method.no_such_option:")
    assert "unknown key" in info.value.problems[0]


def _bad_cases() -> list[Any]:
    cases = []
    for name, bad in BAD_OPTIONS.items():
        for case in bad:
            if hasattr(case, "marks"):  # a pytest.param (itself a tuple)
                cases.append(pytest.param(name, *case.values, marks=case.marks))
            else:
                cases.append(pytest.param(name, *case))
    return cases


@pytest.mark.parametrize(("name", "key", "value"), _bad_cases())
def test_bad_option_value_is_reported_with_its_path(name: str, key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as info:
        parse_recipe({"data": {"train": "t.csv"}, "method": {"name": name, key: value}})
    assert len(info.value.problems) == 1, info.value.problems
    assert info.value.problems[0].startswith(f"method.{key}:"), info.value.problems


def test_trainable_parameter_counts_are_ordered(tiny_model_dir: Path) -> None:
    counts = {}
    for name in ("frozen", "lora", "full"):
        model, _, _ = _applied(name, tiny_model_dir)
        counts[name] = count_trainable(model)
    assert counts["frozen"][0] < counts["lora"][0] < counts["full"][0]
    # full trains every weight; frozen trains the head only (num_labels × hidden + num_labels).
    assert counts["full"][0] == counts["full"][1]
    hidden = 32  # the tiny model's width (tests/conftest.py)
    assert counts["frozen"][0] == len(LABELS) * hidden + len(LABELS)
