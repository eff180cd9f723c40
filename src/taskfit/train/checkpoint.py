"""Resumable checkpoints, written atomically: a kill -9 at any instant leaves the last good one intact.

A checkpoint holds what exact resumption needs: the trainable weights (frozen weights are rebuilt
from the pretrained model), optimiser and scheduler state, the loop position (epoch, batch,
step), early-stopping state and every RNG state. ``latest`` is a small pointer file replaced last.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskfit.utils.io import atomic_save, atomic_write_text


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What training changes: the trainable parameters, plus the buffers (e.g. BatchNorm running statistics)
    of every module that has a trainable parameter. Small for LoRA / frozen; frozen weights are rebuilt from
    the pretrained model."""
    state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    for name, buf in _trained_buffers(model):
        state[name] = buf.detach().clone()
    return state


def _trained_buffers(model: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    out = []
    for prefix, module in model.named_modules():
        if any(p.requires_grad for p in module.parameters(recurse=False)):
            out += list(module.named_buffers(prefix=prefix, recurse=False))
    return out


def trainable_keys(model: torch.nn.Module) -> set[str]:
    """The state-dict names :func:`trainable_state` would hold (also for a sharded model)."""
    return {n for n, p in model.named_parameters() if p.requires_grad} | {n for n, _ in _trained_buffers(model)}


def save_checkpoint(ckpt_dir: Path, step: int, state: dict[str, Any], keep: int) -> Path:
    """Write ``step-<step>.pt`` atomically, point ``latest`` at it, prune old ones."""
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    path = ckpt_dir / f"step-{step:08d}.pt"
    atomic_save(path, lambda p: torch.save(state, p))
    atomic_write_text(ckpt_dir / "latest", path.name + "\n")
    for old in sorted(ckpt_dir.glob("step-*.pt"))[:-keep]:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(ckpt_dir: Path) -> Path | None:
    pointer = ckpt_dir / "latest"
    if pointer.is_file():
        path = ckpt_dir / pointer.read_text().strip()
        if path.is_file():
            return path
    found = sorted(ckpt_dir.glob("step-*.pt"))
    return found[-1] if found else None


def load_checkpoint(path: Path) -> dict[str, Any]:
    # weights_only=False: the state holds RNG tuples and numpy arrays; the file is our own output.
    return torch.load(path, map_location="cpu", weights_only=False)

