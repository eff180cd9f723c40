"""Text classification task: tokenisation, batching and scoring with the real MiniLM tokenizer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from taskfit.data.checks import ROW
from taskfit.data.readers import read_table
from taskfit.tasks import TASKS, Encoded
from taskfit.tasks.text_classification import TextClassification

LABELS = ["neg", "pos"]


@pytest.fixture(scope="module")
def tok(tiny_model_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _frame(texts: list[str], labels: list[str], **extra: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "label": labels, **extra})


def test_registered_class_is_text_classification() -> None:
    assert TASKS.get("text_classification") is TextClassification


def test_encode_truncates_to_max_length(tok: Any) -> None:
    long = " ".join(["word"] * 500)
    frame = _frame([long, "short one"], ["pos", "neg"])
    enc = TextClassification(max_length=16).encode(frame, tok, LABELS)
    assert enc.lengths.tolist()[0] == 16
    assert enc.lengths.tolist()[1] < 16
    # Truncation keeps the special tokens at both ends.
    assert enc["input_ids"][0][0] == tok.cls_token_id and enc["input_ids"][0][-1] == tok.sep_token_id
    assert enc["targets"].tolist() == [1, 0]
    assert "token_type_ids" not in enc  # single texts need no segment ids
    assert all(x.dtype == np.int64 for x in enc["input_ids"])


def test_encode_rows_and_unknown_labels(tok: Any) -> None:
    frame = _frame(["a", "b", "c"], ["pos", "neutral", "neg"])
    frame[ROW] = [4, 9, 11]
    enc = TextClassification(max_length=16).encode(frame, tok, LABELS)
    assert enc.rows.tolist() == [4, 9, 11]
    assert enc["targets"].tolist() == [1, -1, 0]  # a label outside the set becomes -1
    # Without a label column (prediction) every target is -1, and rows default to 1..N.
    unlabelled = TextClassification(max_length=16).encode(frame[["text"]], tok, LABELS)
    assert unlabelled["targets"].tolist() == [-1, -1, -1]
    assert unlabelled.rows.tolist() == [1, 2, 3]


def test_chinese_text_with_the_minilm_tokenizer(tok: Any, zh_csv: Path) -> None:
    """MiniLM's vocabulary is English (uncased BERT): Chinese is split per character and most characters
    are [UNK]. This documents that limitation honestly instead of pretending Chinese is understood."""
    text = "这个手机很好用，不太贵"
    enc = TextClassification(max_length=64).encode(_frame([text], ["pos"]), tok, LABELS)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"][0].tolist())
    assert tokens[0] == "[CLS]" and tokens[-1] == "[SEP]"
    # One token per character, each either the character itself (if in the vocabulary) or [UNK].
    assert len(tokens) - 2 == len(text)
    vocab = tok.get_vocab()
    for ch, t in zip(text, tokens[1:-1], strict=True):
        assert t == (ch if ch in vocab else tok.unk_token), (ch, t)
    # Some characters survive (so rows are not all [UNK]); on real reviews the [UNK] share is large.
    assert any(t != tok.unk_token for t in tokens[1:-1])
    df = read_table(zh_csv)
    zh = TextClassification(max_length=128).encode(df, tok, ["neg", "pos"])
    content = np.concatenate([ids[1:-1] for ids in zh["input_ids"]])
    unk_share = float(np.mean(content == tok.unk_token_id))
    assert 0.3 < unk_share < 1.0, unk_share
    assert not any(np.all(ids[1:-1] == tok.unk_token_id) for ids in zh["input_ids"] if len(ids) > 2)


def test_collate_pads_and_masks(tok: Any) -> None:
    frame = _frame(["one", "a much longer sentence with many words in it", "two words"], ["pos", "neg", "pos"])
    task = TextClassification(max_length=64)
    task.pad_id = tok.pad_token_id
    enc = task.encode(frame, tok, LABELS)
    idx = np.array([2, 0, 1])
    batch = task.collate(enc, idx)
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    lengths = enc.lengths[idx]
    width = int(lengths.max())
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (3, width)
    assert batch["input_ids"].dtype == torch.int64
    for r, i in enumerate(idx):
        n = int(lengths[r])
        assert batch["input_ids"][r, :n].tolist() == enc["input_ids"][i].tolist()
        assert batch["attention_mask"][r].tolist() == [1] * n + [0] * (width - n)
        assert (batch["input_ids"][r, n:] == tok.pad_token_id).all()
    assert batch["labels"].tolist() == [1, 1, 0]


def test_collate_uses_given_pad_id(tok: Any) -> None:
    task = TextClassification(max_length=16)
    task.pad_id = 777
    enc = task.encode(_frame(["x", "y z w"], ["pos", "neg"]), tok, LABELS)
    batch = task.collate(enc, np.array([0, 1]))
    short = int(enc.lengths[0])
    assert (batch["input_ids"][0, short:] == 777).all()


def test_text_pair_gets_token_type_ids(tok: Any) -> None:
    task = TextClassification(text="premise", text_pair="hypothesis", max_length=64)
    frame = pd.DataFrame({"premise": ["a man is eating", "天气很好"], "hypothesis": ["someone eats food", "it rains"],
                          "label": ["pos", "neg"]})
    enc = task.encode(frame, tok, LABELS)
    assert "token_type_ids" in enc
    sep = tok.sep_token_id
    for ids, types in zip(enc["input_ids"], enc["token_type_ids"], strict=True):
        assert len(ids) == len(types)
        first_sep = int(np.flatnonzero(ids == sep)[0])
        # Segment 0 up to and including the first [SEP], segment 1 after it.
        assert types[: first_sep + 1].tolist() == [0] * (first_sep + 1)
        assert types[first_sep + 1 :].tolist() == [1] * (len(ids) - first_sep - 1)
        assert int((ids == sep).sum()) == 2
    batch = task.collate(enc, np.array([0, 1]))
    assert batch["token_type_ids"].shape == batch["input_ids"].shape
    # Padding positions get segment 0.
    assert (batch["token_type_ids"][batch["attention_mask"] == 0] == 0).all()


def test_text_pair_truncation_respects_max_length(tok: Any) -> None:
    task = TextClassification(text="a", text_pair="b", max_length=20)
    frame = pd.DataFrame({"a": [" ".join(["left"] * 100)], "b": [" ".join(["right"] * 100)], "label": ["pos"]})
    enc = task.encode(frame, tok, LABELS)
    assert len(enc["input_ids"][0]) == 20
    assert int((enc["input_ids"][0] == tok.sep_token_id).sum()) == 2  # both segments survive


def _scored(targets: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict[str, Any]:
    enc = Encoded({"targets": np.asarray(targets, dtype=np.int64)}, np.ones(len(targets), dtype=np.int64),
                  np.arange(1, len(targets) + 1))
    return TextClassification().metrics(enc, list(logits), labels)


def test_metrics_on_logits() -> None:
    logits = np.array([[2.0, 0.0], [0.0, 3.0], [1.0, 0.5], [-1.0, 1.0]], dtype=np.float32)
    targets = np.array([0, 1, 1, 1])
    m = _scored(targets, logits, LABELS)
    preds = logits.argmax(1)
    assert m["accuracy"] == pytest.approx(float(np.mean(preds == targets)))  # 3 of 4
    assert m["confusion_matrix"] == [[1, 0], [1, 2]]
    # log loss is the mean cross-entropy of the softmax of the logits.
    ce = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets))
    assert m["log_loss"] == pytest.approx(float(ce), rel=1e-5)
    assert m["n"] == 4 and m["labels"] == LABELS
    assert m["loss"] == pytest.approx(float(ce), rel=1e-5)


def test_metrics_are_shift_invariant_in_logits() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 3)).astype(np.float32)
    targets = rng.integers(0, 3, size=20)
    a = _scored(targets, logits, ["x", "y", "z"])
    b = _scored(targets, logits + 100.0, ["x", "y", "z"])
    assert a["accuracy"] == b["accuracy"]
    assert a["log_loss"] == pytest.approx(b["log_loss"], rel=1e-4)


def test_build_model_adds_a_head_with_labels(tiny_model_dir: Path) -> None:
    model, heads = TextClassification().build_model(tiny_model_dir, ["a", "b", "c"], attention="eager")
    assert heads == ["classifier"]
    assert model.config.num_labels == 3
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    assert model.classifier.out_features == 3
