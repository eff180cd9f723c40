"""``taskfit retrain``: fold users' corrections (``/v1/feedback``) back into a served model, with replay.

Fine-tuning on feedback alone teaches the model the new cases and makes it forget the old task (catastrophic
forgetting: a skewed feedback stream pulls every prediction towards the corrected labels). So the training set
mixes the feedback with a *replay* sample of the original training rows, and the new model must pass a gate:

1. feedback rows of the model (latest label per request id) are split into a training part and a NEW test set
   (``holdout`` share, never trained on);
2. training set = feedback training part + replay sample of the run's training split (``replay``: a fraction of
   it when ≤ 1, a row count when > 1; 0 = feedback only); replay rows whose text the feedback relabels are
   dropped (feedback wins);
3. the run's own pipeline fine-tunes *from the run's model* into a new run directory (progress bar, checkpoints,
   ``--resume``-able: an interrupted retrain continues when the same command is run again);
4. old and new model are scored on the OLD test set (the run's test split) and on the NEW test set; the gate
   passes when the old-task score dropped by at most ``tolerance``;
5. with ``promote`` and a passing gate the new version is registered and promoted in the Store; otherwise the
   registry is left as it was. ``retrain.json`` in the new run directory records all of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from taskfit.errors import ConfigError, DataError, IncompatibleError
from taskfit.utils.io import atomic_write_json, atomic_write_text

if TYPE_CHECKING:
    from taskfit.config import Recipe
    from taskfit.serve.db import Store
    from taskfit.tasks import Task
    from taskfit.train import Progress

REPORT_FILE = "retrain.json"
STATE_FILE = "retrain_state.json"


@dataclass
class RunFrames:
    """A finished run's data, rebuilt from its recipe.yaml exactly as it was trained (split, PII masking)."""

    recipe: Recipe
    task: Task
    meta: dict[str, Any]
    model_dir: Path
    train: pd.DataFrame
    held_out: pd.DataFrame  # the test split (validation when the run held out no test rows)
    source: str
    text: str
    label: str


def run_frames(run_dir: str | Path) -> RunFrames:
    """The training split and the held-out split of a finished run (``run_dir`` or its model/ directory).

    Raises:
        ConfigError: the run has no recipe.yaml; DataError: its data files moved or changed.
    """
    from taskfit.config import load_recipe
    from taskfit.inference import model_dir_of
    from taskfit.tasks import TASKS
    from taskfit.trust import mask_pii

    model_dir = model_dir_of(run_dir)
    meta = json.loads((model_dir / "taskfit.json").read_text(encoding="utf-8"))
    recipe_path = next((d / "recipe.yaml" for d in (model_dir.parent, model_dir.parent.parent)
                        if (d / "recipe.yaml").is_file()), None)
    if recipe_path is None:
        raise ConfigError(f"{str(run_dir)!r} has no recipe.yaml next to its model, so its training data cannot be "
                          "found; give a run directory written by `taskfit train`.")
    recipe = load_recipe(recipe_path)
    task = TASKS.get(recipe.task.name).from_config(recipe.task, recipe.data)
    splits = task.load_splits(recipe.data)
    mask_pii(recipe, task, splits)  # the model saw masked text; the reference and replay must too
    split = "test" if "test" in splits.frames else "valid"
    return RunFrames(recipe, task, meta, model_dir, splits.frames["train"], splits.frames[split],
                     f"{split} split of {recipe_path}", recipe.data.text, recipe.data.label)


def replay_count(replay: float, available: int) -> int:
    """Rows of the original training data to replay: ``replay`` ≤ 1 is a fraction of ``available``, > 1 a count
    (capped at ``available``)."""
    if replay < 0:
        raise ConfigError(f"--replay must be 0 or more (a fraction ≤ 1 of the training rows, or a row count), "
                          f"got {replay:g}.")
    if replay > 1 and replay != int(replay):
        raise ConfigError(f"--replay above 1 is a row count and must be a whole number, got {replay:g}.")
    return min(available, round(replay * available) if replay <= 1 else int(replay))


def gate(old_before: float, old_after: float, tolerance: float) -> tuple[bool, str]:
    """Whether the new model may replace the old one: its score on the OLD test set may drop by at most
    ``tolerance`` (absolute; 0.02 = two points of the metric)."""
    drop = old_before - old_after
    if drop > tolerance + 1e-12:
        return False, (f"the old-task score dropped by {drop:.4f} ({old_before:.4f} → {old_after:.4f}), more than "
                       f"the tolerance {tolerance:g}: the model forgot part of the original task; retrain with more "
                       "replay (--replay) or a lower learning rate")
    return True, f"the old-task score moved by {-drop:+.4f} (tolerance {tolerance:g})"


