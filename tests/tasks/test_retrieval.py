"""Retrieval task: contrastive loss, ranking metrics, the answer index, prefixes, data checks, a tiny run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_recipe
from taskfit.config import DataConfig, RetrievalOptions, parse_recipe
from taskfit.errors import DataError, IncompatibleError
from taskfit.tasks import TASKS
from taskfit.tasks.retrieval import Retrieval, detect_prefixes, info_nce, load_index, save_index, search
from taskfit.tasks.retrieval_report import failures, ranking_metrics


def _ids(*values: int) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.int64)


# ---- loss ----------------------------------------------------------------------------------------
def test_perfect_embeddings_give_near_zero_loss_and_random_ones_do_not() -> None:
    eye = torch.eye(4)
    perfect = info_nce(eye, eye, _ids(0, 1, 2, 3), _ids(0, 1, 2, 3), temperature=0.05)
    torch.manual_seed(0)
    rand = F.normalize(torch.randn(4, 4), dim=-1)
    shuffled = info_nce(rand, F.normalize(torch.randn(4, 4), dim=-1), _ids(0, 1, 2, 3), _ids(0, 1, 2, 3), 0.05)
    assert perfect.item() < 1e-6
    assert shuffled.item() > 1.0


def test_duplicate_answers_in_a_batch_are_not_negatives() -> None:
    # Rows 0 and 1 have the same answer text: both queries point at it, so their answer vectors are equal.
    q = torch.eye(3)[[0, 0, 2]]
    a = torch.eye(3)[[0, 0, 2]]
    masked = info_nce(q, a, aid=_ids(7, 7, 9), qid=_ids(0, 1, 2), temperature=0.05)
    unmasked = info_nce(q, a, aid=_ids(7, 8, 9), qid=_ids(0, 1, 2), temperature=0.05)
    assert masked.item() < 1e-6
    # Unmasked, each of rows 0/1 splits its probability over two identical answers: 2/3 of the rows
    # in each direction lose log 2.
    assert unmasked.item() == pytest.approx(2 / 3 * math.log(2), rel=1e-4)


def test_hard_negative_equal_to_the_positive_is_masked_and_a_close_one_costs() -> None:
    q = a = torch.eye(2)
    base = info_nce(q, a, _ids(0, 1), _ids(0, 1), 0.05)
    same_as_positive = info_nce(q, a, _ids(0, 1), _ids(0, 1), 0.05, negs=torch.eye(2)[[0]], nid=_ids(0))
    close = F.normalize(torch.tensor([[1.0, 0.05]]), dim=-1)
    hard = info_nce(q, a, _ids(0, 1), _ids(0, 1), 0.05, negs=close, nid=_ids(5))
    assert same_as_positive.item() == pytest.approx(base.item(), abs=1e-6)
    assert hard.item() > base.item() + 0.1


# ---- metrics -------------------------------------------------------------------------------------
def test_ranking_metrics_match_hand_computed_values() -> None:
    scores = np.array([[0.9, 0.1, 0.2, 0.0],   # relevant 0 at rank 1
                       [0.9, 0.8, 0.1, 0.0],   # relevant 1 at rank 2
                       [0.9, 0.8, 0.7, 0.1]])  # relevant 3 at rank 4
    m = ranking_metrics(scores, [[0], [1], [3]], recall_at=[1, 2, 5])
    assert m["recall@1"] == pytest.approx(1 / 3)
    assert m["recall@2"] == pytest.approx(2 / 3)
    assert m["recall@5"] == pytest.approx(1.0)
    assert m["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(5)) / 3)
    assert m["recall_curve"][:4] == pytest.approx([1 / 3, 2 / 3, 2 / 3, 1.0])


def test_a_query_with_several_answers_counts_its_best_ranked_one() -> None:
    scores = np.array([[0.1, 0.9, 0.5]])
    m = ranking_metrics(scores, [[0, 2]], recall_at=[1])
    assert m["mrr"] == pytest.approx(0.5)
    # nDCG: hits at ranks 2 and 3; ideal puts the two relevant answers at ranks 1 and 2.
    ideal = 1 + 1 / math.log2(3)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(4)) / ideal)
    fails = failures(scores, [[0, 2]], ["q<1>"], ["a0", "a1", "a2"])
    assert fails == [{"query": "q<1>", "expected": "a2", "retrieved": "a1", "score": 0.9}]


# ---- index ---------------------------------------------------------------------------------------
def test_index_round_trip_and_search(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    answers = ["营业时间是几点？", "Open 9–5", 'He said "hi"', "a\\b", "e", "f"]
    save_index(tmp_path / "index", answers, emb)
    got_answers, got_emb, faiss_index = load_index(tmp_path / "index")
    assert got_answers == answers
    np.testing.assert_array_equal(got_emb, emb)
    scores, idx = search(emb[:2], got_emb, faiss_index, k=3)
    assert idx[:, 0].tolist() == [0, 1]  # each vector finds itself first
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)
    assert np.all(np.diff(scores, axis=1) <= 1e-7)


# ---- prefixes ------------------------------------------------------------------------------------
def test_e5_prefixes_are_detected_from_meta_name_or_config(tmp_path: Path, minilm_dir: Path) -> None:
    by_name = tmp_path / "multilingual-e5-small"
    by_name.mkdir()
    by_meta = tmp_path / "converted"
    by_meta.mkdir()
    (by_meta / "taskfit_model.json").write_text(json.dumps({"prefixes": {"query": "q> ", "passage": "p> "}}))
    by_config = tmp_path / "model"
    by_config.mkdir()
    (by_config / "config.json").write_text(json.dumps({"_name_or_path": "/cache/intfloat/e5-base-v2"}))
    assert detect_prefixes(by_name) == ("query: ", "passage: ")
    assert detect_prefixes(by_meta) == ("q> ", "p> ")
    assert detect_prefixes(by_config) == ("query: ", "passage: ")
    assert detect_prefixes(minilm_dir) == ("", "")


# ---- bad inputs ----------------------------------------------------------------------------------
def _write(path: Path, rows: list[tuple[str, str]], header: str = "query,answer") -> Path:
    path.write_text(header + "\n" + "".join(f"{q},{a}\n" for q, a in rows), encoding="utf-8")
    return path


def _pairs(n: int) -> list[tuple[str, str]]:
    return [(f"question {i}", f"answer {i % 7}") for i in range(n)]


def test_empty_answer_rows_are_named(tmp_path: Path) -> None:
    f = _write(tmp_path / "faq.csv", [*_pairs(10), ("where is my order", ""), ("你好", "")])
    task = Retrieval(RetrievalOptions())
    with pytest.raises(DataError, match=r"rows 11, 12.*column 'answer'.*empty 'answer'.*empty_text: drop"):
        task.load_splits(DataConfig(train=f, checks={"empty_text": "error"}))
    splits = Retrieval(RetrievalOptions()).load_splits(DataConfig(train=f, checks={"empty_text": "drop"}))
    assert sum(len(df) for df in splits.frames.values()) == 10
    assert any(i["check"] == "empty_text" and i["rows"] == [11, 12] for i in splits.issues)


def test_missing_column_lists_the_available_ones(tmp_path: Path) -> None:
    f = _write(tmp_path / "faq.csv", _pairs(10), header="question,answer")
    task = Retrieval(RetrievalOptions())
    problems = task.input_problems(DataConfig(train=f))
    assert problems and "column 'query' not found" in problems[0] and "question, answer" in problems[0]
    with pytest.raises(DataError, match=r"column 'query' not found.*task\.query"):
        task.load_splits(DataConfig(train=f))


def test_duplicates_and_leakage_are_reported(tmp_path: Path) -> None:
    train = _write(tmp_path / "train.csv", [*_pairs(12), ("question 1", "answer 1")])
    valid = _write(tmp_path / "valid.csv", [("question 3", "answer 3"), ("new question", "answer 2")])
    splits = Retrieval(RetrievalOptions()).load_splits(DataConfig(train=train, valid=valid, test_fraction=0.0))
    checks = {i["check"]: i for i in splits.issues}
    assert checks["duplicates"]["rows"] == [13] and checks["duplicates"]["severity"] == "warning"
    assert checks["leakage"]["rows"] == [1] and "valid" in checks["leakage"]["message"]


def test_held_out_queries_never_appear_in_train(tmp_path: Path) -> None:
    rows = [(f"q{i % 20}", f"a{i}") for i in range(60)]  # every query has 3 answers
    splits = Retrieval(RetrievalOptions()).load_splits(DataConfig(train=_write(tmp_path / "f.csv", rows)))
    train_q = set(splits.frames["train"]["query"])
    for split in ("valid", "test"):
        assert len(splits.frames[split]) and not set(splits.frames[split]["query"]) & train_q
    assert not [i for i in splits.issues if i["check"] == "leakage"]


def test_frozen_method_is_incompatible() -> None:
    with pytest.raises(IncompatibleError, match=r"nothing.*full.*lora"):
        TASKS.get("retrieval").check_method("frozen")
    TASKS.get("retrieval").check_method("lora")


# ---- a tiny end-to-end run -----------------------------------------------------------------------
def test_tiny_run_saves_an_index_and_predicts_from_it(tmp_path: Path, tiny_model_dir: Path) -> None:
    from taskfit.inference import Predictor
    from taskfit.pipeline import train_recipe

    rows = [(f"how do I reset item {i}", f"press reset on item {i % 25}") for i in range(80)]
    train = _write(tmp_path / "faq.csv", rows)
    tree = tiny_recipe(train, tiny_model_dir, tmp_path / "runs", max_steps=3, checkpoint_every=10)
    tree["task"] = {"name": "retrieval", "recall_at": [1, 3]}
    summary = train_recipe(parse_recipe(tree))
    test = summary.test_metrics
    assert test is not None and {"recall@1", "recall@3", "mrr", "ndcg@10", "loss"} <= set(test)
    assert test["corpus_size"] == 25 and 0.0 <= test["mrr"] <= 1.0
    model_dir = summary.run_dir / "model"
    emb = np.load(model_dir / "index" / "embeddings.npy")
    assert emb.shape == (25, 32) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert "recall@k" in summary.report.read_text(encoding="utf-8")

    pred = Predictor.load(summary.run_dir)
    out = pred.predict(["how do I reset item 3", "重置"], top_k=2)
    corpus = {a for _, a in rows}
    assert [len(o["top"]) for o in out] == [2, 2]
    assert all(t["answer"] in corpus for o in out for t in o["top"])
    assert [t["rank"] for t in out[0]["top"]] == [1, 2] and out[0]["top"][0]["score"] >= out[0]["top"][1]["score"]
    # The saved index holds the final model's vectors: predict's top score equals a fresh cosine.
    fresh = pred.task.embed(pred.model, pred.task._tokens(["how do I reset item 3"], pred.processor, ""),
                            pred.device, None)
    assert out[0]["score"] == pytest.approx(float((fresh @ emb.T).max()), abs=1e-4)
    scored = pred.evaluate_file(train)
    assert scored["n"] == 80 and 0.0 <= scored["recall@1"] <= 1.0
