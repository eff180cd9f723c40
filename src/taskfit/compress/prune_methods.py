"""The pruning methods of ``taskfit compress``: ``prune-heads``, ``prune-ffn``, ``prune-structured`` and
``prune-magnitude`` (algorithms in :mod:`taskfit.compress.prune`, recovery in :mod:`taskfit.compress.recovery`).

Options (``taskfit compress --sparsity 0.3 --recovery-steps 50 --importance taylor --scope global``):

- ``sparsity``: fraction removed, in [0, 1): of all attention heads, of each layer's FFN neurons, both
  (``prune-structured``), or of the encoder's Linear weights (``prune-magnitude``).
- ``recovery_steps``: optimiser steps of recovery fine-tuning on the run's training rows (0: none).
- ``importance``: ``taylor`` (gradient × gate on training rows) or ``magnitude`` (weights only), structured only.
- ``scope``: ``global`` or ``layer`` ranking of weights, ``prune-magnitude`` only.

The pruned model before recovery is kept in the work directory (``<out>.work/``) with the recovery's
checkpoints until the method finishes, so an interrupted command resumes when run again with the same options.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch

from taskfit.compress import prune as P
from taskfit.compress.methods import COMPRESSORS, BuildContext, Compressor
from taskfit.compress.recovery import check_recipe, load_training_rows, recover
from taskfit.errors import ConfigError
from taskfit.utils.io import atomic_write_json

DEFAULT_RECOVERY_STEPS = 50
IMPORTANCE_BATCHES = 8  # × 16 rows: enough for a stable ranking of heads and neurons on MiniLM (see docs)
STRUCTURED = {"prune-heads": (True, False), "prune-ffn": (False, True), "prune-structured": (True, True)}


def _check(method: str) -> Any:
    def check(source_run: Path, src: Path, meta: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        P.check_model(src, method)
        opts = {"sparsity": P.check_fraction(options.get("sparsity", 0.3), method),
                "recovery_steps": options.get("recovery_steps", DEFAULT_RECOVERY_STEPS)}
        if not isinstance(opts["recovery_steps"], int) or opts["recovery_steps"] < 0:
            raise ConfigError(f"--recovery-steps must be a whole number ≥ 0 (0: no recovery); got "
                              f"{opts['recovery_steps']!r}.")
        if method == "prune-magnitude":
            opts["scope"] = options.get("scope") or "global"
            if opts["scope"] not in P.SCOPES:
                raise ConfigError(f"--scope must be one of {', '.join(P.SCOPES)}; got {opts['scope']!r}.")
        else:
            opts["importance"] = options.get("importance") or "taylor"
            if opts["importance"] not in P.IMPORTANCE:
                raise ConfigError(f"--importance must be one of {', '.join(P.IMPORTANCE)}; got "
                                  f"{opts['importance']!r}.")
        needs = [why for why, on in (("Taylor importance", opts.get("importance") == "taylor"),
                                     ("recovery fine-tuning", opts["recovery_steps"] > 0)) if on]
        if needs:
            check_recipe(source_run, method, " and ".join(needs))
        return opts
    return check


def _load(model_dir: Path, heads_pruned: bool) -> Any:
    from transformers import AutoModelForSequenceClassification

    from taskfit.models.pruned import load_pruned

    if heads_pruned:
        return load_pruned(model_dir)
    return AutoModelForSequenceClassification.from_pretrained(model_dir).eval()


def _save(model: Any, dest: Path, heads_pruned: bool) -> Path:
    """Save config + weights; the weights file's path."""
    from taskfit.models.pruned import WEIGHTS, save_pruned

    if heads_pruned:
        save_pruned(model, dest)
        return dest / WEIGHTS
    model.save_pretrained(dest)
    return dest / "model.safetensors"


