"""NER end to end on real WNUT-2016 tweets: train through the pipeline, score, save, load, predict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import tiny_recipe
from taskfit.config import parse_recipe
from taskfit.data.packaged.ner import wnut16_sentences, write_conll
from taskfit.inference import Predictor
from taskfit.pipeline import make_task, train_recipe


@pytest.fixture(scope="module")
def wnut_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """240 real tweets to train on (valid split off), the next 120 as a test file."""
    d = tmp_path_factory.mktemp("wnut")
    sents = wnut16_sentences()
    return {"train": write_conll(sents[:240], d / "train.conll", None, 0),
            "test": write_conll(sents[240:360], d / "test.conll", None, 0), "dir": d}


def wnut_recipe(files: dict[str, Path], model: str, out: Path, **train: object) -> dict:
    return {"task": "ner", "data": {"train": str(files["train"]), "test": str(files["test"]), "valid_fraction": 0.15,
                                    "max_length": 64},
            "model": {"name": model}, "method": {"name": "full"},
            "train": {"max_steps": 20, "lr": 3e-4, "batch_size": 16, "warmup": 0.1, "eval_every": 1000, "seed": 0,
                      **train},
            "output": {"dir": str(out), "name": "wnut"}}


@pytest.mark.slow
def test_minilm_learns_wnut_and_predicts_after_reload(wnut_files, minilm_dir, tmp_path: Path) -> None:
    recipe = parse_recipe(wnut_recipe(wnut_files, "all-MiniLM-L6-v2", tmp_path))
    # the untrained baseline: the same backbone with its fresh head, scored on the same test sentences
    task = make_task(recipe)
    splits = task.load_splits(recipe.data)
    tok = task.load_processor(minilm_dir)
    torch.manual_seed(0)
    model, heads = task.build_model(minilm_dir, splits.labels)
    assert heads == ["classifier"]
    before = task.evaluate(model, task.encode(splits.frames["test"], tok, splits.labels), splits.labels,
                           torch.device("cpu"), None)
    summary = train_recipe(recipe)
    after = summary.test_metrics
    assert after is not None and after["n"] == 120 and after["n_entities"] == before["n_entities"] > 20
    assert after["loss"] < 0.25 * before["loss"], (before["loss"], after["loss"])
    assert after["token_accuracy"] > before["token_accuracy"] + 0.2
    assert after["token_accuracy"] >= after["f1"] >= 0.0  # f1 is reported (0 is fair after 20 steps)

    html = (summary.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Entities per type (test)" in html and "data:image/png;base64," in html
    meta = json.loads((summary.run_dir / "model" / "taskfit.json").read_text())
    assert meta["task"] == "ner" and meta["scheme"] == "BIO" and meta["labels"][0] == "O" and len(meta["labels"]) == 21

    pred = Predictor.load(summary.run_dir)
    out = pred.predict(["Heading to the Empire State Building with @paulwalk tonight !", ""])
    assert out[1] == {"tokens": [], "tags": [], "entities": []}
    assert out[0]["tokens"][3:6] == ["Empire", "State", "Building"] and len(out[0]["tags"]) == len(out[0]["tokens"])
    assert all(e["type"] in {lab[2:] for lab in meta["labels"][1:]} for e in out[0]["entities"])
    json.dumps(out)
    again = pred.evaluate_file(wnut_files["test"])  # `taskfit eval` path: same scores in fp32
    assert again["n"] == 120 and abs(again["token_accuracy"] - after["token_accuracy"]) < 0.01


@pytest.mark.parametrize("method", ["full", "lora", "frozen"])
def test_every_method_trains_a_step_on_a_tiny_model(method: str, wnut_files, tiny_model_dir, tmp_path: Path) -> None:
    tree = tiny_recipe(wnut_files["test"], tiny_model_dir, tmp_path, max_steps=2, batch_size=8)
    tree["task"] = {"name": "ner", "label_all_subtokens": method == "lora"}
    tree["method"] = {"name": method}
    summary = train_recipe(parse_recipe(tree))
    assert summary.train.steps == 2 and "f1" in summary.valid_metrics
    res = Predictor.load(summary.run_dir).predict(["Justin Bieber in Toronto"])
    assert res[0]["tokens"] == ["Justin", "Bieber", "in", "Toronto"]
