"""``taskfit compress RUN_DIR --method merge``: a plain transformers model rebuilt from a run's LoRA adapter.

taskfit already merges LoRA into the weights when it saves a run (``methods/lora.py`` ``merge_and_unload``),
so ``RUN_DIR/model`` is plain. What may still hold adapters is the PEFT-format adapter saved beside it
(``RUN_DIR/adapter/``, written when ``method.save_adapter`` is on, the default) or a model directory saved in
PEFT format (``adapter_config.json`` inside it). This method loads the base model the adapter names (the
run's ``model.name``, else the adapter's ``base_model_name_or_path``), builds the task head, loads the
adapter and its head with PEFT, folds the low-rank updates into the weights (``merge_and_unload``) and saves
a model with no PEFT parts, which ``taskfit predict`` serves without importing peft. When the run also holds
a merged model, both are compared on held-out rows and the largest logit difference is reported (a check
that the adapter and the served model are the same model). A run with nothing to merge is an
IncompatibleError, never a copy that claims to have merged something.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskfit.compress.methods import COMPRESSORS, BuildContext, Compressor
from taskfit.errors import IncompatibleError
from taskfit.tasks import TASKS

ADAPTER_CONFIG = "adapter_config.json"
COMPARE_ROWS = 64


def find_adapter(source_run: Path, src: Path) -> Path | None:
    """The PEFT adapter directory: the model directory itself when saved with adapters, else RUN_DIR/adapter."""
    return next((d for d in (src, source_run / "adapter") if (d / ADAPTER_CONFIG).is_file()), None)


def base_model_of(source_run: Path, adapter: Path) -> Path:
    """The base model the adapter was trained on: the run recipe's model.name, else the adapter's own record."""
    from taskfit.compress.recovery import recipe_of
    from taskfit.config import load_recipe
    from taskfit.models import resolve_model

    recipe = recipe_of(source_run)
    if recipe is not None:
        return resolve_model(load_recipe(recipe).model.name)
    named = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not named:
        raise IncompatibleError(f"{str(adapter)!r} does not name its base model and {str(source_run)!r} has no "
                                "recipe.yaml; cannot rebuild the model to merge into.")
    return resolve_model(str(named))


def _check(source_run: Path, src: Path, meta: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    adapter = find_adapter(source_run, src)
    if adapter is None:
        method = (meta.get("method") or {}).get("name", "?")
        raise IncompatibleError(
            f"{str(source_run)!r} holds no adapter to merge: its model/ is plain transformers weights (method "
            f"{method!r}; taskfit merges LoRA into the weights when it saves a run) and there is no adapter/ "
            f"directory with {ADAPTER_CONFIG} beside it. Serve the run's model/ as it is; --method merge is for "
            "runs saved with method.save_adapter=true or model directories saved in PEFT format.")
    base_model_of(source_run, adapter)  # a missing base model fails here, before any work
    return {}


def _texts(source_run: Path, meta: dict[str, Any]) -> list[str]:
    """Held-out texts to compare the two models on (a few fixed sentences when the run has no recipe)."""
    from taskfit.errors import ConfigError
    from taskfit.inference import held_out_rows

    task = TASKS.get(meta["task"]).from_meta(meta)
    try:
        frame, _ = held_out_rows(source_run, task, meta)
        return [str(t) for t in frame[task.text].head(COMPARE_ROWS)]
    except ConfigError:
        return ["The central bank raised interest rates again.", "球队在决赛中以二比一获胜。",
                "The new phone's battery lasts two days.", "这部电影的剧情很感人。"]


def _logits(model: torch.nn.Module, tokenizer: Any, texts: list[str]) -> np.ndarray:
    enc = tokenizer(texts, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.inference_mode():
        return model(**enc).logits.float().numpy()  # type: ignore[no-any-return]


def _build(src: Path, dest: Path, meta: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    adapter = find_adapter(ctx.source_run, src)
    assert adapter is not None  # checked by _check before any work
    base = base_model_of(ctx.source_run, adapter)
    task = TASKS.get(meta["task"]).from_meta(meta)
    model, _heads = task.build_model(base, list(meta.get("labels") or []), "eager")
    peft_cfg = json.loads((adapter / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    ctx.note(f"merging {peft_cfg.get('peft_type', 'adapter')} adapter {adapter} into {base}")
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload().eval()
    for f in dest.glob("adapter_*"):  # copied from a PEFT-format model dir: the merged model has no adapter
        f.unlink()
    merged.save_pretrained(dest)
    info: dict[str, Any] = {"adapter": str(adapter), "base_model": str(base),
                            "peft_type": peft_cfg.get("peft_type"), "r": peft_cfg.get("r"),
                            "target_modules": peft_cfg.get("target_modules")}
    if any((src / w).is_file() for w in ("model.safetensors", "pytorch_model.bin")):
        texts = _texts(ctx.source_run, meta)
        tok = AutoTokenizer.from_pretrained(src)
        served = AutoModelForSequenceClassification.from_pretrained(src).eval()
        diff = float(np.abs(_logits(merged, tok, texts) - _logits(served, tok, texts)).max())
        info.update(compared_with=str(src), compared_rows=len(texts), max_abs_logit_diff=diff)
        ctx.note(f"largest logit difference to {src} on {len(texts)} rows: {diff:.2e}")
    return {"merge": info}


COMPRESSORS.register("merge")(Compressor(
    "merge", "a plain model rebuilt from the run's saved LoRA adapter (PEFT merge_and_unload), checked against "
    "the run's merged model", _build, check=_check, context=True))
