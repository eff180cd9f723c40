"""Instruction / chat datasets from packages, written as ``prompt,response`` CSV for the generation task.

| name | source package | rows | licence |
|---|---|---|---|
| chat_en | chatterbot-corpus 1.3.3 ``data/english/*.yml`` (21 topics) | 1,176 distinct pairs | BSD-3-Clause |
| chat_zh | chatterbot-corpus 1.3.3 ``data/chinese/*.yml`` (17 topics) | 550 distinct pairs | BSD-3-Clause |

Each corpus file holds short dialogues (lists of turns); every two consecutive turns become one
(prompt, response) pair, so a three-turn dialogue gives two pairs. The same prompt can have several
responses (e.g. "Hi, how is it going?" → "Good" / "Fine" / "Okay"): exact match on held-out prompts
is therefore bounded well below 1 and perplexity is the steadier measure.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from taskfit.data.packaged import PackagedDataset, package_dir, register_dataset
from taskfit.data.packaged.text import write_rows_csv

_INSTALL = "pip install chatterbot-corpus==1.3.3"
LICENCE = "BSD-3-Clause (chatterbot-corpus, © Gunther Cox)"


def _turn(value: Any) -> str | None:
    # YAML reads bare "yes" / "no" / numbers as bool / int; keep the text the author wrote.
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (str, int, float)):
        text = " ".join(str(value).split())
        return text or None
    return None


def chatterbot_pairs(language: str) -> list[tuple[str, str]]:
    """(prompt, response) pairs of every dialogue of one chatterbot-corpus language folder."""
    root = package_dir("chatterbot_corpus", _INSTALL) / "data" / language
    pairs: list[tuple[str, str]] = []
    for f in sorted(root.glob("*.yml")):
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for dialogue in doc.get("conversations") or []:
            turns = [_turn(t) for t in dialogue] if isinstance(dialogue, list) else []
            for a, b in itertools.pairwise(turns):
                if a and b:
                    pairs.append((a, b))
    return pairs


def _writer(language: str) -> Callable[[Path, int | None, int], Path]:
    def write(dest: Path, n: int | None, seed: int) -> Path:
        return write_rows_csv(list(chatterbot_pairs(language)), ["prompt", "response"], dest, n, seed)

    return write


def demo_recipe(lr: float = 5e-4) -> dict[str, Any]:
    """A CPU-sized LoRA demo on SmolLM2: short sequences, a few hundred packed steps at most."""
    return {"task": {"name": "generation", "max_new_tokens": 32, "eval_prompts": 16},
            "model": {"name": "SmolLM2-135M-Instruct"}, "method": {"name": "lora", "r": 8, "alpha": 16},
            "data": {"max_length": 256},
            "train": {"lr": lr, "batch_size": 16, "max_steps": 60, "eval_every": 30, "warmup": 0.1}}


register_dataset(PackagedDataset(
    "chat_en", "generation", "en", "English chatbot dialogue pairs, 21 topics (chatterbot-corpus)", LICENCE,
    _writer("english"), recipe=demo_recipe(),
))
register_dataset(PackagedDataset(
    "chat_zh", "generation", "zh", "Chinese chatbot dialogue pairs, 17 topics (chatterbot-corpus)", LICENCE,
    _writer("chinese"), recipe=demo_recipe(),
))
