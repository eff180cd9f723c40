"""Chains of compression methods (`taskfit compress RUN --method distill,prune-ffn,onnx-int8`) and the
`distill` method, on a 2-layer, 4-head BERT built from a config and trained briefly on real BBC rows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from conftest import run_taskfit, tiny_recipe
from taskfit.errors import ConfigError
from taskfit.train import Progress

TEXTS = ["Shares in the bank fell after the results.", "新手机的电池可以用两天。"]


@pytest.fixture(scope="module")
def tiny4_run(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path, bbc_csv: Path) -> Path:
    from transformers import AutoTokenizer, BertConfig, BertModel

    base = tmp_path_factory.mktemp("tiny4chain")
    torch.manual_seed(7)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=64)).save_pretrained(base)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(base)
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    recipe = tiny_recipe(bbc_csv, base, tmp_path_factory.mktemp("runs"), max_steps=6, batch_size=16)
    recipe["output"]["name"] = "full"
    return train_recipe(parse_recipe(recipe)).run_dir


def _probs(path: Path) -> np.ndarray:
    from taskfit.inference import Predictor

    return Predictor.load(path).predict_proba(TEXTS)


def _step(src_model: Path, method: str, dest: Path, **options: Any) -> Path:
    """One method's build on its own, as a user would run it on the previous model (no measurement)."""
    from taskfit.compress.methods import COMPRESSORS, BuildContext
    from taskfit.compress.run import WEIGHT_FILES

    comp, meta = COMPRESSORS.get(method), json.loads((src_model / "taskfit.json").read_text())
    opts = comp.check(src_model.parent, src_model, meta, options) if comp.check else options
    dest.mkdir(parents=True)
    for f in src_model.iterdir():
        if f.name not in WEIGHT_FILES:
            (dest / f.name).write_bytes(f.read_bytes())
    if comp.context or comp.options:
        extra = comp.build(src_model, dest, meta, BuildContext(opts, src_model.parent, dest.with_name("w"), print))
    else:
        extra = comp.build(src_model, dest, meta)
    (dest / "taskfit.json").write_text(json.dumps({**meta, **extra}))
    return dest


def test_a_chain_equals_its_steps_run_one_after_the_other(tiny4_run: Path, tmp_path: Path) -> None:
    from taskfit.compress import compress_run

    opts = {"sparsity": 0.5, "recovery_steps": 0, "importance": "magnitude"}  # deterministic, no training
    chained = compress_run(tiny4_run, "prune-ffn,onnx", out=tmp_path / "chain", options=opts, rows=40)
    pruned = _step(tiny4_run / "model", "prune-ffn", tmp_path / "pruned" / "model", **opts)
    exported = _step(pruned, "onnx", tmp_path / "pruned-onnx" / "model")
    np.testing.assert_allclose(_probs(chained.run_dir), _probs(exported), atol=1e-6)

    doc = json.loads((chained.run_dir / "compression.json").read_text())
    assert doc["steps"] == ["prune-ffn", "onnx"] and doc["method"] == "prune-ffn,onnx"
    assert doc["source"] == str(tiny4_run)  # compared with the original, not with the pruned model
    assert 0 < doc["rows"] <= 40 and doc["before"]["metrics"] and doc["after"]["metrics"]
    assert doc["options"]["prune-ffn"]["sparsity"] == 0.5 and doc["options"]["onnx"] == {}
    meta = json.loads((chained.run_dir / "model" / "taskfit.json").read_text())
    assert meta["backend"] == "onnx" and meta["compression_steps"] == ["prune-ffn", "onnx"]
    assert meta["pruning"]["intermediate_size"] == 32 and meta["compression_method"] == "prune-ffn,onnx"
    assert not (tmp_path / "chain.work").exists() and not (tmp_path / "chain.tmp").exists()
    html = (chained.run_dir / "report.html").read_text()
    assert "prune-ffn,onnx" in html and "Pruning" in html and "paired rounds" in html
    paired = doc["paired_throughput"]  # both models timed in the same rounds, in one process
    assert len(paired["ratios"]) == 5 and paired["ratio"] == paired["ratios"][2] == chained.paired["ratio"]
    assert paired["before_per_s"] > 0 and paired["after_per_s"] > 0


