"""Resolving model names to local Hugging Face directories, offline first."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskfit.errors import ModelNotFoundError
from taskfit.models import list_models, resolve_model
from taskfit.models.resolve import ALIASES, PACKAGED


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.mark.parametrize("name", ["all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2"])
def test_packaged_name_and_aliases(name: str, offline: None) -> None:
    path = resolve_model(name)
    assert (path / "config.json").is_file()
    assert path == resolve_model("all-MiniLM-L6-v2")
    # A usable model directory also holds weights and a tokenizer.
    assert any(path.glob("*.safetensors")) or any(path.glob("*.bin"))
    assert any(path.glob("tokenizer*")) or (path / "vocab.txt").is_file()


def test_every_alias_points_at_a_packaged_model() -> None:
    assert set(ALIASES.values()) <= set(PACKAGED)


def test_local_directory(tiny_model_dir: Path, offline: None, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_model(str(tiny_model_dir)) == tiny_model_dir.resolve()
    # Relative paths resolve against the current directory.
    monkeypatch.chdir(tiny_model_dir.parent)
    assert resolve_model(tiny_model_dir.name) == tiny_model_dir.resolve()


def test_unknown_name_offline_lists_packaged_models(offline: None, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # so the name cannot accidentally be a directory
    for name in ("no-such-model", "someorg/no-such-model"):
        with pytest.raises(ModelNotFoundError) as info:
            resolve_model(name)
        msg = str(info.value)
        assert repr(name) in msg
        assert "all-MiniLM-L6-v2" in msg
        assert "local" in msg and "directory" in msg
        assert "HF_HUB_OFFLINE=1" in msg


def test_path_without_config_json(tmp_path: Path, offline: None) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelNotFoundError, match=r"config\.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(ModelNotFoundError, match="not a Hugging Face model directory"):
        resolve_model(str(tmp_path / "model.safetensors"))


def test_list_models_reports_install_state() -> None:
    rows = [r for r in list_models() if r["source"] == "packaged"]  # the HF cache may hold more
    assert [r["name"] for r in rows] == list(PACKAGED)
    minilm = next(r for r in rows if r["name"] == "all-MiniLM-L6-v2")
    assert Path(minilm["path"]).is_dir()
    assert float(minilm["size_mb"]) > 10  # real weights (22.7M params), not a stub
