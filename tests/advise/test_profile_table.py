"""`taskfit profile` on a tiny real BERT: the table is written (atomically, after each option), resumes by skipping
measured options, re-measures when the settings change, and rejects bad options before measuring anything.
One integration test: `taskfit advise --data` on real BBC rows with the packaged MiniLM's tokenizer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_taskfit
from taskfit.advise import ProfileSettings, Workload, advise, load_profile, run_profile
from taskfit.advise.profile import check_options
from taskfit.errors import ConfigError

TINY = ProfileSettings(steps=2, rows=4, lengths=(8, 32), infer_lengths=(8, 32), infer_rows=4, infer_length=16,
                       infer_calls=2, threads=1)


def test_profile_writes_the_table_and_resumes(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "profile.json"
    model = str(tiny_model_dir)
    seen: list[tuple[str, str]] = []
    run = run_profile([model], ["full", "frozen"], ["fp32"], out=out, settings=TINY,
                      on_option=lambda key, state: seen.append((key, state)))
    keys = [f"{model}|full|fp32", f"{model}|frozen|fp32"]
    assert run.measured == keys and not run.skipped and not run.failed
    assert [s for _, s in seen] == ["measuring", "done", "measuring", "done"]
    doc = load_profile(out)
    assert list(doc["options"]) == keys and doc["settings"] == TINY.as_dict()
    assert doc["machine"]["cpu_cores"] >= 1 and "cpu" in doc["machine"] and doc["machine"]["torch_threads"] >= 1
    full, frozen = doc["options"][keys[0]], doc["options"][keys[1]]
    for e in (full, frozen):
        assert [s["tokens"] for s in e["train"]] == [4 * 8, 4 * 32]
        assert all(s["step_s"] > 0 and s["cpu_s"] >= 0 and len(s["step_s_all"]) == 2 for s in e["train"])
        assert set(e["inference"]["latency_ms"]) == {"8", "32"} and e["inference"]["throughput_rows_s"] > 0
        assert e["kind"] == "encoder" and e["precision_used"] == "fp32" and e["threads"] == 1
    # the frozen backbone trains the head only
    assert frozen["shape"]["trainable"] < full["shape"]["trainable"] == full["shape"]["params"]

    # resume: the two measured options are skipped, only the new one runs
    again = run_profile([model], ["full", "frozen", "lora"], ["fp32"], out=out, settings=TINY)
    assert again.skipped == keys and again.measured == [f"{model}|lora|fp32"]
    doc2 = load_profile(out)
    assert doc2["options"][keys[0]] == full and len(doc2["options"]) == 3
    assert not list(tmp_path.glob(".profile.json.*"))  # atomic writes leave no temp files

    # the table feeds advice directly (a local model directory: no language filter applies)
    adv = advise(Workload("text_classification", 500, 4, ("en",)), doc2, objective="time")
    assert len(adv.ranked) == 3 and adv.ranked[0].estimate.total_s <= adv.ranked[-1].estimate.total_s


def test_profile_remeasures_when_settings_change(tiny_model_dir: Path, tmp_path: Path):
    out = tmp_path / "p.json"
    run_profile([str(tiny_model_dir)], ["frozen"], ["fp32"], out=out, settings=TINY)
    other = ProfileSettings(**{**TINY.__dict__, "lengths": (8, 16)})
    run = run_profile([str(tiny_model_dir)], ["frozen"], ["fp32"], out=out, settings=other)
    assert run.measured == [f"{tiny_model_dir}|frozen|fp32"] and not run.skipped
    assert load_profile(out)["settings"]["lengths"] == [8, 16]


def test_auto_precisions_profile_bf16_only_where_runs_would_use_it(monkeypatch: pytest.MonkeyPatch):
    """`--precisions auto` (the default): fp32 everywhere, bf16 only where train.precision=auto would pick it —
    native bf16, and not for image models on a CPU (the image task keeps fp32 there)."""
    import torch

    import taskfit.train.loop as loop
    from taskfit.advise.profile import planned

    models, methods = ["all-MiniLM-L6-v2", "efficientnet-lite0"], ["full"]
    monkeypatch.setattr(loop, "pick_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(loop, "pick_precision", lambda requested, device: torch.bfloat16)  # a native-bf16 CPU
    assert planned(models, methods, ["auto"]) == [
        "all-MiniLM-L6-v2|full|fp32", "all-MiniLM-L6-v2|full|bf16", "efficientnet-lite0|full|fp32"]
    # asked for explicitly, bf16 is profiled for images too; "auto" adds nothing twice
    assert planned(["efficientnet-lite0"], methods, ["bf16", "auto"]) == [
        "efficientnet-lite0|full|bf16", "efficientnet-lite0|full|fp32"]
    monkeypatch.setattr(loop, "pick_device", lambda: torch.device("cuda"))  # a GPU with bf16: images too
    assert planned(models, methods, ["auto"])[-2:] == ["efficientnet-lite0|full|fp32", "efficientnet-lite0|full|bf16"]
    monkeypatch.setattr(loop, "pick_device", lambda: torch.device("cpu"))
    monkeypatch.setattr(loop, "pick_precision", lambda requested, device: None)  # emulated bf16 (AVX2 only)
    assert planned(models, methods, ["auto"]) == ["all-MiniLM-L6-v2|full|fp32", "efficientnet-lite0|full|fp32"]


def test_profile_rejects_bad_options_before_measuring(tmp_path: Path):
    with pytest.raises(ConfigError) as err:
        check_options(["no-such-model", "efficientnet-lite0"], ["full", "qlora"], ["fp16"])
    msg = str(err.value)
    assert "--precisions: 'fp16' is not a precision; expected one of fp32, bf16 or auto." in msg
    assert "--methods: 'qlora' is not a tuning method; available: frozen, full, lora." in msg
    assert "--models: 'no-such-model' is neither a packaged model" in msg
    assert "--models: 'efficientnet-lite0'" not in msg  # image models are profiled too
    assert len(err.value.problems) == 3
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1}), encoding="utf-8")
    with pytest.raises(ConfigError, match="is not a taskfit profile"):
        load_profile(bad)
    res = run_taskfit(["profile", "--methods", "qlora", "--out", str(tmp_path / "x.json")], ok=False)
    assert res.returncode == 2 and "'qlora' is not a tuning method" in res.stderr
    assert not (tmp_path / "x.json").exists()
    sides = run_taskfit(["profile", "--image-sides", "64,64", "--out", str(tmp_path / "x.json")], ok=False)
    assert sides.returncode == 2 and ("--image-sides: two or more different image sides ≥ 16 px are needed, e.g. "
                                      "64,128,224; got '64,64'") in sides.stderr
    assert not (tmp_path / "x.json").exists()


def test_advise_counts_tokens_of_real_rows(bbc_csv: Path, tmp_path: Path, minilm_dir: Path):
    """`--data`: rows and tokens per row come from the file, tokenised by each model of the profile."""
    from taskfit.advise.tokens import data_tokens

    counted = data_tokens(bbc_csv, "text", ["all-MiniLM-L6-v2"], max_length=128)
    assert counted.rows == 300 and 0 < counted.mean["all-MiniLM-L6-v2"] <= counted.longest["all-MiniLM-L6-v2"] <= 128
    res = run_taskfit(["advise", "--task", "text_classification", "--data", str(bbc_csv), "--languages", "en",
                       "--json"], TASKFIT_CACHE=str(tmp_path))
    doc = json.loads(res.stdout)
    assert doc["workload"]["rows"] == 300
    assert doc["workload"]["tokens"]["all-MiniLM-L6-v2"] == pytest.approx(counted.mean["all-MiniLM-L6-v2"])
    bad = run_taskfit(["advise", "--task", "text_classification", "--data", str(bbc_csv), "--text-column", "body"],
                      ok=False, TASKFIT_CACHE=str(tmp_path))
    assert bad.returncode == 2
    assert "--text-column 'body' is not a column of the data; columns: text, label" in bad.stderr


def test_generation_rows_are_counted_as_the_generation_task_encodes_them(tmp_path: Path):
    """A chat file's tokens are the chat template around prompt and response (SmolLM2's tokenizer, real rows)."""
    import pandas as pd

    from taskfit.advise.tokens import data_tokens
    from taskfit.data.packaged import write_dataset

    chat = write_dataset("chat_en", tmp_path / "chat.csv", n=60, seed=0)
    model = "SmolLM2-135M-Instruct"
    counted = data_tokens(chat, "ignored", [model], max_length=256, task="generation")
    frame = pd.read_csv(chat)
    assert counted.rows == 60 and counted.pack == 256
    from transformers import AutoTokenizer

    from taskfit.models import resolve_model

    tok = AutoTokenizer.from_pretrained(resolve_model(model))
    plain = [len(tok(f"{p} {r}")["input_ids"]) for p, r in zip(frame["prompt"], frame["response"], strict=True)]
    # the template adds role markers (and SmolLM2's default system turn) to every row
    assert all(n > m for n, m in zip(counted.lengths[model], plain, strict=True))
    assert counted.longest[model] <= 256
    work = counted.workload(Workload("generation", 60, None, ("en",), epochs=1.0, batch_size=16))
    assert work.batches is not None
    assert all(r < 16 for r, _ in work.batches[model])  # packed: fewer rows than examples
    # the command counts a generation file with the causal LMs of the profile only
    res = run_taskfit(["advise", "--task", "generation", "--data", str(chat), "--max-length", "256",
                       "--languages", "en", "--json"], TASKFIT_CACHE=str(tmp_path))
    doc = json.loads(res.stdout)
    assert doc["workload"]["rows"] == 60
    from taskfit.errors import DataError

    with pytest.raises(DataError, match="no response token is left to train on; raise --max-length"):
        data_tokens(chat, "ignored", [model], max_length=8, task="generation")
    renamed = tmp_path / "renamed.csv"
    frame.rename(columns={"prompt": "q", "response": "a"}).to_csv(renamed, index=False)
    with pytest.raises(DataError, match=r"needs 'prompt' and 'response' columns \(or 'messages'\); its columns are "
                       r"\['q', 'a'\]"):
        data_tokens(renamed, "ignored", [model], task="generation")
    chat_rows = tmp_path / "messages.jsonl"
    chat_rows.write_text("".join(json.dumps({"messages": [{"role": "user", "content": p},
                                                          {"role": "assistant", "content": r}]}) + "\n"
                                 for p, r in zip(frame["prompt"][:5], frame["response"][:5], strict=True)))
    assert data_tokens(chat_rows, "ignored", [model], max_length=256, task="generation").lengths[model] == \
        counted.lengths[model][:5]  # the same conversations as messages count the same tokens
    bad = run_taskfit(["advise", "--task", "generation", "--data", str(tmp_path / "nope.csv")], ok=False,
                      TASKFIT_CACHE=str(tmp_path))
    assert bad.returncode == 2


def test_image_models_are_profiled_in_pixels(tmp_path: Path):
    """The real packaged MobileNetV2 through the image probe: shapes are sides in pixels, the step includes the
    task's augmentation, latency is keyed by pixels per image, LoRA is not planned (the task refuses it), and the
    table advises an image task (and only that)."""
    from taskfit.advise.profile import planned
    from taskfit.data.packaged import write_dataset
    from taskfit.data.packaged.images import FASHION_DIR

    settings = ProfileSettings(steps=1, rows=4, infer_rows=4, infer_calls=2, threads=1, image_sides=(32, 48))
    assert planned(["mobilenet_v2"], ["full", "lora", "frozen"], ["fp32"]) == [
        "mobilenet_v2|full|fp32", "mobilenet_v2|frozen|fp32"]
    run = run_profile(["mobilenet_v2"], ["full", "lora", "frozen"], ["fp32"], out=tmp_path / "p.json",
                      settings=settings)
    assert run.measured == ["mobilenet_v2|full|fp32", "mobilenet_v2|frozen|fp32"] and not run.failed
    doc = load_profile(tmp_path / "p.json")
    full, frozen = doc["options"]["mobilenet_v2|full|fp32"], doc["options"]["mobilenet_v2|frozen|fp32"]
    for e in (full, frozen):
        assert e["kind"] == "image" and e["task"] == "image_classification" and e["unit"] == "pixels"
        assert [(s["length"], s["tokens"], s["batch"]) for s in e["train"]] == [
            (32, 4 * 32 * 32, [4, 3, 32, 32]), (48, 4 * 48 * 48, [4, 3, 48, 48])]
        assert all(s["step_s"] > 0 and s["peak_mb"] >= 0 for s in e["train"])
        assert set(e["inference"]["latency_ms"]) == {str(32 * 32), str(48 * 48)}
        assert e["inference"]["throughput_shape"] == [4, 48 * 48] and e["inference"]["throughput_rows_s"] > 0
    assert frozen["shape"]["trainable"] < full["shape"]["trainable"] == full["shape"]["params"]

    name = "fashion_mnist" if (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file() else "mnist_digits"
    folder = write_dataset(name, tmp_path / name, n=40, seed=0)
    res = run_taskfit(["advise", "--task", "image_classification", "--data", str(folder), "--image-size", "40",
                       "--profile", str(tmp_path / "p.json"), "--json"])
    out = json.loads(res.stdout)
    assert out["workload"]["rows"] == 40 and out["workload"]["image_side"] == 40
    assert out["workload"]["tokens"] == 40 * 40
    assert {(o["model"], o["method"]) for o in out["ranked"]} == {("mobilenet_v2", "full"),
                                                                 ("mobilenet_v2", "frozen")}
    # 40 px lies between the profiled sides: latency between the two measured ones
    lat = sorted(full["inference"]["latency_ms"].values())
    got = next(o for o in out["ranked"] if o["method"] == "full")["latency_ms"]
    assert lat[0] - 1e-6 <= got <= lat[1] + 1e-6
    text = run_taskfit(["advise", "--task", "text_classification", "--rows", "100", "--profile",
                        str(tmp_path / "p.json"), "--json"])
    rejected = json.loads(text.stdout)
    assert not rejected["ranked"] and all("image model cannot train task text_classification" in o["rejected"]
                                          for o in rejected["rejected"])
    bad = run_taskfit(["advise", "--task", "image_classification", "--data", str(folder / next(
        p.name for p in folder.iterdir() if p.is_dir())), "--profile", str(tmp_path / "p.json")], ok=False)
    assert bad.returncode != 0 and "needs at least 2 class sub-folders" in bad.stderr
    table = tmp_path / "images.csv"
    table.write_text("path,label\na.png,x\n", encoding="utf-8")
    wrong = run_taskfit(["advise", "--task", "image_classification", "--data", str(table), "--profile",
                         str(tmp_path / "p.json")], ok=False)
    assert wrong.returncode != 0 and "needs an 'image' column of image paths; its columns are ['path', 'label']" \
        in wrong.stderr
