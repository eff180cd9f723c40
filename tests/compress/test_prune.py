"""Pruning (heads, FFN neurons, weight magnitude) with recovery fine-tuning, and the LoRA merge of `taskfit compress`.

Unit tests run on a 2-layer, 4-head BERT built from a config (fixed init, MiniLM's tokenizer); one integration
test prunes a MiniLM trained on real BBC rows through the CLI.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import interrupt_at, run_taskfit, tiny_recipe
from taskfit.compress import prune as P
from taskfit.errors import ConfigError, IncompatibleError

TEXTS = ["Shares in the bank fell after the results.", "The striker scored twice in the final.",
         "新手机的电池可以用两天。", "Parliament voted on the new budget today."]


@pytest.fixture(scope="module")
def tiny4_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """2 layers, 4 heads of size 8, 64 FFN neurons: small enough for milliseconds, wide enough to prune."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny4")
    torch.manual_seed(7)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(out)
    return out


def _train(tmp: Path, model_dir: Path, csv: Path, run_name: str, **method: Any) -> Path:
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    recipe = tiny_recipe(csv, model_dir, tmp, max_steps=6, batch_size=16)
    recipe["output"]["name"] = run_name
    if method:
        recipe["method"] = method
    return train_recipe(parse_recipe(recipe)).run_dir


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny4_dir: Path, bbc_csv: Path) -> Path:
    return _train(tmp_path_factory.mktemp("runs"), tiny4_dir, bbc_csv, "full")


def _model(run: Path) -> Any:
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(run / "model").eval()


