"""``taskfit distill TEACHER_RUN``: train a smaller student classifier from a fine-tuned teacher.

Two sources of targets:

* **teacher run** (a text_classification, multi_label or regression run with its recipe.yaml): the student
  trains on the teacher's own train split (the same deterministic split, so valid/test rows are the teacher's
  too) with ``alpha·CE(labels) + (1−alpha)·T²·KL(teacher ‖ student)`` or its multi_label / regression
  counterpart (:data:`taskfit.compress.distill_core.KD_LOSSES`).
* **pool** (``--pool FILE``): the teacher (a classifier or a generation run) labels unlabelled texts first
  (:mod:`taskfit.compress.distill_pool`); the student trains on the labelled pool with the teacher's argmax as
  hard label and its distribution as soft target.

The student is either another model (``--student NAME_OR_DIR``: a packaged model, a local HF directory or a
tiny config saved as one; a new head) or the teacher cut to ``--layers N`` (every k-th layer, the embeddings,
pooler and head). It is always fully fine-tuned.

**Teacher logits are precomputed once per training row** (eval mode, fp32) and cached in
``RUN_DIR/teacher_logits.npy``, not recomputed every step: the teacher has no dropout at eval time, so its
logits are the same every epoch, and one pass costs 1/epochs of the on-the-fly forwards; the cache also makes
``--resume`` exact without loading the teacher's weights into the resumed process twice. The cost is N × C
floats (a few kB for thousands of rows); the trade-off would flip only with augmentation that changes the
inputs each epoch, which taskfit does not do.

The result is an ordinary run directory (``model/``, recipe.yaml, metrics.jsonl, results.json with a
``distillation`` block, report.html, model_card.md, plus ``distill.json``): ``taskfit predict`` and
``taskfit compress`` take it as they take a trained run.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from taskfit.compress.distill_core import KD_LOSSES, distill_task, layer_student, teacher_logits, with_teacher
from taskfit.compress.distill_pool import (
    DEFAULT_PROMPT,
    LABEL_COLUMN,
    PROBS_COLUMN,
    check_pool,
    label_pool,
    resolve_labels,
    soft_logits,
    teacher_kind,
)
from taskfit.compress.distill_report import finish_run
from taskfit.config import Recipe, load_recipe, parse_recipe
from taskfit.errors import ConfigError, DataError, IncompatibleError
from taskfit.inference import model_dir_of
from taskfit.pipeline import attention_kernel, prepare, run_dir_for
from taskfit.train import Progress, train_loop
from taskfit.trust import mask_pii
from taskfit.utils.io import atomic_save, atomic_write_json, atomic_write_text

SPEC_FILE, LOGITS_FILE, POOL_FILE = "distill.json", "teacher_logits.npy", "pool_labelled.csv"

#: Pool rows the teacher must give each label as its top answer. One is enough: the soft targets carry every
#: label on every row, and a one-row class stays in train (the split holds out only classes with 2+ rows).
MIN_POOL_ROWS = 1

RowProgress = Callable[[str, int, int], None]


@dataclass
class DistillSpec:
    """The distillation settings of a run (``RUN_DIR/distill.json``); everything ``--resume`` needs."""

    teacher: str
    student: str | None = None
    layers: int | None = None
    temperature: float = 2.0
    alpha: float = 0.5
    pool: str | None = None
    labels: list[str] | None = None

    def check(self) -> None:
        """Option errors, all before any work: alpha, T, and exactly one of student / layers."""
        if not 0 <= self.alpha <= 1:
            raise ConfigError(f"--alpha must be in [0, 1] (the weight of the hard-label loss), got {self.alpha}.")
        if not self.temperature > 0:
            raise ConfigError(f"--temperature must be > 0, got {self.temperature}; 1 keeps the teacher's "
                              "probabilities, 2–4 softens them.")
        if (self.student is None) == (self.layers is None):
            raise ConfigError("give exactly one of --student MODEL_OR_DIR (another, smaller model) or --layers N "
                              "(the teacher cut to N of its layers).")
        if self.layers is not None and self.layers < 1:
            raise ConfigError(f"--layers must be at least 1, got {self.layers}.")


def _check_student(student: str, labels: list[str]) -> None:
    """A student that is already a classifier must have the teacher's label count (and a taskfit model its
    labels), or its head cannot take the teacher's distribution."""
    from taskfit.models import resolve_model

    sdir = resolve_model(student)
    meta_path = sdir / "taskfit.json"
    if meta_path.is_file():
        theirs = json.loads(meta_path.read_text(encoding="utf-8")).get("labels") or []
        if theirs != labels:
            raise IncompatibleError(f"student {student!r} was trained for labels {theirs}, the teacher has {labels}; "
                                    "use a student with the same labels or a plain pretrained backbone.")
        return
    cfg = json.loads((sdir / "config.json").read_text(encoding="utf-8"))
    archs = cfg.get("architectures") or []
    n, want = len(cfg.get("id2label") or {}) or cfg.get("num_labels"), len(labels) or 1  # regression: 1 output
    if any("ForSequenceClassification" in a for a in archs) and n and n != want:
        raise IncompatibleError(f"student {student!r} is a classifier with {n} labels, the teacher has "
                                f"{want} ({labels or 'one score'}); use a backbone without a head or one with "
                                f"{want} outputs.")