def feedback_frame(store: Store, model: str, labels: list[str], text: str, label: str) -> pd.DataFrame:
    """The model's feedback as rows (``text`` and ``label`` columns named like the run's data), one per request
    id (its latest label) and per text (the latest correction wins).

    Raises:
        DataError: no feedback for the model, or feedback labels the model does not have.
    """
    rows = store.feedback(model=model)
    if not rows:
        raise DataError(f"no feedback for model {model!r} in the database; collect corrections with POST "
                        "/v1/feedback (or give --model, the name the model is served under).")
    latest = {r.request_id: r for r in rows}  # oldest first, so the latest per request id stays
    frame = pd.DataFrame({text: [r.text for r in latest.values()], label: [r.label for r in latest.values()]})
    frame = frame.drop_duplicates(subset=[text], keep="last").reset_index(drop=True)
    unknown = sorted(set(frame[label]) - set(labels))
    if unknown:
        raise DataError(f"feedback of model {model!r} has label(s) {unknown} the model does not have; expected "
                        f"one of {labels}.", column=label)
    return frame


def _split_feedback(frame: pd.DataFrame, holdout: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    shuffled = frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_test = max(1, round(holdout * len(shuffled)))
    return shuffled.iloc[n_test:].reset_index(drop=True), shuffled.iloc[:n_test].reset_index(drop=True)


def _retrain_recipe(frames: RunFrames, data_dir: Path, out: Path, overrides: dict[str, Any]) -> Recipe:
    """The run's recipe, pointed at the mixed data and starting from the run's trained model."""
    recipe = frames.recipe.model_copy(deep=True)
    recipe.data = recipe.data.model_copy(update={
        "train": (data_dir / "train.csv").resolve(), "valid": None, "test": (data_dir / "feedback_test.csv").resolve(),
        "labels": list(frames.meta.get("labels") or []), "limit": None, "keep_columns": []})
    # Feedback is skewed by nature: a class may have a single row; the split checks must not stop the run.
    recipe.data.checks = recipe.data.checks.model_copy(update={"min_class_count": 1, "leakage": "ignore"})
    recipe.model.name = str(frames.model_dir.resolve())
    recipe.fairness = None  # feedback rows carry no group column
    recipe.federated = None
    recipe.train = recipe.train.model_copy(update={k: v for k, v in overrides.items() if v is not None})
    recipe.output = recipe.output.model_copy(update={"dir": out.parent.resolve(), "name": out.name,
                                                     "overwrite": False})
    return recipe


def _prepare(frames: RunFrames, store: Store, model: str, out: Path, replay: float, holdout: float, seed: int,
             overrides: dict[str, Any], note: Callable[[str], None]) -> dict[str, Any]:
    """Write the mixed training set, both test sets and the recipe into ``out`` (once; a resumed retrain keeps
    them so it trains on exactly the same rows)."""
    labels = list(frames.meta.get("labels") or [])
    fb = feedback_frame(store, model, labels, frames.text, frames.label)
    if len(fb) < 4:
        raise DataError(f"model {model!r} has only {len(fb)} distinct feedback row(s); retraining needs at least "
                        "4 (some to train on, some to test the new behaviour on).")
    fb_train, fb_test = _split_feedback(fb, holdout, seed)
    original = frames.train[[frames.text, frames.label]]
    original = original[~original[frames.text].isin(set(fb[frames.text]))]
    n_replay = replay_count(replay, len(original))
    replayed = original.sample(n_replay, random_state=seed) if n_replay else original.iloc[:0]
    mixed = pd.concat([fb_train, replayed]).sample(frac=1.0, random_state=seed).reset_index(drop=True)
    missing = sorted(set(labels) - set(mixed[frames.label]))
    if missing:
        raise DataError(f"the retraining set ({len(fb_train)} feedback + {n_replay} replayed rows) has no row of "
                        f"label(s) {missing}; the model cannot be fine-tuned on its labels without them. Replay "
                        "original rows (--replay 0.2) or collect feedback on those labels.")
    data_dir = out / "retrain_data"
    for name, frame in (("train", mixed), ("feedback_test", fb_test),
                        ("old_test", frames.held_out[[frames.text, frames.label]])):
        atomic_write_text(data_dir / f"{name}.csv", frame.to_csv(index=False))
    recipe = _retrain_recipe(frames, data_dir, out, overrides)
    atomic_write_text(out / "recipe.yaml", recipe.to_yaml())
    state = {"model": model, "source_run": str(frames.model_dir.parent.resolve()), "replay": replay,
             "holdout": holdout, "seed": seed, "rows": {"feedback": len(fb), "feedback_train": len(fb_train),
                                                        "feedback_test": len(fb_test), "replay": n_replay,
                                                        "train": len(mixed), "old_test": len(frames.held_out)}}
    atomic_write_json(out / STATE_FILE, state)
    note(f"retraining set: {len(fb_train)} feedback + {n_replay} replayed rows; new test set {len(fb_test)} "
         f"feedback rows; old test set {len(frames.held_out)} rows ({frames.source})")
    return state


@dataclass
class RetrainResult:
    """What ``retrain_run`` did: the new run directory and the report written to ``retrain.json``."""

    run_dir: Path
    report: dict[str, Any]


def retrain_run(run_dir: str | Path, store: Store, *, model: str | None = None, out: str | Path | None = None,
                replay: float = 0.5, tolerance: float = 0.02, holdout: float = 0.3, promote: bool = False,
                seed: int = 0, overrides: dict[str, Any] | None = None, progress: Progress | None = None,
                note: Callable[[str], None] = lambda _m: None) -> RetrainResult:
    """Fine-tune a run's model on its feedback plus replay, score old and new model on the old and the new test
    set, and promote the new version only when the old-task score held (see the module docstring).

    Args:
        run_dir: the served run (its model is the starting point; its test split is the OLD test set).
        store: the service database (feedback in, registry out).
        model: the name the model is served under (default: the run directory's name).
        out: new run directory (default: ``RUN_DIR-retrain`` beside it); an unfinished one is resumed.
        replay, tolerance, holdout, seed: see :func:`replay_count`, :func:`gate`; share of feedback held out.
        promote: register and promote the new version when the gate passes.
        overrides: ``train`` keys for the fine-tuning (``max_steps``, ``epochs``, ``lr``...).
    """
    from taskfit.inference import Predictor
    from taskfit.pipeline import train_recipe

    if not 0 < holdout < 1:
        raise ConfigError(f"--holdout is the share of feedback kept for the new test set, between 0 and 1; got "
                          f"{holdout:g}.")
    if tolerance < 0:
        raise ConfigError(f"--tolerance must be 0 or more, got {tolerance:g}.")
    replay_count(replay, 1)  # bad --replay values fail before anything is read
    frames = run_frames(run_dir)
    if frames.task.name != "text_classification" or frames.recipe.data.text_pair:
        raise IncompatibleError(f"retrain takes feedback of single-text classification models; this run is "
                                f"{frames.task.name}{' with text pairs' if frames.recipe.data.text_pair else ''}.")
    source = frames.model_dir.parent
    name = model or source.name
    out = Path(out) if out is not None else source.parent / f"{source.name}-retrain"
    if (out / REPORT_FILE).is_file():
        raise ConfigError(f"{str(out)!r} already holds a finished retrain ({REPORT_FILE}); give another --out.")
    if out.exists() and not (out / STATE_FILE).is_file():
        raise ConfigError(f"{str(out)!r} exists and is not an unfinished retrain; give another --out.")
    if (out / STATE_FILE).is_file():
        note(f"resuming the unfinished retrain in {out}")
        state = json.loads((out / STATE_FILE).read_text(encoding="utf-8"))
    else:
        state = _prepare(frames, store, name, out, replay, holdout, seed, overrides or {}, note)
    if not (out / "model" / "taskfit.json").is_file():
        train_recipe(resume_dir=out, progress=progress)  # resumes from the last checkpoint when there is one

    metric = frames.task.default_metric
    data = out / "retrain_data"
    scores: dict[str, dict[str, float]] = {"old_test": {}, "new_test": {}}
    for when, path in (("before", source), ("after", out)):
        pred = Predictor.load(path)
        for split, file in (("old_test", "old_test.csv"), ("new_test", "feedback_test.csv")):
            scores[split][when] = float(pred.evaluate_file(data / file)[metric])
    report = {"model": name, "source_run": str(source.resolve()), "new_run": str(out.resolve()),
              "rows": state["rows"], "replay": state["replay"],
              **decide(store, name, out / "model", scores, metric, tolerance, promote)}
    atomic_write_json(out / REPORT_FILE, report)
    return RetrainResult(out, report)


def decide(store: Store, name: str, model_dir: Path, scores: dict[str, dict[str, float]], metric: str,
           tolerance: float, promote: bool) -> dict[str, Any]:
    """Apply the gate to before/after ``scores`` (``{"old_test": {"before", "after"}, "new_test": {...}}``) and,
    when it passes and ``promote`` is set, register ``model_dir`` as the next version of ``name`` and promote
    it; a failing gate leaves the registry untouched. Returns the report's decision fields."""
    passed, reason = gate(scores["old_test"]["before"], scores["old_test"]["after"], tolerance)
    promoted = None
    if passed and promote:
        promoted = _next_version(store, name)
        store.register_model(name, promoted, str(model_dir.resolve()), stage="staging",
                             metrics={"metric": metric, **{k: v["after"] for k, v in scores.items()}})
        store.promote(name, promoted)
    decision = ("promoted" if promoted else "refused" if promote
                else "gate passed; not promoted (no --promote)" if passed else "gate failed; not promoted")
    return {"metric": metric, "tolerance": tolerance,
            "scores": {k: {**v, "delta": v["after"] - v["before"]} for k, v in scores.items()},
            "gate": "pass" if passed else "fail", "reason": reason, "promoted": promoted, "decision": decision,
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def _next_version(store: Store, name: str) -> str:
    """One more than the highest numeric version registered under ``name`` ("1" for a new name)."""
    taken = {v.version for v in store.model_versions(name)}
    n = max([int(v) for v in taken if v.isdigit()], default=0) + 1
    while str(n) in taken:
        n += 1
    return str(n)
