"""`taskfit distill`: the KD loss against a hand computation, the layer-cut student, tiny distillation runs
(Predictor loads them, resume is exact), pool labelling by a classifier and a generation teacher, bad inputs;
one end-to-end run on MiniLM with real BBC rows (slow)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import interrupt_at, run_taskfit, tiny_recipe
from taskfit.errors import ConfigError, DataError, IncompatibleError

# ---- the loss ----------------------------------------------------------------------------------------


def _softmax(row: list[float], t: float) -> list[float]:
    e = [math.exp(v / t) for v in row]
    return [v / sum(e) for v in e]


def test_kd_loss_matches_a_hand_computation() -> None:
    from taskfit.compress.distill_core import kd_loss

    s = [[1.0, 2.0, 0.5], [0.0, 0.0, 3.0]]
    t = [[2.0, 1.0, 0.0], [1.0, 0.0, 1.0]]
    y = [1, 0]
    temp, alpha = 2.0, 0.3
    kl = sum(sum(pt * math.log(pt / ps) for pt, ps in zip(_softmax(tr, temp), _softmax(sr, temp), strict=True))
             for sr, tr in zip(s, t, strict=True)) / 2
    ce = sum(-math.log(_softmax(sr, 1.0)[yi]) for sr, yi in zip(s, y, strict=True)) / 2
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temp, alpha)
    assert float(got) == pytest.approx(alpha * ce + (1 - alpha) * temp ** 2 * kl, rel=1e-6)
    # the two ends: hard labels only, soft targets only
    assert float(kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temp, 1.0)) == pytest.approx(ce, rel=1e-6)
    assert float(kd_loss(torch.tensor(s), torch.tensor(t), None, temp, 0.0)) == pytest.approx(temp ** 2 * kl, rel=1e-6)
    # a student equal to its teacher has nothing left to learn from it
    assert float(kd_loss(torch.tensor(t), torch.tensor(t), None, temp, 0.0)) == pytest.approx(0.0, abs=1e-6)


def test_multi_label_and_regression_losses_match_hand_computations() -> None:
    from taskfit.compress.distill_core import kd_loss_multi_label, kd_loss_regression

    s, t, y = [[0.5, -1.0], [2.0, 0.0]], [[1.0, -2.0], [0.0, 0.5]], [[1, 0], [1, 1]]
    temp, alpha = 2.0, 0.4

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    cells = [(a, b, c) for sr, tr, yr in zip(s, t, y, strict=True) for a, b, c in zip(sr, tr, yr, strict=True)]
    kl = sum(sig(b / temp) * math.log(sig(b / temp) / sig(a / temp))
             + (1 - sig(b / temp)) * math.log((1 - sig(b / temp)) / (1 - sig(a / temp))) for a, b, _ in cells) / 4
    bce = sum(-(c * math.log(sig(a)) + (1 - c) * math.log(1 - sig(a))) for a, _, c in cells) / 4
    got = kd_loss_multi_label(torch.tensor(s), torch.tensor(t), torch.tensor(y), temp, alpha)
    assert float(got) == pytest.approx(alpha * bce + (1 - alpha) * temp ** 2 * kl, rel=1e-5)
    # regression: MSE to the targets and to the teacher's scores; the temperature plays no part
    p, q, z = [[0.5], [1.5], [-1.0]], [[0.0], [1.0], [-0.5]], [1.0, 1.0, 0.0]
    want = alpha * sum((a[0] - c) ** 2 for a, c in zip(p, z, strict=True)) / 3 + (1 - alpha) * sum(
        (a[0] - b[0]) ** 2 for a, b in zip(p, q, strict=True)) / 3
    for temp_r in (1.0, 5.0):
        got = kd_loss_regression(torch.tensor(p), torch.tensor(q), torch.tensor(z), temp_r, alpha)
        assert float(got) == pytest.approx(want, rel=1e-6)


# ---- the layer-cut student ----------------------------------------------------------------------------


def _tiny_classifier(layers: int, labels: int, seed: int = 7) -> torch.nn.Module:
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    cfg = BertConfig(vocab_size=120, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=64, num_labels=labels)
    return BertForSequenceClassification(cfg).eval()


def test_layer_student_has_the_teachers_weights_in_the_kept_layers(tmp_path: Path) -> None:
    from transformers import BertForSequenceClassification

    from taskfit.compress.distill_core import kept_layers, layer_student

    teacher = _tiny_classifier(4, 3)
    student, kept = layer_student(teacher, 2)
    assert kept == [1, 3] and kept_layers(6, 3) == [1, 3, 5] and kept_layers(6, 1) == [5]
    assert student.config.num_hidden_layers == 2 and len(student.bert.encoder.layer) == 2
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for new, old in enumerate(kept):
        for name, value in student.bert.encoder.layer[new].state_dict().items():
            assert torch.equal(value, teacher.bert.encoder.layer[old].state_dict()[name]), (new, name)
    for key in s_state:
        if ".encoder.layer." not in key:  # embeddings, pooler, classifier: copied as they are
            assert torch.equal(s_state[key], t_state[key]), key
    # the student saves and loads as an ordinary 2-layer model with the same outputs
    student.save_pretrained(tmp_path / "s")
    again = BertForSequenceClassification.from_pretrained(tmp_path / "s").eval()
    ids = torch.tensor([[2, 5, 9, 11, 3]])
    with torch.no_grad():
        assert torch.allclose(again(input_ids=ids).logits, student.eval()(input_ids=ids).logits, atol=1e-6)
    with pytest.raises(IncompatibleError, match="not fewer than the teacher's 4 layers"):
        layer_student(teacher, 4)


# ---- runs on a tiny teacher ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_run(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, bbc_csv: Path) -> Path:
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    out = tmp_path_factory.mktemp("teacher")
    train_recipe(parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, out, max_steps=8)))
    return out / "run"


def test_distilled_run_loads_in_predictor_and_caches_the_teacher_logits(teacher_run: Path, tmp_path: Path) -> None:
    from taskfit.compress.distill import distill
    from taskfit.config import load_recipe
    from taskfit.inference import Predictor
    from taskfit.tasks import TASKS

    run = distill(teacher_run, layers=1, max_steps=6, out=tmp_path / "student", measure=False)
    block = json.loads((run / "results.json").read_text())["distillation"]
    assert block["kept_layers"] == [1] and block["temperature"] == 2.0 and block["alpha"] == 0.5
    assert block["student_params"] < block["teacher_params"]
    teacher, student = Predictor.load(teacher_run), Predictor.load(run)
    assert student.labels == teacher.labels and student.model.config.num_hidden_layers == 1
    out = student.predict(["Shares rose after the bank reported profits."])
    assert out[0]["label"] in teacher.labels
    # the cached logits are the teacher's own on the student's training rows (same split, same order)
    recipe = load_recipe(run / "recipe.yaml")
    task = TASKS.get("text_classification").from_config(recipe.task, recipe.data)
    train = task.load_splits(recipe.data).frames["train"]
    cached = np.load(run / "teacher_logits.npy")
    probs = torch.softmax(torch.from_numpy(cached), -1).numpy()
    assert np.allclose(probs, teacher.predict_proba(train["text"].tolist()), atol=1e-5)
    assert "Distillation" in (run / "report.html").read_text()
    with pytest.raises(ConfigError, match="already exists; pick another --out, pass --overwrite"):
        distill(teacher_run, layers=1, out=tmp_path / "student")
    from taskfit.compress import compress_run

    small = compress_run(run, "torch-int8", rows=6)  # a distilled run compresses like a trained one
    assert json.loads((small.run_dir / "compression.json").read_text())["after"]["n"] == 6


def test_regression_student_is_compared_with_its_teacher(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A regression teacher distils into a score student, and the before/after table is measured on the same
    rows with RMSE, where a rise counts as a drop."""
    from taskfit.compress.distill import distill
    from taskfit.config import parse_recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe

    data = write_dataset("vader_tweets", tmp_path / "vader.csv", n=160, seed=0)
    recipe = tiny_recipe(data, tiny_model_dir, tmp_path / "runs", max_steps=6)
    recipe.update(task={"name": "regression"}, data={**recipe["data"], "text": "text", "label": "score"})
    train_recipe(parse_recipe(recipe))
    run = distill(tmp_path / "runs" / "run", layers=1, max_steps=4, out=tmp_path / "student", measure=True)
    block = json.loads((run / "results.json").read_text())["distillation"]
    assert "comparison_skipped" not in block
    cmp = block["comparison"]
    before, after = cmp["before"]["metrics"]["rmse"], cmp["after"]["metrics"]["rmse"]
    assert cmp["metric"] == "rmse" and math.isfinite(before) and math.isfinite(after)
    assert cmp["drop"] == pytest.approx(after - before)  # lower is better: a higher RMSE is a loss
    assert cmp["rows"] == cmp["after"]["n"] > 0