def test_paired_rounds_time_a_model_against_itself_at_about_one(tiny4_run: Path) -> None:
    from taskfit.compress.measure import paired_throughput

    threads = torch.get_num_threads()
    texts = TEXTS * 40  # 80 rows: three batches of 32
    first, second = paired_throughput([tiny4_run, tiny4_run], texts, rounds=3, clock="cpu")
    assert first["ratio"] == 1.0 and first["rows_per_s"] > 0 and len(second["ratios"]) == 3
    assert 0.5 < second["ratio"] < 2.0  # the same work; CPU time of one thread
    assert torch.get_num_threads() == threads  # the one-thread clock puts the threads back


def test_a_failed_step_keeps_the_finished_ones_for_the_same_command(tiny4_run: Path, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """An exporter that fails after a finished pruning step: the pruned model stays, the rerun starts after it."""
    from dataclasses import replace

    from taskfit.compress import compress_run
    from taskfit.compress.methods import COMPRESSORS

    def broken(*_args: Any) -> dict[str, Any]:
        raise OSError("disk full")

    real_get = COMPRESSORS.get
    monkeypatch.setattr(COMPRESSORS, "get",
                        lambda n: replace(real_get(n), build=broken) if n == "onnx" else real_get(n))
    opts = {"sparsity": 0.5, "recovery_steps": 0, "importance": "magnitude"}
    notes: list[str] = []
    with pytest.raises(RuntimeError, match=r"compress --method prune-ffn,onnx failed on .*: disk full"):
        compress_run(tiny4_run, "prune-ffn,onnx", out=tmp_path / "c", options=opts, rows=40, note=notes.append)
    work = tmp_path / "c.work"
    assert (work / "1-prune-ffn" / "step.json").is_file() and not (tmp_path / "c.tmp").exists()
    assert any(f"(1-prune-ffn) are kept in {work}" in n for n in notes), notes
    assert not (tmp_path / "c").exists()

    monkeypatch.setattr(COMPRESSORS, "get", real_get)  # the disk has room again
    notes.clear()
    done = compress_run(tiny4_run, "prune-ffn,onnx", out=tmp_path / "c", options=opts, rows=40, note=notes.append)
    assert any("step 1/2 prune-ffn: already done" in n for n in notes), notes
    assert json.loads((done.run_dir / "model" / "taskfit.json").read_text())["backend"] == "onnx"
    assert not work.exists()

    with pytest.raises(ConfigError):  # a single method that fails early leaves no work directory either
        compress_run(tiny4_run, "prune-ffn", out=tmp_path / "d", options={"sparsity": 1.5}, rows=40)
    assert not (tmp_path / "d.work").exists()


class _StopInSecondTraining(Progress):
    """Ctrl-C at the first optimiser step of the second training of the process (the chain's second step)."""

    def __init__(self) -> None:
        self.trainings = 0

    def start(self, total_steps: int, done_steps: int) -> None:
        self.trainings += 1

    def step(self, at: int, loss: float, lr: float, samples_per_s: float) -> None:
        if self.trainings == 2:
            raise KeyboardInterrupt


def test_distill_then_prune_resumes_after_ctrl_c_without_redoing_the_distillation(tiny4_run: Path,
                                                                                   tmp_path: Path) -> None:
    from safetensors.torch import load_file

    from taskfit.compress import compress_run

    opts: dict[str, Any] = {"layers": 1, "temperature": 3, "alpha": 0.7, "sparsity": 0.5, "recovery_steps": 3}
    with pytest.raises(KeyboardInterrupt):
        compress_run(tiny4_run, "distill,prune-ffn", out=tmp_path / "b", options=opts, rows=40,
                     progress=_StopInSecondTraining())
    assert (tmp_path / "b.work" / "1-distill" / "step.json").is_file()  # the finished step is kept
    assert not (tmp_path / "b").exists()
    notes: list[str] = []
    resumed = compress_run(tiny4_run, "distill,prune-ffn", out=tmp_path / "b", options=opts, rows=40,
                           note=notes.append)
    fresh = compress_run(tiny4_run, "distill,prune-ffn", out=tmp_path / "a", options=opts, rows=40)
    assert any("step 1/2 distill: already done" in n for n in notes), notes
    assert not (tmp_path / "b.work").exists()
    a = load_file(str(fresh.run_dir / "model" / "model.safetensors"))
    b = load_file(str(resumed.run_dir / "model" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    cfg = json.loads((resumed.run_dir / "model" / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 1 and cfg["intermediate_size"] == 32
    export = json.loads((resumed.run_dir / "compression.json").read_text())["export"]
    assert export["distillation"]["layers"] == 1 and export["distillation"]["layers_before"] == 2
    assert export["distillation"]["kept_layers"] == [1]  # the top layer
    assert export["distillation"]["temperature"] == 3 and export["distillation"]["alpha"] == 0.7
    assert export["distillation"]["params_after"] < export["distillation"]["params_before"]
    assert export["pruning"]["recovery"]["steps"] == 3
    assert resumed.after["metrics"] and _probs(resumed.run_dir).shape == (len(TEXTS), 5)


def test_bad_chains_and_options_are_refused_before_any_work(tiny4_run: Path) -> None:
    from taskfit.compress import compress_run

    cases = [
        ("onnx,prune-ffn", {}, "onnx cannot be followed by another method"),
        ("prune-ffn,prune-ffn", {}, "repeats prune-ffn; give each method once"),
        ("distill,,onnx", {}, "has an empty step"),
        ("distill,quantise", {}, "quantise"),
        ("prune-ffn,merge", {}, "merge reads the run's LoRA adapter, so it must be the first step"),
        ("distill", {"layers": 2}, r"--layers must be a whole number from 1 to 1 \(the model has 2 layers\); got 2"),
        ("distill", {"layers": 0}, "got 0"),
        ("onnx-int8", {"layers": 1}, "--layers does not apply to --method onnx-int8; it is an option of distill"),
        ("distill,onnx", {"sparsity": 0.5}, "--sparsity does not apply to --method distill,onnx"),
        ("distill,prune-ffn", {"sparsity": 1.5}, r"--sparsity for prune-ffn must be in \[0, 1\)"),
        ("distill", {"temperature": 0}, r"--temperature must be > 0, got 0.0"),
        ("distill,onnx", {"alpha": 1.5}, r"--alpha must be in \[0, 1\] \(the weight of the hard-label loss\)"),
        ("distill", {"alpha": "high"}, "--alpha must be a number, got 'high'"),
        ("onnx", {"alpha": 0.3}, "--alpha does not apply to --method onnx; it is an option of distill"),
        ("prune-heads,torch-int8", {}, "prune-heads .* can be followed only by onnx or onnx-int8, not torch-int8"),
        ("prune-structured,prune-ffn", {}, "can be followed only by onnx or onnx-int8, not prune-ffn"),
    ]
    for method, opts, match in cases:
        with pytest.raises(ConfigError, match=match):
            compress_run(tiny4_run, method, options=opts)
    assert sorted(p.name for p in tiny4_run.parent.iterdir()) == [tiny4_run.name]  # nothing begun


@pytest.mark.slow
def test_cli_distils_and_exports_in_one_command_then_predicts(tiny4_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "small"
    res = run_taskfit(["compress", str(tiny4_run), "--method", "distill,onnx-int8", "--layers", "1",
                       "--temperature", "4", "--out", str(out)])
    assert "steps: distill → onnx-int8" in res.stdout and "layers 2 → 1" in res.stdout
    assert "throughput, batch 32" in res.stdout and "T 4, alpha 0.5" in res.stdout
    pred = run_taskfit(["predict", str(out), "新手机的电池可以用两天。"])
    assert json.loads(pred.stdout.strip().splitlines()[-1])["label"] in json.loads(
        (tiny4_run / "model" / "taskfit.json").read_text())["labels"]


def _attention_heads(onnx_file: Path) -> list[int]:
    import onnx

    return [next(a.i for a in n.attribute if a.name == "num_heads")
            for n in onnx.load(str(onnx_file)).graph.node if n.op_type in ("Attention", "QAttention")]


def test_onnx_export_of_a_model_with_different_heads_per_layer_keeps_its_outputs(tmp_path: Path) -> None:
    """ORT's optimiser gives every fused Attention node the config's head count; a head-pruned model needs
    each layer's own. Q/K are scaled up so attention is sharp: with near-uniform attention a wrong head split
    would hardly change the output."""
    import onnxruntime as ort
    from transformers import BertConfig, BertForSequenceClassification

    from taskfit.compress.methods import export_onnx, optimize_onnx, quantize_onnx
    from taskfit.compress.prune import remove_heads

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=200, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=96,
        num_labels=3, attn_implementation="eager")).eval()
    assert remove_heads(model, [[0, 1, 2, 3], [1, 3], [2]]) == [4, 2, 1]
    with torch.no_grad():
        for layer in model.bert.encoder.layer:
            layer.attention.self.query.weight.mul_(30)
            layer.attention.self.key.weight.mul_(30)
    ids = torch.randint(0, 200, (5, 11))
    mask = torch.ones_like(ids)
    mask[2, 7:] = 0
    with torch.no_grad():
        expected = model(input_ids=ids, attention_mask=mask).logits.numpy()
    path = tmp_path / "m.onnx"
    names = export_onnx(model, path)
    feed = {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": np.zeros_like(ids.numpy())}
    fused = optimize_onnx(path, model)
    assert fused["Attention"] == 3 and _attention_heads(path) == [4, 2, 1]
    got = ort.InferenceSession(str(path)).run(None, {n: feed[n] for n in names})[0]
    np.testing.assert_allclose(got, expected, atol=1e-5)  # 1.4e-3 off with the config's 4 heads everywhere
    quantize_onnx(path)
    got = ort.InferenceSession(str(path)).run(None, {n: feed[n] for n in names})[0]
    np.testing.assert_allclose(got, expected, atol=2e-2)


@pytest.mark.slow
def test_head_pruned_models_export_to_onnx_in_a_chain_and_from_a_pruned_run(tiny4_run: Path, tmp_path: Path) -> None:
    from taskfit.compress import compress_run

    opts = {"sparsity": 0.5, "recovery_steps": 0, "importance": "magnitude"}  # deterministic, no training
    pruned = compress_run(tiny4_run, "prune-heads", out=tmp_path / "pruned", options=opts, rows=40)
    chained = compress_run(tiny4_run, "prune-heads,onnx", out=tmp_path / "chain", options=opts, rows=40)
    heads = json.loads((pruned.run_dir / "model" / "config.json").read_text())["taskfit_heads_per_layer"]
    assert sum(heads) == 4  # half of 2 layers x 4 heads
    meta = json.loads((chained.run_dir / "model" / "taskfit.json").read_text())
    assert meta["backend"] == "onnx" and meta["compression_steps"] == ["prune-heads", "onnx"]
    assert _attention_heads(chained.run_dir / "model" / "model.onnx") == heads
    np.testing.assert_allclose(_probs(chained.run_dir), _probs(pruned.run_dir), atol=1e-5)
    assert {f.name for f in (chained.run_dir / "model").glob("*.safetensors")} == set()  # ONNX only, no fp32 copy

    exported = compress_run(pruned.run_dir, "onnx-int8", out=tmp_path / "int8", rows=40)  # a pruned run as source
    doc = json.loads((exported.run_dir / "compression.json").read_text())
    assert doc["source"] == str(pruned.run_dir) and doc["after"]["metrics"]
    assert _attention_heads(exported.run_dir / "model" / "model.onnx") == heads
    assert not list((exported.run_dir / "model").glob("*.safetensors"))
    assert doc["after"]["size_mb"] < doc["before"]["size_mb"] / 2  # int8 and no copy of the pruned weights
    np.testing.assert_allclose(_probs(exported.run_dir), _probs(pruned.run_dir), atol=0.08)
    with pytest.raises(ConfigError, match="holds a head-pruned model, which only --method onnx or onnx-int8 can "
                                          "take, not torch-int8"):
        compress_run(pruned.run_dir, "torch-int8")
