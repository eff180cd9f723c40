"""The attack suite: each perturbation on real English and Chinese sentences (seeded, within budget, the right
kind of change), the embedding-space synonyms of a model, the runner's accounting on a tiny BERT, and
`taskfit attack` end to end on a run trained on real BBC rows."""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from taskfit.errors import ConfigError, IncompatibleError
from taskfit.trust.attacks import (
    ATTACKS,
    AttackContext,
    SynonymTable,
    n_edits,
    text_language,
    word_spans,
)
from taskfit.trust.robustness import (
    attack_texts,
    check_attacks,
    excerpt,
    highlight_diff,
    robustness_section,
    run_attacks,
)
from taskfit.trust.zh_confusables import SHAPE_GROUPS, homophone_map, shape_map, shape_pairs, width_swap

EN = ("Shares in the bank fell sharply on Monday after the lender warned that profits would slump this year, "
      "while analysts cut their forecasts for the whole sector.")
ZH = "这家酒店的服务非常好，房间干净，早餐也不错，下次还会再来。价格198元"
WORD = re.compile(r"[A-Za-z']+")


def _perturb(name: str, text: str, seed: int = 0, budget: float = 0.2, lang: str = "en") -> str:
    return ATTACKS.get(name).perturb(text, random.Random(seed), budget, AttackContext(lang))


def _changed_chars(a: str, b: str) -> list[tuple[str, str]]:
    assert len(a) == len(b)
    return [(x, y) for x, y in zip(a, b, strict=True) if x != y]


@pytest.mark.parametrize("name", ["typo", "word_swap", "word_delete", "width"])
def test_english_attacks_are_seeded_and_change_the_text(name: str) -> None:
    a, b = _perturb(name, EN, seed=1), _perturb(name, EN, seed=1)
    assert a == b and a != EN
    assert any(_perturb(name, EN, seed=s) != a for s in range(2, 6))  # another seed, another perturbation


def test_typo_edits_at_most_the_budget_of_words_by_one_letter() -> None:
    words = WORD.findall(EN)
    budget = n_edits(0.2, len(words))
    for seed in range(5):
        new = WORD.findall(_perturb("typo", EN, seed))
        assert len(new) == len(words)
        diffs = [(w, v) for w, v in zip(words, new, strict=True) if w != v]
        assert 1 <= len(diffs) <= budget
        assert all(abs(len(w) - len(v)) <= 1 for w, v in diffs)


