"""Shared fixtures: a tiny real BERT built from config, and small samples of real packaged data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MAX_WORKERS = 4  # each worker holds its own models (1-3 GB at peak); more than 4 gains little


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): one worker per core, at most MAX_WORKERS. The suite waits on
    subprocesses, servers and single-threaded work (imports, tokenising) much of the time, which a second
    worker fills: 2 workers on 2 cores run it in ~60 % of the one-process time."""
    return max(1, min(MAX_WORKERS, _cores()))


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Workers share the cores: each gets its share of torch threads (read when torch starts, before any test
    # imports it; the CLI processes tests start inherit it). xdist sets COLUMNS=80 in workers, which would fix
    # the CLI console's width at import; without it the console is as wide as in a one-process run.
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, _cores() // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))))
    if os.environ.get("COLUMNS") == "80":
        os.environ.pop("COLUMNS")


@pytest.fixture(autouse=True)
def _torch_threads_restored() -> object:
    """Every test leaves torch's thread count as it found it: runs compared across processes (resume after
    kill -9, DDP) need the same thread count on both sides, and some tests pin train.threads=1."""
    import torch

    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 directory (real weights)."""
    from taskfit.models import resolve_model

    return resolve_model("all-MiniLM-L6-v2")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path) -> Path:
    """A 2-layer, 32-wide BERT with a fixed random init and MiniLM's real tokenizer, saved in HF format.

    Same architecture code path as the real model, ~1M parameters, so a training step takes milliseconds.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    out = tmp_path_factory.mktemp("tiny-bert")
    torch.manual_seed(1234)
    cfg = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=64, max_position_embeddings=512)
    BertModel(cfg).save_pretrained(out)
    AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def bbc_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """300 real BBC news rows (5 topics) as text,label CSV."""
    from taskfit.data.packaged import write_dataset

    return write_dataset("bbc_news", tmp_path_factory.mktemp("data") / "bbc.csv", n=300, seed=0)


@pytest.fixture(scope="session")
def minilm_bbc_run(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path, bbc_csv: Path) -> Path:
    """A run directory of real MiniLM trained 20 steps on the 300 BBC rows, shared by the tests that compress,
    prune or distil a real run (they write their outputs beside it or elsewhere, never into it)."""
    import yaml

    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    tmp = tmp_path_factory.mktemp("minilm-bbc")
    recipe = {"data": {"train": str(bbc_csv), "max_length": 64}, "model": {"name": str(minilm_dir)},
              "train": {"max_steps": 20, "batch_size": 16, "lr": 1e-4, "head_lr": 3e-3, "seed": 0},
              "output": {"dir": str(tmp / "runs"), "name": "src"}}
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    return Path(train_recipe(parse_recipe(recipe)).run_dir)


@pytest.fixture(scope="session")
def zh_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """200 real Chinese product reviews (pos/neg) as text,label CSV."""
    from taskfit.data.packaged import write_dataset

    return write_dataset("zh_sentiment", tmp_path_factory.mktemp("data") / "zh.csv", n=200, seed=0)


def tiny_recipe(train: Path, model_dir: Path, out: Path, **train_overrides: object) -> dict:
    """A recipe mapping that trains the tiny model for a few steps."""
    cfg = {"epochs": 1, "lr": 1e-3, "batch_size": 16, "checkpoint_every": 5, "seed": 0}
    cfg.update(train_overrides)
    return {"data": {"train": str(train), "max_length": 64}, "model": {"name": str(model_dir)},
            "method": {"name": "full"}, "train": cfg, "output": {"dir": str(out), "name": "run"}}


def run_taskfit(args: list[str], ok: bool = True, timeout: int = 900, **env: str) -> subprocess.CompletedProcess:
    """Run the ``taskfit`` CLI in a fresh process, offline, with a wide terminal (tables unwrapped); with ``ok``
    assert it succeeded, showing the end of its output when it did not."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", **env}
    res = subprocess.run([sys.executable, "-m", "taskfit", *args], capture_output=True, text=True, env=full_env,
                         timeout=timeout)
    if ok:
        assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    return res


def interrupt_at(step: int) -> object:
    """Training progress callbacks that raise KeyboardInterrupt (a simulated Ctrl-C) at optimiser step ``step``."""
    from taskfit.train import Progress

    class InterruptAt(Progress):
        def step(self, at: int, loss: float, lr: float, samples_per_s: float) -> None:
            if at == step:
                raise KeyboardInterrupt

    return InterruptAt()