def _train_block(base: dict[str, Any], epochs: float | None, max_steps: int | None, lr: float | None,
                 batch_size: int | None, seed: int | None) -> dict[str, Any]:
    train = dict(base)
    for key, value in (("epochs", epochs), ("max_steps", max_steps), ("lr", lr), ("batch_size", batch_size),
                       ("seed", seed)):
        if value is not None:
            train[key] = value
    if epochs is not None and max_steps is None:
        train["max_steps"] = None
    return train


def distill(teacher: str | Path, *, student: str | None = None, layers: int | None = None,
            temperature: float = 2.0, alpha: float = 0.5, out: Path | None = None, epochs: float | None = None,
            max_steps: int | None = None, lr: float | None = None, batch_size: int | None = None,
            seed: int | None = None, pool: Path | None = None, text_column: str = "text",
            labels: list[str] | None = None, prompt: str = DEFAULT_PROMPT, measure: bool = True,
            overwrite: bool = False, progress: Progress | None = None,
            on_rows: RowProgress | None = None) -> Path:
    """Distil ``teacher`` into a student run directory; returns the run directory. See the module docstring.

    Raises:
        ConfigError: bad alpha / temperature / layers, both or neither of student and layers, an existing
            ``out`` (without ``overwrite``), a teacher run without recipe.yaml (teacher-run mode).
        IncompatibleError: a teacher task that cannot be distilled, a student with another label count.
        DataError: pool problems (missing file or column, no rows).
    """
    spec = DistillSpec(str(teacher), student, layers, temperature, alpha, str(pool) if pool else None, labels)
    spec.check()
    if pool is not None:
        tdir, meta = teacher_kind(teacher)
        spec.labels = resolve_labels(meta, labels, teacher)
        if meta["task"] == "generation" and layers is not None:
            raise IncompatibleError("--layers cuts a classifier teacher; a generation teacher needs a --student "
                                    "classifier model.")
        check_pool(Path(pool), text_column)
    else:
        tdir = model_dir_of(teacher)
        meta = json.loads((tdir / "taskfit.json").read_text(encoding="utf-8"))
        if meta["task"] not in KD_LOSSES:
            raise IncompatibleError(f"teacher {str(teacher)!r} is a {meta['task']!r} run; distilling a run's own "
                                    f"data works for {', '.join(KD_LOSSES)} teachers.")
        spec.labels = list(meta.get("labels") or [])
    spec.teacher = str(tdir.resolve())
    if student is not None:
        _check_student(student, spec.labels)
    recipe = _student_recipe(spec, tdir, meta, out, pool, text_column, epochs, max_steps, lr, batch_size, seed,
                             overwrite)
    run_dir = recipe.output.dir / str(recipe.output.name)
    if run_dir.exists() and not overwrite:
        raise ConfigError(f"{str(run_dir)!r} already exists; pick another --out, pass --overwrite to replace it, or "
                          f"continue an interrupted distillation with --resume {run_dir}.")
    run_dir = run_dir_for(recipe, resume=False)  # with --overwrite: clears the old directory
    run_dir.mkdir(parents=True)
    atomic_write_json(run_dir / SPEC_FILE, asdict(spec))
    if pool is not None:
        done = label_pool(tdir, Path(pool), text_column, run_dir / POOL_FILE, labels=spec.labels, prompt=prompt,
                          progress=(lambda d, t: on_rows("labelling pool", d, t)) if on_rows else None)
        rare = {k: v for k, v in done.counts.items() if v < MIN_POOL_ROWS}
        if rare:
            raise DataError(f"the teacher gave label(s) {rare} to none of the {done.rows} pool rows, so the student "
                            "has no example of them; give a larger or more varied pool (the labelled rows are in "
                            f"{done.path}).", source=pool, column=text_column)
    atomic_write_text(run_dir / "recipe.yaml", recipe.to_yaml())
    return train_student(run_dir, recipe, spec, resume=False, measure=measure, progress=progress, on_rows=on_rows)


def resume_distill(run_dir: str | Path, *, measure: bool = True, progress: Progress | None = None,
                   on_rows: RowProgress | None = None) -> Path:
    """Continue an interrupted distillation run from its last checkpoint."""
    run_dir = Path(run_dir)
    if not (run_dir / SPEC_FILE).is_file() or not (run_dir / "recipe.yaml").is_file():
        raise ConfigError(f"{str(run_dir)!r} is not a distillation run directory (no {SPEC_FILE} and recipe.yaml in "
                          "it); nothing to resume.")
    spec = DistillSpec(**json.loads((run_dir / SPEC_FILE).read_text(encoding="utf-8")))
    return train_student(run_dir, load_recipe(run_dir / "recipe.yaml"), spec, resume=True, measure=measure,
                         progress=progress, on_rows=on_rows)


