"""Resumable checkpoints and atomic writes."""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from taskfit.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
    trainable_state,
)
from taskfit.utils.io import atomic_save, atomic_write_json, atomic_write_text, read_jsonl


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _tmp_files(d: Path) -> list[Path]:
    return sorted(d.rglob(".*.tmp"))


def test_keeps_only_the_newest_and_latest_points_at_it(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoints"
    for step in (5, 10, 15, 20, 100):
        path = save_checkpoint(ckpt, step, {"step": step}, keep=2)
        assert path.is_file()
        assert (ckpt / "latest").read_text().strip() == path.name
        assert latest_checkpoint(ckpt) == path
    names = sorted(p.name for p in ckpt.glob("step-*.pt"))
    # Zero-padded names sort numerically: step 100 is newer than step 20.
    assert names == ["step-00000020.pt", "step-00000100.pt"]
    assert load_checkpoint(ckpt / "step-00000100.pt") == {"step": 100}
    assert _tmp_files(tmp_path) == []


def test_keep_one(tmp_path: Path) -> None:
    for step in range(1, 5):
        save_checkpoint(tmp_path, step, {"s": step}, keep=1)
    assert [p.name for p in tmp_path.glob("step-*.pt")] == ["step-00000004.pt"]


def test_latest_falls_back_when_pointer_is_stale(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None
    save_checkpoint(tmp_path, 1, {}, keep=5)
    newest = save_checkpoint(tmp_path, 2, {}, keep=5)
    (tmp_path / "latest").write_text("step-00000099.pt\n")  # points at a file that is gone
    assert latest_checkpoint(tmp_path) == newest


def test_checkpoint_round_trips_tensors_and_numpy(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 3)
    model.bias.requires_grad_(False)
    state = {"trainable": trainable_state(model), "pos": {"epoch": 1, "batch": 2, "step": 3},
             "rng": rng_state()}
    assert set(state["trainable"]) == {"weight"}  # frozen parameters are not stored
    path = save_checkpoint(tmp_path, 3, state, keep=2)
    back = load_checkpoint(path)
    assert torch.equal(back["trainable"]["weight"], model.weight.detach())
    assert back["pos"] == state["pos"]


def test_rng_state_round_trip_reproduces_draws(tmp_path: Path) -> None:
    torch.manual_seed(11)
    random.seed(11)
    np.random.seed(11)
    torch.rand(3)  # advance away from the seed so that a reseed would not pass by accident
    saved = rng_state()
    expected = (torch.rand(5), random.random(), np.random.rand(3))
    # Go through the checkpoint file as a resume would.
    path = save_checkpoint(tmp_path, 1, {"rng": saved}, keep=1)
    torch.rand(100)
    random.random()
    np.random.rand(7)
    set_rng_state(load_checkpoint(path)["rng"])
    got = (torch.rand(5), random.random(), np.random.rand(3))
    assert torch.equal(got[0], expected[0])
    assert got[1] == expected[1]
    assert np.array_equal(got[2], expected[2])


def test_trainable_state_is_a_copy() -> None:
    model = torch.nn.Linear(2, 2)
    snap = trainable_state(model)
    with torch.no_grad():
        model.weight.add_(1.0)
    assert not torch.equal(snap["weight"], model.weight)


def test_atomic_writes_leave_no_temp_files(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "héllo 你好\n")
    atomic_write_json(tmp_path / "sub" / "b.json", {"label": "正面", "x": np.float32(0.5), "p": tmp_path})
    atomic_save(tmp_path / "c.pt", lambda p: torch.save({"x": torch.ones(2)}, p))
    assert _tmp_files(tmp_path) == []
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo 你好\n"
    text = (tmp_path / "sub" / "b.json").read_text(encoding="utf-8")
    assert "正面" in text  # not \u-escaped
    assert torch.equal(torch.load(tmp_path / "c.pt")["x"], torch.ones(2))


def test_failed_write_keeps_old_file_and_cleans_up(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    atomic_write_text(target, "good")

    def broken(p: Path) -> None:
        p.write_text("half-writ")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save(target, broken)
    assert target.read_text() == "good"
    assert _tmp_files(tmp_path) == []


def test_atomic_file_mode_follows_umask(tmp_path: Path, umask_022: None) -> None:
    for write in (lambda p: atomic_write_text(p, "x"), lambda p: atomic_save(p, lambda q: q.write_bytes(b"x"))):
        path = tmp_path / f"f{len(list(tmp_path.iterdir()))}"
        write(path)
        mode = stat.S_IMODE(path.stat().st_mode)
        # A plain open() under umask 022 gives 0644; mkstemp's 0600 would hide the file from other users.
        assert mode == 0o644, oct(mode)
    ckpt = save_checkpoint(tmp_path / "ck", 1, {}, keep=1)
    assert stat.S_IMODE(ckpt.stat().st_mode) == 0o644


def test_read_jsonl_ignores_torn_tail(tmp_path: Path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"ste', encoding="utf-8")
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
    assert read_jsonl(tmp_path / "missing.jsonl") == []


def test_trainable_state_keeps_running_statistics_of_trained_modules() -> None:
    """BatchNorm running statistics move during training: resume and best.pt must carry them, but only for
    modules that train (frozen modules' buffers come back from the pretrained weights)."""
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    for p in model[2].parameters():
        p.requires_grad_(False)
    model.train()(torch.randn(8, 3, 5, 5))
    state = trainable_state(model)
    assert {"1.running_mean", "1.running_var", "1.num_batches_tracked"} <= set(state)
    assert not any(k.startswith("2.") for k in state)
    assert torch.equal(state["1.running_mean"], model[1].running_mean)
    fresh = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4), torch.nn.BatchNorm2d(4))
    fresh.load_state_dict(state, strict=False)
    assert torch.equal(fresh[1].running_var, model[1].running_var)
