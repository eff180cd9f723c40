"""Integrated-gradient explanations: completeness on a tiny BERT, tokens merged into words (English
WordPiece, SentencePiece-style pieces, Chinese per character), and `taskfit explain` on a trained run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from taskfit.errors import DataError, IncompatibleError
from taskfit.tasks import TASKS
from taskfit.trust.explain import explain_texts, explanation_section, merge_to_words, sample_explanations

CPU = torch.device("cpu")
LABELS = ["business", "sports", "tech"]


@pytest.fixture(scope="module")
def tiny(tiny_model_dir: Path) -> tuple:
    task = TASKS.get("text_classification")()
    tok = task.load_processor(tiny_model_dir)
    torch.manual_seed(0)
    model, _ = task.build_model(tiny_model_dir, LABELS, attention="sdpa")
    with torch.no_grad():  # BERT's 0.02 init makes every output near-uniform: spread the weights out
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.3)
    return task, model.eval(), tok


def test_attributions_add_up_to_the_change_from_the_baseline(tiny):
    task, model, tok = tiny
    texts = ["Shares in the bank fell sharply after profits slumped.", "The striker scored twice in the final."]
    out = explain_texts(task, model, tok, LABELS, texts, CPU, target="sports", steps=32)
    with torch.no_grad():
        probs = torch.softmax(model(**tok(texts[0], return_tensors="pt")).logits, -1)[0]
    for e in out:
        change = e["target_score"] - e["baseline_score"]
        assert e["target"] == "sports" and abs(change) > 1e-4
        # completeness: sum of attributions = f(x) - f(baseline) - delta, and delta is small
        assert e["attribution_sum"] - change == pytest.approx(e["delta"], abs=1e-6)
        assert abs(e["delta"]) < 0.02 * abs(change)
        assert sum(w["score"] for w in e["words"]) == pytest.approx(e["attribution_sum"], abs=1e-6)
        assert e["tokens"][0]["token"] == "[CLS]" and e["tokens"][-1]["token"] == "[SEP]"
        # attention of the [CLS] row is a distribution over the tokens
        assert sum(t["attention"] for t in e["tokens"]) == pytest.approx(1.0, abs=1e-4)
    assert out[0]["target_score"] == pytest.approx(float(probs[1]), abs=1e-5)
    assert out[0]["label"] == LABELS[int(probs.argmax())]
    assert model.config._attn_implementation == "sdpa"  # switched to eager for the attention pass, then back


def test_english_wordpieces_merge_into_words(tiny):
    _, _, tok = tiny
    text = "Unbelievably good phone, isn't it?"
    enc = tok(text, return_offsets_mapping=True)
    n = len(enc["input_ids"])
    scores = np.arange(n, dtype=float)  # token i scores i: word sums are checkable by hand
    words = merge_to_words(text, enc["offset_mapping"], scores)
    assert [w["word"] for w in words] == ["Unbelievably", "good", "phone", ",", "isn't", "it", "?"]
    toks = tok.convert_ids_to_tokens(enc["input_ids"])
    assert toks[1:6] == ["un", "##bel", "##ie", "##va", "##bly"]
    assert words[0]["score"] == 1 + 2 + 3 + 4 + 5  # the five pieces of "Unbelievably"
    assert words[4]["score"] == 9 + 10 + 11  # isn ' t
    assert sum(w["score"] for w in words) == scores.sum() - scores[0] - scores[-1]  # [CLS], [SEP] skipped


def test_chinese_is_scored_per_character():
    text = "这个手机很好用，我们喜欢 iPhone15"
    # SentencePiece-style (e5 / XLM-R) pieces: "▁" at (0,1), "这个" at (0,2), "手机" (2,4) ... as its tokenizer gives
    offsets = [(0, 0), (0, 1), (0, 2), (2, 4), (4, 6), (6, 7), (7, 8), (8, 10), (10, 12), (12, 19), (19, 21), (0, 0)]
    scores = np.array([9.0, 0.3, 1.0, 2.0, 0.5, 0.25, -1.0, 0.0, 4.0, 1.5, 0.5, 9.0])
    words = merge_to_words(text, offsets, scores)
    got = {w["word"]: w["score"] for w in words}
    assert list(got) == [*"这个手机很好用，我们喜欢", "iPhone15"]
    assert got["这"] == pytest.approx(0.3 + 0.5) and got["个"] == pytest.approx(0.5)
    assert got["手"] == got["机"] == pytest.approx(1.0)
    assert got["喜"] == got["欢"] == pytest.approx(2.0) and got["iPhone15"] == pytest.approx(2.0)


def test_chinese_with_the_wordpiece_tokenizer(tiny):
    task, model, tok = tiny
    (e,) = explain_texts(task, model, tok, LABELS, ["质量很好，物流也快！"], CPU, steps=8)
    assert [w["word"] for w in e["words"]] == list("质量很好，物流也快！")
    assert all(w["score"] is not None for w in e["words"])


def test_truncated_words_are_marked_and_bad_inputs_name_the_fix(tiny):
    task, model, tok = tiny
    short = TASKS.get("text_classification")(max_length=8)
    (e,) = explain_texts(short, model, tok, LABELS, ["one two three four five six seven eight nine ten"], CPU,
                         steps=4)
    assert e["truncated"] and e["words"][-1]["score"] is None and e["words"][0]["score"] is not None
    with pytest.raises(DataError, match=r"target label 'sport' is not one of the model's labels: business, "
                                        r"sports, tech"):
        explain_texts(task, model, tok, LABELS, ["x"], CPU, target="sport")
    with pytest.raises(IncompatibleError, match="task 'ner' cannot be explained per token"):
        explain_texts(TASKS.get("ner")(), model, tok, LABELS, ["x"], CPU)
    html = explanation_section([{**e, "text": "<script>x</script>", "words": []}])[1]
    assert "<script>" not in html and "&lt;script&gt;" in html


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, bbc_csv, minilm_dir) -> Path:
    """MiniLM trained for 2 steps on real BBC rows (enough to have a saved run to explain)."""
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    out = tmp_path_factory.mktemp("explain-runs")
    recipe = {"data": {"train": str(bbc_csv), "max_length": 64, "limit": 120},
              "model": {"name": str(minilm_dir)}, "method": {"name": "full"},
              "train": {"max_steps": 2, "batch_size": 16, "lr": 1e-4, "attention": "sdpa"},
              "output": {"dir": str(out), "name": "run"}}
    return train_recipe(parse_recipe(recipe)).run_dir


def _cli(*args: str) -> Any:
    from typer.testing import CliRunner

    from taskfit.cli import app

    return CliRunner().invoke(app, ["explain", *args], env={"COLUMNS": "120"})


@pytest.mark.slow
def test_cli_explain_prints_words_and_writes_html(run_dir, tmp_path):
    page = tmp_path / "explain.html"
    res = _cli(str(run_dir), "Shares in the bank fell sharply after profits slumped.", "中文 text", "--html",
               str(page), "--steps", "8")
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert out.count("predicted ") == 2 and "IG delta" in out and out.count("top words") == 2
    assert "Shares in the bank fell sharply" in out and "profits" in out and "HTML written to" in out
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.count('title="score ') == 13 and "中" in html


@pytest.mark.slow
def test_cli_explain_json_target_and_bad_target(run_dir):
    labels = json.loads((run_dir / "model" / "taskfit.json").read_text())["labels"]
    res = _cli(str(run_dir), "The film won three awards.", "--json", "--target", labels[0], "--steps", "4")
    assert res.exit_code == 0, res.output
    (e,) = json.loads(res.stdout)
    assert e["target"] == labels[0] and e["label"] in labels and len(e["words"]) == 6
    bad = _cli(str(run_dir), "text", "--target", "weather")
    assert bad.exit_code == 2
    assert "target label 'weather' is not one of the model's labels: " + ", ".join(labels) in bad.output


def test_sample_of_correct_and_wrong_predictions(tiny, bbc_csv):
    task, model, tok = tiny
    frame = pd.read_csv(bbc_csv)
    frame = frame[frame["label"].isin(LABELS)].head(30).reset_index(drop=True)
    items = sample_explanations(task, model, tok, LABELS, frame, CPU, n_correct=2, n_wrong=2, steps=4)
    enc = task.encode(frame, tok, LABELS)
    probs = task.probabilities(task.run_outputs(model, enc, CPU, None))
    pred, conf = probs.argmax(1), probs.max(1)
    right = pred == enc["targets"]
    assert sum(e["correct"] for e in items) == min(2, int(right.sum()))
    assert sum(not e["correct"] for e in items) == min(2, int((~right).sum()))
    # the most confident mistakes come first: they are what a reviewer should look at
    wrong = [e for e in items if not e["correct"]]
    assert wrong[0]["probability"] == pytest.approx(float(conf[~right].max()), abs=1e-5)
    assert all(e["target"] == e["label"] and e["true_label"] in LABELS for e in items)
    title, html = explanation_section(items)
    assert title.startswith("Explanations") and "Wrong predictions" in html