def _student_recipe(spec: DistillSpec, tdir: Path, meta: dict[str, Any], out: Path | None, pool: Path | None,
                    text_column: str, epochs: float | None, max_steps: int | None, lr: float | None,
                    batch_size: int | None, seed: int | None, overwrite: bool) -> Recipe:
    """The student's recipe: the teacher's data (or the labelled pool), the student model, full fine-tuning."""
    # --layers: the student starts from the teacher's own model directory (tokenizer included), then is cut.
    model_name = spec.student if spec.student is not None else str(tdir.resolve())
    default_out = Path(out) if out is not None else tdir.parent.with_name(f"{tdir.parent.name}-distilled")
    out_path = Path(out) if out is not None else default_out
    output = {"dir": str(out_path.parent.resolve()), "name": out_path.name, "overwrite": overwrite}
    if pool is None:
        run = tdir.parent
        if not (run / "recipe.yaml").is_file():
            raise ConfigError(f"teacher {str(run)!r} has no recipe.yaml, so its training rows are unknown; give "
                              "the run directory (not a bare model), or label texts with --pool FILE.")
        tree = load_recipe(run / "recipe.yaml").model_dump(mode="json")
        tree["data"]["labels"] = spec.labels or None  # the teacher's label order = the order of its logits
        data = tree["data"]
        # DP / adversarial training belong to the teacher's run; the student trains with the plain loss.
        keep = {k: tree[k] for k in ("task", "train")}
        train = _train_block(keep["train"], epochs, max_steps, lr, batch_size, seed)
    else:
        data = {"train": str((out_path / POOL_FILE).resolve()), "text": text_column, "label": LABEL_COLUMN,
                "labels": spec.labels, "keep_columns": [PROBS_COLUMN], "checks": {"min_class_count": MIN_POOL_ROWS},
                "max_length": int(meta.get("max_length", 128)) if meta["task"] != "generation" else 128}
        keep = {"task": {"name": "text_classification"}}
        train = _train_block({"epochs": 3}, epochs, max_steps, lr, batch_size, seed)
    tree = {"task": keep["task"], "data": data, "model": {"name": model_name}, "method": {"name": "full"},
            "train": train, "output": output}
    return parse_recipe(tree)


def train_student(run_dir: Path, recipe: Recipe, spec: DistillSpec, *, resume: bool, measure: bool = True,
                  progress: Progress | None = None, on_rows: RowProgress | None = None) -> Path:
    """Train (or resume) the student of ``spec`` in ``run_dir``, then save, score, measure and report."""
    progress = progress or Progress()
    task, splits, model_dir, processor = prepare(recipe)
    if splits.labels != spec.labels:
        raise IncompatibleError(f"the student's data has labels {splits.labels}, the teacher {spec.labels}.")
    mask_pii(recipe, task, splits)
    progress.note(f"data: {task.describe_data(splits)}")
    encoded = {s: task.encode(df, processor, splits.labels) for s, df in splits.frames.items()}
    logits = _teacher_targets(run_dir, spec, splits.frames["train"], on_rows)
    torch.manual_seed(recipe.train.seed)  # the new head's initial weights (a --student model)
    if spec.layers is not None:
        from transformers import AutoModelForSequenceClassification

        teacher_model = AutoModelForSequenceClassification.from_pretrained(
            spec.teacher, attn_implementation=attention_kernel(recipe.train.attention))
        model, kept = layer_student(teacher_model, spec.layers)
        del teacher_model
        head_names = [n for n in ("classifier", "score") if hasattr(model, n)]
    else:
        model, head_names = task.build_model(model_dir, splits.labels, attention_kernel(recipe.train.attention))
        kept = []
    dtask = distill_task(task, spec.temperature, spec.alpha)
    result = train_loop(model=model, task=dtask, train=with_teacher(encoded["train"], logits),
                        valid=encoded["valid"], labels=splits.labels, cfg=recipe.train, head_names=head_names,
                        run_dir=run_dir, resume=resume, progress=progress)
    return finish_run(run_dir, recipe, spec, task, splits, encoded, model, processor, result, kept,
                      measure=measure, note=progress.note)


def _teacher_targets(run_dir: Path, spec: DistillSpec, frame: Any, on_rows: RowProgress | None) -> np.ndarray:
    """The teacher's logits on the training rows: from the labelled pool, else from the cache, else computed
    (and cached atomically)."""
    if spec.pool is not None:
        return soft_logits(frame, list(spec.labels or []), run_dir / POOL_FILE)
    cache = run_dir / LOGITS_FILE
    if cache.is_file():
        cached = np.load(cache)
        if cached.shape[0] == len(frame):
            return cached  # type: ignore[no-any-return]
    from taskfit.inference import Predictor

    teacher = Predictor.load(spec.teacher)
    enc = teacher.task.encode(frame, teacher.processor, teacher.labels)
    report = (lambda d, t: on_rows("teacher logits", d, t)) if on_rows else None
    logits = teacher_logits(teacher.task, teacher.model, enc, on_batch=report)
    atomic_save(cache, lambda p: _save_npy(p, logits))
    return logits


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as fh:  # a file object: np.save would append ".npy" to the temporary name
        np.save(fh, array)
