"""Real small run directories for the console tests: two tiny-BERT runs trained through the pipeline.

* ``情感-run`` (Chinese name): zh reviews with a ``region`` group column, fairness evaluation, validation every 3
  steps, and ``explanations.json`` written by the real integrated-gradients explainer;
* ``bbc-lora``: BBC news topics with LoRA, 8 steps.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from conftest import tiny_recipe

ZH_RUN = "情感-run"
EN_RUN = "bbc-lora"
GROUPED_CSV = "zh-grouped.csv"  # beside the runs folder: the zh rows plus the region column
_BUILT: dict[Path, Path] = {}


def shared_runs(factory: pytest.TempPathFactory, model_dir: Path, zh_csv: Path, bbc_csv: Path) -> Path:
    """The two runs, trained once per test session (both console test modules read them)."""
    if model_dir not in _BUILT:
        root = factory.mktemp("console-runs") / "runs"
        build_runs(root, model_dir, zh_csv, bbc_csv)
        _BUILT[model_dir] = root
    return _BUILT[model_dir]


def build_runs(root: Path, model_dir: Path, zh_csv: Path, bbc_csv: Path) -> dict[str, Path]:
    """Train both runs under ``root`` (about 10 s on 2 cores) and return name → run directory."""
    from taskfit.config import parse_recipe
    from taskfit.inference import Predictor
    from taskfit.pipeline import train_recipe
    from taskfit.trust.explain import explain_texts

    root.mkdir(parents=True, exist_ok=True)
    frame = pd.read_csv(zh_csv)
    frame["region"] = ["north" if i % 2 else "south" for i in range(len(frame))]  # a group column for fairness
    grouped = root.parent / GROUPED_CSV
    frame.to_csv(grouped, index=False)

    zh = tiny_recipe(grouped, model_dir, root, eval_every=3, max_steps=9)
    zh["output"]["name"] = ZH_RUN
    zh["fairness"] = {"group_column": "region"}
    en = tiny_recipe(bbc_csv, model_dir, root, eval_every=4, max_steps=8, lr=5e-3)
    en["output"]["name"] = EN_RUN
    en["method"] = {"name": "lora", "r": 4}
    dirs = {ZH_RUN: train_recipe(parse_recipe(zh)).run_dir, EN_RUN: train_recipe(parse_recipe(en)).run_dir}

    p = Predictor.load(dirs[ZH_RUN])
    items = explain_texts(p.task, p.model, p.processor, p.labels, ["质量很好，很满意", "太差了，不推荐"], p.device,
                          steps=4)
    (dirs[ZH_RUN] / "explanations.json").write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    return dirs