def test_word_swap_and_delete_keep_the_other_words() -> None:
    words = WORD.findall(EN)
    swapped = WORD.findall(_perturb("word_swap", EN, 3))
    assert sorted(swapped) == sorted(words) and swapped != words
    assert sum(w != v for w, v in zip(words, swapped, strict=True)) <= 2 * max(1, n_edits(0.2, len(words)) // 2)
    deleted = WORD.findall(_perturb("word_delete", EN, 3))
    assert len(deleted) == len(words) - n_edits(0.2, len(words))
    assert "  " not in _perturb("word_delete", EN, 3)


def test_zh_homophone_shape_width_and_typo() -> None:
    assert text_language([ZH]) == "zh" and text_language([EN]) == "en"
    homo, shapes = homophone_map(), shape_map()
    budget = n_edits(0.2, len(re.findall(r"[\u4e00-\u9fff]", ZH)))
    for seed in range(3):
        changed = _changed_chars(ZH, _perturb("homophone", ZH, seed, lang="zh"))
        assert 1 <= len(changed) <= budget and all(new in homo[old] for old, new in changed)
        changed = _changed_chars(ZH, _perturb("shape", ZH, seed, lang="zh"))
        assert changed and all(new in shapes[old] for old, new in changed)
        changed = _changed_chars(ZH, _perturb("width", ZH, seed, lang="zh"))
        assert changed and all(width_swap(old) == new for old, new in changed)
    assert "是" in homo["事"] and "市" in homo["是"]  # shi
    assert _perturb("typo", ZH, 0, lang="zh") != ZH
    assert _perturb("homophone", EN, 0) == EN  # no Chinese characters: nothing to change


def test_shape_table_and_width_forms() -> None:
    assert len(shape_pairs()) >= 60 and len(set(SHAPE_GROUPS)) == len(SHAPE_GROUPS)
    assert frozenset("己已") in shape_pairs() and frozenset("未末") in shape_pairs()
    for ch in "Az09!~，。":
        other = width_swap(ch)
        assert other is not None and other != ch
    assert width_swap("A") == "Ａ" and width_swap("Ａ") == "A" and width_swap("汉") is None


def test_zh_words_come_from_jieba() -> None:
    spans = word_spans("我们今天去北京大学", "zh")
    words = ["我们今天去北京大学"[a:b] for a, b in spans]
    assert "".join(words) == "我们今天去北京大学" and any(len(w) > 1 for w in words)


def test_synonyms_are_nearest_whole_words_in_the_models_embedding_space(tiny_model_dir: Path) -> None:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModel.from_pretrained(tiny_model_dir)
    emb = model.get_input_embeddings().weight
    ids = tok.convert_tokens_to_ids(["car", "automobile", "vehicle", "the", "##car"])
    with torch.no_grad():  # make car ~ automobile ~ vehicle ~ "the" ~ "##car" the closest rows of the table
        base = torch.randn(emb.shape[1]) * 10
        for k, i in enumerate(ids):
            emb[i] = base + 0.01 * k
    table = SynonymTable(model, tok, k=3)
    near = table.neighbours("Car")
    assert near[:2] == ["automobile", "vehicle"]  # not the stopword "the", not the subword "##car", not itself
    assert table.neighbours("qzxv") == []
    ctx = AttackContext("en", table)
    out = ATTACKS.get("synonym").perturb("The car is red", random.Random(0), 0.5, ctx)
    assert WORD.findall(out)[1] in ("automobile", "vehicle") or out != "The car is red"


def test_bad_attack_choices_name_what_exists() -> None:
    with pytest.raises(ConfigError) as info:
        check_attacks(["typo", "tpyo", "homophone"], "en")
    text = str(info.value)
    assert "unknown attack 'tpyo'; available: homophone, shape, synonym, typo, width, word_delete, word_swap" in text
    assert "attack 'homophone' works on zh text, but the data is en" in text


def test_highlight_escapes_and_marks_the_edit() -> None:
    before, after = highlight_diff("<b>tom</b> said hi", "<b>tom</b> said ho")
    assert "&lt;b&gt;" in before and "<b>" not in after
    assert after.endswith("<mark>o</mark>") and before.endswith("<mark>i</mark>")
    long = "x" * 200 + "hello" + "y" * 200  # examples quote only the edit and 60 characters either side
    before_s, after_s = excerpt(long, long.replace("hello", "hallo"))
    assert before_s == "…" + long[141:262] + "…" and after_s == before_s.replace("hello", "hallo")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, bbc_csv: Path) -> Path:
    """The tiny BERT trained for 1 epoch on 300 real BBC rows: better than chance, far from perfect."""
    from conftest import tiny_recipe
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    tree = tiny_recipe(bbc_csv, tiny_model_dir, tmp_path_factory.mktemp("runs"), epochs=1, lr=3e-3)
    return train_recipe(parse_recipe(tree)).run_dir


@pytest.fixture(scope="module")
def tiny_classifier(tiny_run: Path):
    from taskfit.inference import Predictor

    p = Predictor.load(tiny_run)
    return p.task, p.model, p.processor, p.labels