def test_resume_after_interrupt_gives_the_uninterrupted_weights(teacher_run: Path, tmp_path: Path) -> None:
    from taskfit.compress.distill import distill, resume_distill

    opts = {"layers": 1, "max_steps": 8, "temperature": 3.0, "alpha": 0.2, "measure": False}
    whole = distill(teacher_run, out=tmp_path / "whole", **opts)
    with pytest.raises(KeyboardInterrupt):
        distill(teacher_run, out=tmp_path / "cut", progress=interrupt_at(7), **opts)
    assert not (tmp_path / "cut" / "model").exists() and (tmp_path / "cut" / "checkpoints").is_dir()
    resumed = resume_distill(tmp_path / "cut", measure=False)
    from safetensors.torch import load_file

    a, b = load_file(whole / "model" / "model.safetensors"), load_file(resumed / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_pool_is_labelled_by_a_classifier_teacher(teacher_run: Path, bbc_csv: Path, tmp_path: Path) -> None:
    from taskfit.compress.distill_pool import label_pool
    from taskfit.inference import Predictor

    texts = pd.read_csv(bbc_csv)["text"].head(10).tolist()
    pd.DataFrame({"body": texts, "id": range(10)}).to_csv(tmp_path / "pool.csv", index=False)
    seen: list[tuple[int, int]] = []
    res = label_pool(teacher_run, tmp_path / "pool.csv", "body", tmp_path / "labelled.csv",
                     progress=lambda d, t: seen.append((d, t)))
    assert res.rows == 10 and seen[-1] == (10, 10) and sum(res.counts.values()) == 10
    out = pd.read_csv(tmp_path / "labelled.csv")
    assert list(out.columns) == ["body", "id", "teacher_label", "teacher_score", "teacher_probs"]
    probs = np.array([[json.loads(p)[lab] for lab in res.labels] for p in out["teacher_probs"]])
    assert np.allclose(probs, Predictor.load(teacher_run).predict_proba(texts), atol=1e-5)
    assert out["teacher_label"].tolist() == [res.labels[i] for i in probs.argmax(1)]


@pytest.fixture(scope="module")
def tiny_generation_teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer LLaMA with SmolLM2's real tokenizer and chat template, saved as a generation run's model."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from taskfit.models import resolve_model
    from taskfit.tasks import TASKS

    tok = AutoTokenizer.from_pretrained(resolve_model("SmolLM2-135M-Instruct"))
    torch.manual_seed(3)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=1024,
                      eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    out = tmp_path_factory.mktemp("gen") / "model"
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    (out / "taskfit.json").write_text(json.dumps({**TASKS.get("generation")().meta(), "labels": []}))
    return out.parent


def test_generation_teacher_scores_each_label_like_separate_forward_passes(tiny_generation_teacher: Path,
                                                                          tmp_path: Path) -> None:
    from taskfit.compress.distill_pool import label_pool
    from taskfit.inference import Predictor
    from taskfit.tasks.generation_data import IGNORE, supervised_example

    texts = ["The match ended in a draw.", "比赛以平局结束。", "Shares fell sharply."]
    pd.DataFrame({"text": texts}).to_csv(tmp_path / "pool.csv", index=False)
    labels = ["sport", "business", "tech news"]  # labels of different token lengths: padding must not count
    with pytest.raises(ConfigError, match=r"labels of teacher .* are unknown"):
        label_pool(tiny_generation_teacher, tmp_path / "pool.csv", "text", tmp_path / "x.csv")
    res = label_pool(tiny_generation_teacher, tmp_path / "pool.csv", "text", tmp_path / "l.csv", labels=labels,
                     prompt="Topic of: {text}")
    got = np.array([[json.loads(p)[lab] for lab in labels] for p in pd.read_csv(tmp_path / "l.csv")["teacher_probs"]])
    pred = Predictor.load(tiny_generation_teacher)
    fmt = pred.task._fmt(pred.processor)
    for r, text in enumerate(texts):
        scores = []
        for lab in labels:  # one unpadded sequence at a time
            ids, tgt = supervised_example(fmt, [{"role": "user", "content": f"Topic of: {text}"},
                                               {"role": "assistant", "content": lab}], 512)
            with torch.no_grad():
                logp = torch.log_softmax(pred.model(input_ids=torch.from_numpy(ids)[None]).logits[0].float(), -1)
            where = np.flatnonzero(tgt != IGNORE)
            scores.append(float(logp[where, torch.from_numpy(tgt[where])].sum()))
        want = torch.softmax(torch.tensor(scores, dtype=torch.float64), 0).numpy()
        assert np.allclose(got[r], want, atol=2e-5), (got[r], want)
    assert res.teacher_task == "generation" and sum(res.counts.values()) == 3


# ---- bad inputs ----------------------------------------------------------------------------------------


def test_bad_options_are_refused_before_any_work(teacher_run: Path, tmp_path: Path) -> None:
    from taskfit.compress.distill import distill

    with pytest.raises(ConfigError, match=r"--alpha must be in \[0, 1\].*got 1.5"):
        distill(teacher_run, layers=1, alpha=1.5)
    with pytest.raises(ConfigError, match="--temperature must be > 0, got 0"):
        distill(teacher_run, layers=1, temperature=0)
    with pytest.raises(ConfigError, match="exactly one of --student"):
        distill(teacher_run, layers=1, student="all-MiniLM-L6-v2")
    pool = tmp_path / "pool.csv"
    pd.DataFrame({"body": ["a text"]}).to_csv(pool, index=False)
    missing = r"--text-column 'text' is not a column of the pool; its columns are \['body'\]"
    with pytest.raises(DataError, match=missing):
        distill(teacher_run, layers=1, pool=pool)
    pool.write_text("body\n")
    with pytest.raises(DataError, match="the pool has no rows"):
        distill(teacher_run, layers=1, pool=pool, text_column="body")
    three = _tiny_classifier(2, 3)
    three.save_pretrained(tmp_path / "three")
    with pytest.raises(IncompatibleError, match=r"is a classifier with 3 labels, the teacher has 5"):
        distill(teacher_run, student=str(tmp_path / "three"))
    assert not (teacher_run.parent / "run-distilled").exists()  # nothing was created
    from taskfit.compress.distill_pool import soft_logits

    edited = pd.DataFrame({"teacher_probs": ['{"a": 0.75, "b": 0.25}', '{"a": 1.0}'], "_row": [2, 3]})
    with pytest.raises(DataError, match=r"\[file p.csv, row 3, column 'teacher_probs'\] .* each of \['a', 'b'\]"):
        soft_logits(edited, ["a", "b"], Path("p.csv"))
    assert np.allclose(np.exp(soft_logits(edited.head(1), ["a", "b"], Path("p.csv"))), [[0.75, 0.25]])


def test_cli_refuses_bad_alpha_with_the_message(teacher_run: Path) -> None:
    res = run_taskfit(["distill", str(teacher_run), "--layers", "1", "--alpha", "-0.1"], ok=False)
    assert res.returncode == 2 and "--alpha must be in [0, 1]" in res.stderr and "Traceback" not in res.stderr


# ---- end to end on MiniLM and real BBC rows ---------------------------------------------------------------


@pytest.mark.slow
def test_minilm_teacher_to_layer_student_and_pool_student(tmp_path: Path, minilm_bbc_run: Path, bbc_csv: Path,
                                                          tiny_model_dir: Path) -> None:
    teacher = minilm_bbc_run
    student = tmp_path / "student"
    res = run_taskfit(["distill", str(teacher), "--layers", "2", "--steps", "10", "--lr", "1e-4", "--out",
                       str(student)])
    assert "teacher vs student" in res.stdout and "throughput, batch 32" in res.stdout
    block = json.loads((student / "results.json").read_text())["distillation"]
    cmp = block["comparison"]
    assert block["kept_layers"] == [2, 5] and block["student_params"] < block["teacher_params"]
    assert cmp["after"]["size_mb"] < cmp["before"]["size_mb"] and cmp["rows"] == cmp["after"]["n"] > 0
    pred = run_taskfit(["predict", str(student), "The striker scored twice in the second half."])
    labels = json.loads((teacher / "model" / "taskfit.json").read_text())["labels"]
    assert json.loads(pred.stdout.strip().splitlines()[0])["label"] in labels
    # the same teacher labels a pool for a tiny student (soft labels from its distribution); 20 texts per topic
    frame = pd.read_csv(bbc_csv)
    pool = frame.groupby("label").head(20)[["text"]].rename(columns={"text": "body"})
    pool.to_csv(tmp_path / "pool.csv", index=False)
    res = run_taskfit(["distill", str(teacher), "--pool", str(tmp_path / "pool.csv"), "--text-column", "body",
                       "--student", str(tiny_model_dir), "--steps", "6", "--out", str(tmp_path / "pooled"),
                       "--no-measure"])
    assert "labelling pool" in res.stdout
    block = json.loads((tmp_path / "pooled" / "results.json").read_text())["distillation"]
    assert block["mode"] == "pool" and block["pool"]["rows"] == 100
    assert set(block["pool"]["label_counts"]) == set(labels)