def _logits(model: Any, run: Path, texts: list[str] = TEXTS) -> torch.Tensor:
    from transformers import AutoTokenizer

    enc = AutoTokenizer.from_pretrained(run / "model")(texts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits


def _masked_logits(model: Any, run: Path, heads: list[list[int]] | None, neurons: list[list[int]] | None) -> Any:
    """Logits of the unpruned model with the gates of everything not kept set to 0."""
    gates = P._Gates(P.encoder_layers(model))
    with torch.no_grad():
        for g, keep in zip(gates.heads + gates.neurons, (heads or [None] * 2) + (neurons or [None] * 2), strict=True):
            if keep is not None:
                g.zero_()[keep] = 1.0
    try:
        return _logits(model, run)
    finally:
        gates.remove()


@pytest.mark.parametrize("importance", ["taylor", "magnitude"])
def test_removing_heads_and_neurons_equals_masking_them(tiny_run: Path, importance: str) -> None:
    from taskfit.compress.recovery import load_training_rows

    model = _model(tiny_run)
    meta = json.loads((tiny_run / "model" / "taskfit.json").read_text())
    if importance == "taylor":
        rows = load_training_rows(tiny_run, tiny_run / "model", meta)
        h_scores, n_scores = P.taylor_importance(model, rows.task, rows.train, batches=2)
        assert all(bool((s > 0).all()) for s in h_scores + n_scores)  # every gate moved the loss a little
    else:
        h_scores, n_scores = P.magnitude_importance(model)
    heads = P.choose_heads(h_scores, 0.5)  # 4 of 8 heads go, globally ranked
    neurons = P.choose_neurons(n_scores, 0.25)
    assert sum(map(len, heads)) == 4 and all(1 <= len(k) <= 4 for k in heads)
    assert [len(k) for k in neurons] == [48, 48]
    expected = _masked_logits(model, tiny_run, heads, neurons)
    before = P.count_params(model)
    assert P.remove_heads(model, heads) == [len(k) for k in heads]
    assert P.remove_neurons(model, neurons) == 48
    for lay, kept in zip(P.encoder_layers(model), heads, strict=True):
        assert lay.attention.self.query.weight.shape == (8 * len(kept), 32)
        assert lay.attention.output.dense.weight.shape == (32, 8 * len(kept))
        assert lay.intermediate.dense.weight.shape == (48, 32) and lay.output.dense.weight.shape == (32, 48)
    # each layer loses (4 dropped heads × 8) rows of Q, K, V (+ bias) and O columns; 16 neurons of 2 Linears
    assert before - P.count_params(model) == 32 * (3 * 33 + 32) + 2 * 16 * (33 + 32)
    torch.testing.assert_close(_logits(model, tiny_run), expected, rtol=0, atol=1e-5)


def _as_model_dir(run: Path, dest: Path, **meta: Any) -> None:
    """Give saved weights + config the run's tokenizer and taskfit.json, as compress_run does."""
    for f in (run / "model").iterdir():
        if f.name.startswith(("tokenizer", "special")) or f.name == "vocab.txt":
            (dest / f.name).write_bytes(f.read_bytes())
    base = json.loads((run / "model" / "taskfit.json").read_text())
    (dest / "taskfit.json").write_text(json.dumps({**base, **meta}))


def test_pruned_model_saves_and_reloads_exactly(tiny_run: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    from taskfit.inference import Predictor
    from taskfit.models.pruned import load_pruned, save_pruned

    model = _model(tiny_run)
    P.remove_heads(model, [[0], [1, 3]])
    save_pruned(model, tmp_path / "heads")
    assert json.loads((tmp_path / "heads" / "config.json").read_text())["taskfit_heads_per_layer"] == [1, 2]
    # plain transformers would re-initialise the smaller layers at random: it must find no weights instead
    with pytest.raises(OSError, match=r"model\.safetensors"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path / "heads")
    again = load_pruned(tmp_path / "heads")
    assert torch.equal(_logits(again, tiny_run), _logits(model, tiny_run))
    # through taskfit predict's loader, by path
    _as_model_dir(tiny_run, tmp_path / "heads", backend="pruned")
    probs = torch.softmax(_logits(model, tiny_run), -1).numpy()
    np.testing.assert_array_equal(Predictor.load(tmp_path / "heads").predict_proba(TEXTS), probs)
    # FFN pruning keeps one width for all layers: plain transformers reloads it
    ffn = _model(tiny_run)
    P.remove_neurons(ffn, P.choose_neurons(P.magnitude_importance(ffn)[1], 0.5))
    ffn.save_pretrained(tmp_path / "ffn")
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "ffn").eval()
    assert plain.config.intermediate_size == 32
    assert torch.equal(_logits(plain, tiny_run), _logits(ffn, tiny_run))


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_magnitude_pruning_hits_the_sparsity_exactly(tiny_run: Path, scope: str, tmp_path: Path) -> None:
    model = _model(tiny_run)
    head_before = model.classifier.weight.clone()
    report = P.magnitude_prune(model, 0.6, scope)
    linears = P.prunable_linears(model)
    assert not any(hasattr(m, "weight_orig") or hasattr(m, "weight_mask") for _n, m in linears)  # permanent
    total = sum(m.weight.numel() for _n, m in linears)
    if scope == "global":
        assert report["zero_weights"] == round(0.6 * total)
    else:
        assert all(int((m.weight == 0).sum()) == round(0.6 * m.weight.numel()) for _n, m in linears)
    assert report["sparsity"] == pytest.approx(report["zero_weights"] / total)
    assert torch.equal(model.classifier.weight, head_before)  # head and embeddings stay dense
    if scope == "global":  # saved and loaded by path as `taskfit predict` does: same outputs, same zeros
        from taskfit.inference import Predictor

        model.save_pretrained(tmp_path)
        _as_model_dir(tiny_run, tmp_path)
        pred = Predictor.load(tmp_path)
        assert P.sparsity_report(pred.model)["zero_weights"] == report["zero_weights"]
        probs = torch.softmax(_logits(model, tiny_run), -1).numpy()
        np.testing.assert_array_equal(pred.predict_proba(TEXTS), probs)


def _build(run: Path, method: str, dest: Path, progress: Any = None, **options: Any) -> dict[str, Any]:
    """A registered method's build, without the before/after measurement (that is compress_run's)."""
    from taskfit.compress.methods import COMPRESSORS, BuildContext
    from taskfit.compress.run import WEIGHT_FILES

    comp = COMPRESSORS.get(method)
    meta = json.loads((run / "model" / "taskfit.json").read_text())
    assert comp.check is not None
    opts = comp.check(run, run / "model", meta, options)
    dest.mkdir(parents=True, exist_ok=True)
    for f in (run / "model").iterdir():  # as compress_run does: tokenizer, config, taskfit.json
        if f.name not in WEIGHT_FILES:
            (dest / f.name).write_bytes(f.read_bytes())
    ctx = BuildContext(opts, run, dest.with_name(dest.name + ".work"), lambda _m: None, progress)
    extra: dict[str, Any] = comp.build(run / "model", dest, meta, ctx)
    (dest / "taskfit.json").write_text(json.dumps({**meta, **extra}))
    return extra


def test_magnitude_recovery_keeps_zeros_and_resumes_exactly(tiny_run: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    with pytest.raises(KeyboardInterrupt):
        _build(tiny_run, "prune-magnitude", tmp_path / "b", progress=interrupt_at(3), sparsity=0.5, recovery_steps=5)
    assert (tmp_path / "b.work" / "recovery" / "checkpoints").is_dir()  # kept for the resume
    resumed = _build(tiny_run, "prune-magnitude", tmp_path / "b", sparsity=0.5, recovery_steps=5)["pruning"]
    fresh = _build(tiny_run, "prune-magnitude", tmp_path / "a", sparsity=0.5, recovery_steps=5)["pruning"]
    assert resumed["recovery"]["resumed"] and not fresh["recovery"]["resumed"]
    assert not (tmp_path / "b.work").exists() and not (tmp_path / "a.work").exists()
    a, b = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    # recovery moved the weights but the pruned ones stayed exactly zero
    assert resumed["sparsity"] == fresh["sparsity"] >= 0.5 and resumed["recovery"]["steps"] == 5
    assert resumed["weights_zlib_mb"] < resumed["weights_mb"]


def test_bad_requests_name_the_value(tiny_run: Path, tmp_path: Path) -> None:
    from taskfit.compress import compress_run
    from taskfit.compress.methods import check_task

    with pytest.raises(ConfigError, match=r"--sparsity for prune-heads must be in \[0, 1\) .*got 1\.5"):
        compress_run(tiny_run, "prune-heads", options={"sparsity": 1.5})
    with pytest.raises(ConfigError, match=r"--recovery-steps must be a whole number ≥ 0 .*got -2"):
        compress_run(tiny_run, "prune-ffn", options={"recovery_steps": -2})
    with pytest.raises(ConfigError, match="--importance must be one of taylor, magnitude; got 'random'"):
        compress_run(tiny_run, "prune-ffn", options={"importance": "random"})
    with pytest.raises(ConfigError, match="--sparsity does not apply to --method onnx; it is an option of "
                                          "prune-ffn, prune-heads, prune-magnitude, prune-structured"):
        compress_run(tiny_run, "onnx", options={"sparsity": 0.3})
    with pytest.raises(IncompatibleError, match="this run is 'ner'"):
        check_task("ner", "prune-heads")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(IncompatibleError, match=r"edits BERT-style encoder layers .*this model is 'gpt2'"):
        P.check_model(tmp_path, "prune-heads")
    with pytest.raises(IncompatibleError, match="holds no adapter to merge: its model/ is plain transformers weights "
                                                "\\(method 'full'"):
        compress_run(tiny_run, "merge")
    assert not list(tiny_run.parent.glob("*prune*")) and not list(tiny_run.parent.glob("*merge*"))  # nothing begun


def test_merge_rebuilds_the_lora_model_and_serves_without_peft(tiny4_dir: Path, bbc_csv: Path,
                                                               tmp_path: Path) -> None:
    from taskfit.inference import Predictor

    run = _train(tmp_path, tiny4_dir, bbc_csv, "lora", name="lora", r=4, target_modules="all-linear")
    assert (run / "adapter" / "adapter_config.json").is_file()
    info = _build(run, "merge", tmp_path / "merged")["merge"]
    assert info["peft_type"] == "LORA" and info["compared_rows"] > 0
    assert info["max_abs_logit_diff"] <= 1e-5  # the adapter and the served model are the same model
    assert not list((tmp_path / "merged").glob("adapter*"))
    expected = Predictor.load(run).predict_proba(TEXTS)
    code = ("import sys, json; sys.modules['peft'] = None\n"  # any import of peft now fails
            "from taskfit.inference import Predictor\n"
            f"p = Predictor.load({str(tmp_path / 'merged')!r}).predict_proba({TEXTS!r})\n"
            "assert 'transformers' in sys.modules\n"
            "print(json.dumps(p.tolist()))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-2000:]
    served = np.array(json.loads(res.stdout.strip().splitlines()[-1]))
    assert float(np.abs(served - expected).max()) <= 1e-5


@pytest.mark.slow
def test_cli_prunes_minilm_with_recovery_and_predicts(minilm_bbc_run: Path, tmp_path: Path) -> None:
    from taskfit.inference import Predictor

    src = minilm_bbc_run
    out = tmp_path / "small"
    res = run_taskfit(["compress", str(src), "--method", "prune-structured", "--sparsity", "0.25",
                       "--recovery-steps", "4", "--rows", "24", "--out", str(out)])
    assert "before / after" in res.stdout and "recovery" in res.stdout
    doc = json.loads((out / "compression.json").read_text())
    info = doc["export"]["pruning"]
    assert sum(info["heads_per_layer"]) == 72 - 18 and info["intermediate_size"] == 1152  # 25 % of 72 heads, 1536
    assert info["recovery"]["steps"] == 4 and info["params_after"] < 0.9 * info["params_before"]
    assert doc["after"]["size_mb"] < doc["before"]["size_mb"] and doc["options"]["sparsity"] == 0.25
    assert "Pruning" in (out / "report.html").read_text()
    pred = Predictor.load(out)
    assert pred.meta["backend"] == "pruned"
    again = pred.predict_proba(TEXTS)
    np.testing.assert_array_equal(Predictor.load(out).predict_proba(TEXTS), again)  # deterministic reload
    # against the source, accuracy is reported (20 training steps leave MiniLM far from converged), not fixed
    b, a = doc["before"]["metrics"]["accuracy"], doc["after"]["metrics"]["accuracy"]
    assert doc["drop"] == pytest.approx(b - a) and doc["flagged"] == (doc["drop"] > doc["tolerance"])
    bad = run_taskfit(["compress", str(src), "--method", "prune-magnitude", "--sparsity", "1.5"], ok=False)
    assert bad.returncode == 2 and "--sparsity for prune-magnitude must be in [0, 1)" in bad.stderr
    assert "got 1.5" in bad.stderr