def test_runner_accounting_on_real_rows(tiny_classifier, bbc_csv: Path) -> None:
    task, model, tok, labels = tiny_classifier
    frame = pd.read_csv(bbc_csv)
    kw = {"names": ["typo", "word_delete", "width"], "rows": 40, "tries": 2, "seed": 0, "budget": 0.2}
    res = run_attacks(task, model, tok, labels, torch.device("cpu"), frame, **kw)
    again = run_attacks(task, model, tok, labels, torch.device("cpu"), frame, **kw)
    same_time = [{**b, "seconds": a["seconds"]} for a, b in zip(res["attacks"], again["attacks"], strict=True)]
    assert {**again, "attacks": same_time} == res  # seeded: the same rows, perturbations and outcomes
    assert res["rows"] == 40 and res["language"] == "en" and [a["name"] for a in res["attacks"]] == kw["names"]
    right = round(res["clean_accuracy"] * 40)
    assert right > 0
    for a in res["attacks"]:
        assert a["attacked_rows"] == right and a["changed_rows"] == right
        assert a["success_rate"] == pytest.approx(a["successes"] / right)
        assert a["accuracy_under_attack"] == pytest.approx((right - a["successes"]) / 40)
        assert right <= a["queries"] <= 2 * right and len(a["examples"]) == min(3, a["successes"])
        for ex in a["examples"]:
            assert ex["perturbed"] != ex["original"] and ex["prediction"] != ex["label"]
    title, html = robustness_section({**res, "compare": {**res, "label": "other <run>"}})
    assert title == "Robustness under attack" and "other &lt;run&gt;" in html and html.count("<tr><td>typo") == 1


def test_runner_on_chinese_rows_uses_the_zh_attacks(tiny_model_dir: Path, zh_csv: Path) -> None:
    from taskfit.tasks.text_classification import TextClassification

    frame = pd.read_csv(zh_csv).head(30)
    labels = sorted(set(frame["label"]))
    task = TextClassification(max_length=64)
    tok = task.load_processor(tiny_model_dir)
    torch.manual_seed(0)
    model, _ = task.build_model(tiny_model_dir, labels, "eager")
    res = run_attacks(task, model.eval(), tok, labels, torch.device("cpu"), frame, tries=1)
    assert res["language"] == "zh" and [a["name"] for a in res["attacks"]] == ["homophone", "shape", "width", "typo"]
    correct = round(res["clean_accuracy"] * 30)
    by = {a["name"]: a for a in res["attacks"]}
    assert by["homophone"]["changed_rows"] == correct and by["typo"]["changed_rows"] == correct


def test_other_tasks_and_bad_inputs_are_refused(tiny_classifier) -> None:
    from taskfit.tasks import TASKS

    task, model, tok, labels = tiny_classifier
    with pytest.raises(IncompatibleError, match=r"measures text_classification models.*task is 'ner'"):
        attack_texts(TASKS.get("ner")(), model, tok, labels, torch.device("cpu"), ["x"], ["sports"])
    with pytest.raises(ConfigError, match=r"budget must be in \(0, 1\].*got 1.5"):
        attack_texts(task, model, tok, labels, torch.device("cpu"), ["x"], ["sports"], budget=1.5)
    with pytest.raises(ConfigError, match=r"labels \['weather'\] are not among the model's labels"):
        attack_texts(task, model, tok, labels, torch.device("cpu"), ["x"], ["weather"])


ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160"}


def test_attack_command_end_to_end(tmp_path: Path, tiny_run: Path) -> None:
    run = tiny_run
    cmd = [sys.executable, "-m", "taskfit", "attack", str(run), "--attacks", "typo,width", "--rows", "20",
           "--tries", "2", "--compare", str(run), "--json", str(tmp_path / "copy.json")]
    res = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300)
    assert res.returncode == 0, res.stderr + res.stdout
    assert "typo" in res.stdout and "success rate" in res.stdout and "no adversarial training" in res.stdout
    result = json.loads((run / "robustness.json").read_text(encoding="utf-8"))
    assert result == json.loads((tmp_path / "copy.json").read_text(encoding="utf-8"))
    assert result["source"].startswith("test split of") and result["rows"] == 20
    assert [a["name"] for a in result["compare"]["attacks"]] == ["typo", "width"]
    assert result["compare"]["clean_accuracy"] == result["clean_accuracy"]  # same model, same rows
    assert "Robustness under attack" in (run / "robustness.html").read_text(encoding="utf-8")
    from typer.testing import CliRunner

    from taskfit.cli import app

    bad = CliRunner().invoke(app, ["attack", str(run), "--attacks", "homophone", "--rows", "5"])
    assert bad.exit_code == 2 and "attack 'homophone' works on zh text, but the data is en" in bad.output