def _prune(method: str, model: torch.nn.Module, opts: dict[str, Any], rows: Any) -> dict[str, Any]:
    """Prune ``model`` in place; the facts to report."""
    info: dict[str, Any] = {"method": method, "sparsity_requested": opts["sparsity"],
                            "params_before": P.count_params(model)}
    if method == "prune-magnitude":
        info.update(scope=opts["scope"], **P.magnitude_prune(model, opts["sparsity"], opts["scope"]))
    else:
        do_heads, do_ffn = STRUCTURED[method]
        info["importance"] = opts["importance"]
        if opts["importance"] == "taylor":
            heads, neurons = P.taylor_importance(model, rows.task, rows.train, IMPORTANCE_BATCHES)
            info["importance_rows"] = min(len(rows.train), IMPORTANCE_BATCHES * 16)
        else:
            heads, neurons = P.magnitude_importance(model)
        info["heads_before"] = [len(h) for h in heads]
        info["intermediate_before"] = len(neurons[0])
        if do_heads:
            info["heads_per_layer"] = P.remove_heads(model, P.choose_heads(heads, opts["sparsity"]))
        if do_ffn:
            info["intermediate_size"] = P.remove_neurons(model, P.choose_neurons(neurons, opts["sparsity"]))
    info["params_after"] = P.count_params(model)
    return info


def _build(method: str) -> Any:
    def build(src: Path, dest: Path, meta: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
        opts, work = ctx.options, ctx.work_dir
        heads_pruned = method in ("prune-heads", "prune-structured")
        state = {"source": str(src.resolve()), "source_mtime": (src / "taskfit.json").stat().st_mtime,
                 "method": method, "options": opts}
        pruned = work / "pruned"
        needs_rows = opts["recovery_steps"] > 0 or opts.get("importance") == "taylor"
        rows = load_training_rows(ctx.source_run, src, meta) if needs_rows else None
        saved = json.loads((work / "state.json").read_text()) if (work / "state.json").is_file() else None
        if saved == json.loads(json.dumps(state)) and (pruned / "pruning.json").is_file():
            ctx.note(f"resuming from {work} (same source and options)")
            model = _load(pruned, heads_pruned)
            info = json.loads((pruned / "pruning.json").read_text(encoding="utf-8"))
        else:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            atomic_write_json(work / "state.json", state)
            model = _load(src, False)
            ctx.note(f"{method}: sparsity {opts['sparsity']:g}"
                     + (f", {opts.get('importance')} importance" if "importance" in opts else ""))
            info = _prune(method, model, opts, rows)
            _save(model, pruned, heads_pruned)
            atomic_write_json(pruned / "pruning.json", info)  # last: marks the pruned model complete
        if opts["recovery_steps"] > 0 and rows is not None:
            ctx.note(f"recovery fine-tuning: {opts['recovery_steps']} steps on {len(rows.train)} training rows "
                     "(Ctrl-C keeps a checkpoint; run the same command again to resume)")
            keep = [m for _n, m in P.prunable_linears(model)] if method == "prune-magnitude" else None
            info["recovery"] = recover(model, rows, opts["recovery_steps"], work / "recovery", ctx.progress, keep)
        if method == "prune-magnitude":
            info.update({k: v for k, v in P.sparsity_report(model).items() if k != "per_linear"})
        weights = _save(model, dest, heads_pruned)
        info["weights_mb"] = round(weights.stat().st_size / 1e6, 2)
        info["weights_zlib_mb"] = P.zlib_mb(weights)
        shutil.rmtree(work, ignore_errors=True)
        return {"backend": "pruned", "pruning": info} if heads_pruned else {"pruning": info}
    return build


_DESCRIPTIONS = {
    "prune-heads": "structured pruning of attention heads (global ranking), physically removed",
    "prune-ffn": "structured pruning of FFN neurons (same fraction per layer), physically removed",
    "prune-structured": "prune-heads and prune-ffn at the same fraction",
    "prune-magnitude": "unstructured magnitude pruning of the encoder's Linear weights (zeros; not faster)",
}
_OPTIONS = {"prune-magnitude": ("sparsity", "recovery_steps", "scope")}

for _name, _desc in _DESCRIPTIONS.items():
    COMPRESSORS.register(_name)(Compressor(
        _name, _desc, _build(_name), options=_OPTIONS.get(_name, ("sparsity", "recovery_steps", "importance")),
        check=_check(_name), context=True))
