"""``data.pii_mask`` at the data stage: every text column of every split is masked in place (real Chinese
reviews, retrieval pairs with a rebuilt answer corpus, NER token lists of unchanged length, chat messages),
counts only are returned, image tasks are refused before any data is read, and the report section holds
counts and no values."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_recipe
from taskfit.config import parse_recipe
from taskfit.pipeline import make_task
from taskfit.trust import recipe_problems as trust_problems
from taskfit.trust.pii import TYPES, mask_splits, pii_section

# Values injected into real rows; a valid resident ID (check character X) and a Luhn-valid UnionPay card.
PHONE, EMAIL, CN_ID, CARD = "13912345678", "wang.li@example.com", "11010519491231002X", "6222021234567890128"
INJECTED = (PHONE, EMAIL, CN_ID, CARD)


def _load(tree: dict, tmp: Path):  # type: ignore[no-untyped-def]
    recipe = parse_recipe(tree)
    task = make_task(recipe)
    return task, task.load_splits(recipe.data)


def test_mask_splits_on_real_chinese_reviews(tmp_path: Path, zh_csv: Path, tiny_model_dir: Path) -> None:
    df = pd.read_csv(zh_csv).head(60)
    reviews = df["text"].tolist()
    tags = dict(zip(INJECTED, ("<PHONE>", "<EMAIL>", "<CN_ID>", "<BANK_CARD>"), strict=True))
    suffixes = {}  # row number (1-based) -> (suffix with the value, suffix with the placeholder)
    for i, (value, fmt) in enumerate(zip(INJECTED * 3, ["，电话{}", "，邮箱{}谢谢", "，身份证{}", "，卡号{}"] * 3,
                                         strict=True)):
        df.loc[i * 4, "text"] = reviews[i * 4] + fmt.format(value)
        suffixes[i * 4 + 1] = (fmt.format(value), fmt.format(tags[value]))
    path = tmp_path / "zh.csv"
    df.to_csv(path, index=False)
    task, splits = _load(tiny_recipe(path, tiny_model_dir, tmp_path / "runs"), tmp_path)
    before = {s: f["text"].tolist() for s, f in splits.frames.items()}
    counts = mask_splits(task, splits)

    assert counts["columns"] == ["text"] and counts["rows"] == sum(len(f) for f in splits.frames.values())
    assert {t: counts["by_type"].get(t, 0) for t in ("PHONE", "EMAIL", "CN_ID", "BANK_CARD")} == \
        {"PHONE": 3, "EMAIL": 3, "CN_ID": 3, "BANK_CARD": 3}
    assert sum(sum(c.values()) for c in counts["by_split"].values()) == sum(counts["by_type"].values())
    changed = 0
    for split, frame in splits.frames.items():
        for old, new, row in zip(before[split], frame["text"], frame["_row"], strict=True):
            assert not any(v in new for v in INJECTED)
            changed += old != new
            if row in suffixes and counts["by_type"].get("PERSON", 0) == 0:
                raw, masked = suffixes[row]  # the review is kept character for character
                assert new == old.removesuffix(raw) + masked
    assert counts["rows_changed"] == changed >= 12
    assert set(counts["by_type"]) <= set(TYPES) and counts["seconds"] >= 0
    assert not any(v in json.dumps(counts) for v in INJECTED)  # JSON-able, and holds no value


def test_retrieval_corpus_is_rebuilt_from_masked_answers(tmp_path: Path, tiny_model_dir: Path) -> None:
    rows = [(f"how do I reset item {i}", f"call {PHONE} or mail {EMAIL} about item {i % 10}") for i in range(40)]
    path = tmp_path / "faq.csv"
    pd.DataFrame(rows, columns=["query", "answer"]).to_csv(path, index=False)
    tree = tiny_recipe(path, tiny_model_dir, tmp_path / "runs")
    tree["task"] = {"name": "retrieval"}
    task, splits = _load(tree, tmp_path)
    assert any(PHONE in a for a in task.corpus)  # type: ignore[attr-defined]
    counts = mask_splits(task, splits)
    assert counts["by_type"] == {"PHONE": 40, "EMAIL": 40} and counts["columns"] == ["query", "answer"]
    corpus = task.corpus  # type: ignore[attr-defined]
    assert len(corpus) == 10 and all(a.startswith("call <PHONE> or mail <EMAIL>") for a in corpus)
    enc = task.encode(splits.frames["train"], task.load_processor(tiny_model_dir), [])
    assert len(enc) == len(splits.frames["train"])  # every masked answer is found in the rebuilt corpus


def test_ner_tokens_keep_their_count_and_generation_messages(tmp_path: Path, tiny_model_dir: Path) -> None:
    sents = [{"tokens": ["Call", "Sarah", "Johnson", "on", PHONE, "now"],
              "tags": ["O", "B-PER", "I-PER", "O", "O", "O"]},
             {"tokens": list("我是张伟你好"), "tags": ["O", "O", "B-PER", "I-PER", "O", "O"]}] * 10
    path = tmp_path / "ner.jsonl"
    path.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in sents), encoding="utf-8")
    tree = tiny_recipe(path, tiny_model_dir, tmp_path / "runs")
    tree["task"] = {"name": "ner"}
    task, splits = _load(tree, tmp_path)
    counts = mask_splits(task, splits)
    assert counts["by_type"] == {"PERSON": 20, "PHONE": 10} and counts["rows_changed"] == 20
    for frame in splits.frames.values():
        for toks, tags in zip(frame["tokens"], frame["tags"], strict=True):
            assert len(toks) == len(tags) == 6
            assert toks in (["Call", "<PERSON>", "<PERSON>", "on", "<PHONE>", "now"],
                            ["我", "是", "<PERSON>", "<PERSON>", "你", "好"])

    chat = [{"prompt": f"My email is {EMAIL}, reset my password {i}", "response": f"Done, {i}."} for i in range(20)]
    path = tmp_path / "chat.jsonl"
    path.write_text("".join(json.dumps(c) + "\n" for c in chat), encoding="utf-8")
    tree = tiny_recipe(path, tiny_model_dir, tmp_path / "runs")
    tree["task"] = {"name": "generation"}
    task, splits = _load(tree, tmp_path)
    counts = mask_splits(task, splits)
    assert counts["by_type"] == {"EMAIL": 20}
    contents = [m["content"] for f in splits.frames.values() for conv in f["_messages"] for m in conv]
    assert sum("My email is <EMAIL>, reset my password" in c for c in contents) == 20
    assert not any(EMAIL in c for c in contents)


def test_image_task_is_refused_before_reading_data(tmp_path: Path) -> None:
    tree = tiny_recipe(tmp_path / "no-such-folder", tmp_path, tmp_path / "runs")
    tree["task"] = {"name": "image_classification"}
    tree["data"]["pii_mask"] = True
    problems = trust_problems(parse_recipe(tree))
    assert any(p.startswith("data.pii_mask: task 'image_classification' reads images") for p in problems)
    tree["task"] = {"name": "text_classification"}
    assert trust_problems(parse_recipe(tree)) == []


def test_missing_package_is_a_recipe_problem(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskfit.trust import pii

    monkeypatch.setattr(pii, "REQUIRED", (*pii.REQUIRED, "no_such_pii_package"))
    tree = tiny_recipe(tmp_path / "x.csv", tmp_path, tmp_path / "runs")
    tree["data"]["pii_mask"] = True
    assert trust_problems(parse_recipe(tree)) == [
        "data.pii_mask: PII masking needs no_such_pii_package, which is not installed. Install the trust extra: "
        "pip install 'taskfit[trust]'."]


def test_report_section_shows_counts_only() -> None:
    counts = {"by_type": {"PHONE": 3, "PERSON": 2}, "by_split": {"train": {"PHONE": 2, "PERSON": 2},
                                                                 "valid": {"PHONE": 1}},
              "rows_changed": 4, "rows": 50, "columns": ["text<b>"], "seconds": 0.5, "rows_per_s": 100.0}
    title, body = pii_section(counts)
    assert title == "Privacy: PII masking"
    assert "<td>PHONE</td><td>2</td><td>1</td><td><b>3</b></td>" in body
    assert "text&lt;b&gt;" in body and "4 of 50 rows changed" in body and 'src="data:image/png;base64,' in body
    _, empty = pii_section({"by_type": {}, "by_split": {"train": {}}, "rows": 5, "columns": ["text"]})
    assert "No personal data was found" in empty


@pytest.mark.parametrize("kind", ["text_classification", "regression"])
def test_text_columns_of_text_tasks(kind: str, tmp_path: Path) -> None:
    tree = tiny_recipe(tmp_path / "x.csv", tmp_path, tmp_path / "runs")
    tree["task"] = {"name": kind}
    tree["data"]["text_pair"] = "second"
    assert make_task(parse_recipe(tree)).text_columns() == {"text": "text", "second": "text"}
