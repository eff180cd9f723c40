"""``taskfit compress --method distill``: the run's model cut to fewer layers and distilled from the full one.

The same training as ``taskfit distill RUN --layers N`` (:mod:`taskfit.compress.distill`): the student is the
model's embeddings, every k-th transformer layer (ending with the top one) and its head, trained on the run's
own training rows against the model's precomputed logits, with the run's ``train:`` block. As a compression
method it can start a chain (``--method distill,onnx-int8``), which is how a model gets past what int8 alone
gives on CPUs without fast int8 instructions (BENCHMARKS.md "Compression").

Options: ``layers``, the layers the student keeps, 1 ≤ N < the model's (default: half, rounded up);
``temperature`` (> 0, default 2) and ``alpha`` (the hard-label loss's weight in [0, 1], default 0.5), as in
``taskfit distill``. The student's run directory lives in the work directory (``<out>.work/``) until the
method finishes, so an interrupted command resumes its training when run again with the same options.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

from taskfit.compress.distill_core import KD_LOSSES
from taskfit.compress.methods import COMPRESSORS, BuildContext, Compressor
from taskfit.compress.recovery import check_recipe
from taskfit.errors import ConfigError, IncompatibleError
from taskfit.utils.io import atomic_write_json


def _layer_count(src: Path) -> int:
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    n = cfg.get("num_hidden_layers") or cfg.get("n_layer") or cfg.get("num_layers")
    if not isinstance(n, int):
        raise IncompatibleError(f"compress --method distill cuts a transformer's layers; {src / 'config.json'} names "
                                "no layer count (num_hidden_layers).")
    return n


def _check(source_run: Path, src: Path, meta: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    from taskfit.compress.distill import DistillSpec

    if meta["task"] not in KD_LOSSES:
        raise IncompatibleError(f"compress --method distill works for {', '.join(KD_LOSSES)} runs; this run is "
                                f"{meta['task']!r}.")
    total = _layer_count(src)
    if total < 2:
        raise IncompatibleError(f"the model has {total} layer; distillation to fewer layers needs at least 2.")
    layers = options.get("layers", (total + 1) // 2)
    if not isinstance(layers, int) or isinstance(layers, bool) or not 1 <= layers < total:
        raise ConfigError(f"--layers must be a whole number from 1 to {total - 1} (the model has {total} layers); "
                          f"got {layers!r}.")
    for name in ("temperature", "alpha"):
        value = options.get(name, 0.0)
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise ConfigError(f"--{name} must be a number, got {value!r}.")
    spec = DistillSpec(str(source_run), layers=layers)  # defaults and range checks: taskfit distill's
    spec = replace(spec, temperature=float(options.get("temperature", spec.temperature)),
                   alpha=float(options.get("alpha", spec.alpha)))
    spec.check()
    check_recipe(source_run, "distill", "the student's training")
    return {"layers": layers, "temperature": spec.temperature, "alpha": spec.alpha}


def _build(src: Path, dest: Path, meta: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    from taskfit.compress.distill import SPEC_FILE, distill, resume_distill

    work, layers = ctx.work_dir, int(ctx.options["layers"])
    temperature, alpha = ctx.options["temperature"], ctx.options["alpha"]  # filled in by _check
    student = work / "student"
    state = {"source": str(src.resolve()), "source_mtime": (src / "taskfit.json").stat().st_mtime,
             "layers": layers, "temperature": temperature, "alpha": alpha}
    saved = json.loads((work / "state.json").read_text()) if (work / "state.json").is_file() else None
    resumable = (student / SPEC_FILE).is_file() and (student / "checkpoints").is_dir()
    if saved == json.loads(json.dumps(state)) and resumable:
        ctx.note(f"resuming the student's training from {student} (same source and options)")
        resume_distill(student, measure=False, progress=ctx.progress)
    else:
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        atomic_write_json(work / "state.json", state)
        ctx.note(f"distill: {layers} of {_layer_count(src)} layers, trained against the model's logits (T "
                 f"{temperature:g}, alpha {alpha:g}) on the run's training rows (Ctrl-C keeps a checkpoint; run the "
                 "same command again to resume)")
        # The teacher is the run holding ``src`` (its recipe.yaml names the training rows).
        distill(ctx.source_run, layers=layers, temperature=temperature, alpha=alpha, out=student, measure=False,
                overwrite=True, progress=ctx.progress)
    for f in (student / "model").iterdir():  # config.json says the new layer count; taskfit.json is rewritten
        if f.is_file() and f.name != "taskfit.json":
            shutil.copy2(f, dest / f.name)
    results = json.loads((student / "results.json").read_text(encoding="utf-8"))
    block = results["distillation"]
    info = {"layers": layers, "layers_before": _layer_count(src), "kept_layers": block.get("kept_layers"),
            "temperature": block["temperature"], "alpha": block["alpha"], "params_before": block["teacher_params"],
            "params_after": block["student_params"], "steps": results["timing"]["steps"],
            "train_s": results["timing"]["train_s"], "valid_after": results["valid"]}
    shutil.rmtree(work, ignore_errors=True)
    return {"distillation": info}


COMPRESSORS.register("distill")(Compressor(
    "distill", "the model cut to fewer layers (--layers, default half) and distilled from the full model on the "
    "run's training rows", _build, options=("layers", "temperature", "alpha"), check=_check, context=True))
