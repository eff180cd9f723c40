"""What every process of a federation needs, built once per process from one *spec* file.

The coordinator (``taskfit federate``) writes ``federated/spec.json`` in the run directory: the resolved
recipe, the run directory and test-only fault settings. The ServerApp and every ClientApp — threads and
Ray actors in simulation, ``flwr-serverapp`` / ``flwr-clientapp`` processes in deployment — load it with
:func:`load_context`, which reads and tokenises the data, builds the model with the recipe's method and
recomputes the client shares (a pure function of the rows and the seed, so no row list travels). The result
is cached per process: a Ray actor that runs three clients builds the model once and swaps in each
client's trainable weights.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from taskfit.config import FederatedConfig, Recipe, parse_recipe
from taskfit.data import Splits
from taskfit.federated.partition import partition_rows
from taskfit.methods import METHODS
from taskfit.pipeline import attention_kernel, prepare
from taskfit.tasks import Task
from taskfit.tasks.base import Encoded
from taskfit.train.checkpoint import trainable_state
from taskfit.trust import mask_pii

SPEC_NAME = "spec.json"


@dataclass
class FedContext:
    """One process's view of the federation.

    Attributes:
        recipe: the resolved recipe.
        fed: its federated block (defaults filled in).
        run_dir: the run directory (the server writes ``federated/`` there).
        task, splits, processor: as :func:`taskfit.pipeline.prepare` returns them.
        encoded: split name → encoded rows (train holds every client's rows).
        shares: per client, the positions of its rows in ``encoded["train"]``.
        owners: partition value → client (``partition: column``), else None.
        model: the model with the method applied (LoRA adapters, frozen backbone...).
        head_names: the head's top-level modules (own learning rate).
        faults: partition id → {"round": r, "how": "raise" | "exit"} (tests only).
        dp_states: client → DP accountant state after its last local round (handed to Flower's node state).
    """

    recipe: Recipe
    fed: FederatedConfig
    run_dir: Path
    task: Task
    splits: Splits
    processor: Any
    encoded: dict[str, Encoded]
    shares: list[np.ndarray]
    owners: dict[str, int] | None
    model: torch.nn.Module
    head_names: list[str]
    faults: dict[int, dict[str, Any]] = field(default_factory=dict)
    dp_states: dict[int, dict[str, Any]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client_rows(self, client: int) -> Encoded:
        """The encoded training rows of one client."""
        return subset(self.encoded["train"], self.shares[client])

    def global_state(self) -> dict[str, torch.Tensor]:
        """The tensors a round exchanges: trainable parameters (and buffers of trainable modules)."""
        return {k: v.cpu() for k, v in trainable_state(self.model).items()}

    def load_state(self, state: dict[str, torch.Tensor]) -> None:
        """Put exchanged tensors into the model (the frozen rest is the same pretrained weights everywhere)."""
        missing = set(self.global_state()) - set(state)
        if missing:
            raise RuntimeError(f"federated update lacks {len(missing)} tensor(s), e.g. {sorted(missing)[:3]}")
        self.model.load_state_dict(state, strict=False)


def subset(enc: Encoded, idx: np.ndarray) -> Encoded:
    """Rows ``idx`` of an encoded split (per-row lists and arrays alike)."""
    fields: dict[str, Any] = {}
    for key, values in enc.fields.items():
        fields[key] = values[idx] if isinstance(values, (np.ndarray, torch.Tensor)) else [values[i] for i in idx]
    return Encoded(fields, enc.lengths[idx], enc.rows[idx], enc.labelled, dict(enc.extra))


def write_spec(run_dir: Path, recipe: Recipe, faults: dict[int, dict[str, Any]] | None = None) -> Path:
    """Write ``run_dir/federated/spec.json`` (data paths made absolute) and return its path."""
    pinned = recipe.model_copy(deep=True)
    for key in ("train", "valid", "test"):
        p = getattr(pinned.data, key)
        if p is not None:
            setattr(pinned.data, key, Path(p).resolve())
    if pinned.federated is None:
        pinned.federated = FederatedConfig()
    path = run_dir / "federated" / SPEC_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    spec = {"recipe": pinned.to_yaml(), "run_dir": str(run_dir.resolve()),
            "faults": {str(k): v for k, v in (faults or {}).items()}}
    path.write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")
    return path


_CACHE: dict[str, FedContext] = {}
_CACHE_LOCK = threading.Lock()


def load_context(spec_path: str | Path) -> FedContext:
    """The process-wide :class:`FedContext` of a spec file (built on first use)."""
    key = str(Path(spec_path).resolve())
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = _build(Path(key))
        return _CACHE[key]


def _build(spec_path: Path) -> FedContext:
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    recipe = parse_recipe(yaml.safe_load(spec["recipe"]))
    fed = recipe.federated or FederatedConfig()
    if recipe.train.threads:
        torch.set_num_threads(recipe.train.threads)
    elif fed.mode == "processes":
        # Every client process trains at the same time on this machine: share the cores rather than have
        # each spin all of them (oversubscribed torch threads made steps 20x slower on a busy 2-core box).
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // fed.clients))
    task, splits, model_dir, processor = prepare(recipe)
    mask_pii(recipe, task, splits)  # as a plain run does: before anything is encoded
    encoded = {s: task.encode(df, processor, splits.labels) for s, df in splits.frames.items()}
    shares, owners = partition_rows(splits.frames["train"], fed, task.label if splits.labels else None,
                                    recipe.train.seed, str(recipe.data.train))
    torch.manual_seed(recipe.train.seed)  # same head and adapter init in every process
    model, head_names = task.build_model(model_dir, splits.labels, attention_kernel(recipe.train.attention))
    model = METHODS.get(recipe.method.name).apply(model, recipe.method, head_names)
    faults = {int(k): v for k, v in spec.get("faults", {}).items()}
    return FedContext(recipe, fed, Path(spec["run_dir"]), task, splits, processor, encoded, shares, owners,
                      model, head_names, faults)


def clear_cache() -> None:
    """Forget cached contexts (the coordinator calls this when a run ends, to free the models)."""
    with _CACHE_LOCK:
        _CACHE.clear()
