"""Label an unlabelled pool of texts with a teacher, for ``taskfit distill TEACHER --pool FILE``.

A *classifier* teacher (text_classification run) gives its softmax over its own labels. A *generation* teacher
(a causal LM run, e.g. the packaged SmolLM2 chat-tuned) is constrained to the label set by scoring: for each
text, the log-likelihood of every label written as the assistant's reply (in the run's own chat format, with
the end-of-turn token, so "pos" is not rewarded for being the start of "positive") is summed, and a softmax over
the labels turns the sums into a distribution. It can never answer outside the label set, so there is nothing
to reject; the labelled file records how sure the teacher was (``teacher_score``).

The labelled pool is the input columns plus ``teacher_label`` (argmax), ``teacher_score`` (its probability)
and ``teacher_probs`` (a JSON object label → probability: the soft targets), written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from taskfit.data.readers import ROW, read_table
from taskfit.errors import ConfigError, DataError, IncompatibleError
from taskfit.inference import Predictor, model_dir_of
from taskfit.utils.io import atomic_write_text

LABEL_COLUMN, SCORE_COLUMN, PROBS_COLUMN = "teacher_label", "teacher_score", "teacher_probs"
DEFAULT_PROMPT = "{text}"
CHUNK = 32  # rows labelled between progress updates

Progress = Callable[[int, int], None]


@dataclass
class PoolLabels:
    """What labelling a pool produced."""

    path: Path
    rows: int
    labels: list[str]
    teacher_task: str
    counts: dict[str, int]
    mean_score: float


def teacher_kind(teacher: str | Path) -> tuple[Path, dict[str, Any]]:
    """The teacher's model directory and taskfit.json; refuses tasks that cannot label texts."""
    mdir = model_dir_of(teacher)
    meta: dict[str, Any] = json.loads((mdir / "taskfit.json").read_text(encoding="utf-8"))
    if meta["task"] not in ("text_classification", "generation"):
        raise IncompatibleError(f"teacher {str(teacher)!r} is a {meta['task']!r} run; a pool can be labelled by a "
                                "text_classification or a generation run.")
    return mdir, meta


def check_pool(pool: Path, text_column: str) -> pd.DataFrame:
    """The pool's rows (with source row numbers); refuses a missing file or column, no rows or blank texts."""
    if not pool.is_file():
        raise DataError(f"--pool file {str(pool)!r} does not exist.", source=pool)
    frame = read_table(pool, row_numbers=True)
    if text_column not in frame.columns:
        cols = [c for c in frame.columns if c != ROW]
        raise DataError(f"--text-column {text_column!r} is not a column of the pool; its columns are {cols}. "
                        "Pass --text-column NAME.", source=pool, column=text_column)
    if not len(frame):
        raise DataError("the pool has no rows; give a file with texts to label.", source=pool)
    blank = frame[text_column].isna() | frame[text_column].map(lambda v: not str(v).strip())
    if blank.any():
        raise DataError(f"{int(blank.sum())} pool row(s) have an empty {text_column!r}; drop or fill them.",
                        source=pool, column=text_column, rows=[int(r) for r in frame.loc[blank, ROW]])
    return frame


def resolve_labels(meta: dict[str, Any], given: list[str] | None, teacher: str | Path) -> list[str]:
    """The label set: a classifier teacher's own (``--labels`` must then agree), a generation teacher's from
    ``--labels`` (it has none of its own)."""
    own = list(meta.get("labels") or [])
    if own:
        if given and given != own:
            raise ConfigError(f"--labels {given} differ from the teacher's labels {own}; leave --labels out for "
                              "a classifier teacher.")
        return own
    if not given:
        raise ConfigError(f"the labels of teacher {str(teacher)!r} are unknown (a {meta['task']} run has no label "
                          "set); pass them with --labels a,b,c.")
    if len(set(given)) != len(given) or len(given) < 2:
        raise ConfigError(f"--labels must name at least two distinct labels, got {given}.")
    return given


def label_pool(teacher: str | Path, pool: Path, text_column: str, out: Path, *, labels: list[str] | None = None,
               prompt: str = DEFAULT_PROMPT, progress: Progress | None = None) -> PoolLabels:
    """Label every pool row with the teacher and write the labelled file ``out`` (csv or jsonl by suffix).

    Raises:
        DataError: missing pool file or column, no rows, blank texts.
        ConfigError: a generation teacher without ``labels``; a prompt without ``{text}``.
        IncompatibleError: a teacher that is neither a classifier nor a generation run.
    """
    mdir, meta = teacher_kind(teacher)
    label_set = resolve_labels(meta, labels, teacher)
    if "{text}" not in prompt:
        raise ConfigError(f"--prompt must contain {{text}} where the pool text goes, got {prompt!r}.")
    frame = check_pool(pool, text_column)  # all checks above run before the teacher is loaded
    pred = Predictor.load(mdir)
    texts = [str(t) for t in frame[text_column]]
    probs = np.zeros((len(texts), len(label_set)), dtype=np.float64)
    for start in range(0, len(texts), CHUNK):
        chunk = texts[start:start + CHUNK]
        if meta["task"] == "generation":
            probs[start:start + len(chunk)] = label_likelihoods(pred, chunk, label_set, prompt)
        else:
            probs[start:start + len(chunk)] = pred.predict_proba(chunk)
        if progress:
            progress(start + len(chunk), len(texts))
    labelled = frame.drop(columns=[ROW]).copy()
    best = probs.argmax(axis=1)
    labelled[LABEL_COLUMN] = [label_set[i] for i in best]
    labelled[SCORE_COLUMN] = probs.max(axis=1).round(6)
    labelled[PROBS_COLUMN] = [json.dumps({lab: round(float(p), 6) for lab, p in zip(label_set, row, strict=True)},
                                         ensure_ascii=False) for row in probs]
    write_table(labelled, out)
    counts = {lab: int((best == i).sum()) for i, lab in enumerate(label_set)}
    return PoolLabels(out, len(labelled), label_set, meta["task"], counts, float(probs.max(axis=1).mean()))


def write_table(frame: pd.DataFrame, out: Path) -> None:
    """Write ``frame`` atomically as CSV, or JSON lines when ``out`` ends in .jsonl."""
    if out.suffix.lower() == ".jsonl":
        text = frame.to_json(orient="records", lines=True, force_ascii=False)
    else:
        text = frame.to_csv(index=False)
    atomic_write_text(out, text)


def label_likelihoods(pred: Predictor, texts: list[str], labels: list[str], prompt: str) -> np.ndarray:
    """A generation teacher's distribution over ``labels`` for each text, [N, C]: softmax over the summed
    log-probabilities of each label's reply tokens (end-of-turn included) given the prompt."""
    import torch

    from taskfit.tasks.base import pad_sequences
    from taskfit.tasks.generation_data import IGNORE, supervised_example

    task: Any = pred.task
    fmt = task._fmt(pred.processor)
    max_length = max(task.max_length, 512)
    out = np.zeros((len(texts), len(labels)), dtype=np.float64)
    with torch.no_grad():
        for r, text in enumerate(texts):
            user = prompt.replace("{labels}", ", ".join(labels)).replace("{text}", text)
            pairs = [supervised_example(fmt, [{"role": "user", "content": user},
                                              {"role": "assistant", "content": lab}], max_length) for lab in labels]
            ids, mask = pad_sequences([p[0] for p in pairs], task.pad_id)
            targets, _ = pad_sequences([p[1] for p in pairs], IGNORE, ids.shape[1])
            logits = pred.model(input_ids=torch.from_numpy(ids).to(pred.device),
                                attention_mask=torch.from_numpy(mask).to(pred.device)).logits.float()
            tgt = torch.from_numpy(targets).to(pred.device)
            where = tgt != IGNORE
            logp = torch.log_softmax(logits, dim=-1).gather(-1, tgt.clamp(min=0).unsqueeze(-1)).squeeze(-1)
            scores = (logp * where).sum(dim=1)
            out[r] = torch.softmax(scores.double(), dim=0).cpu().numpy()
    return out


def soft_logits(frame: pd.DataFrame, labels: list[str], source: Path) -> np.ndarray:
    """Log-probabilities [N, C] from a labelled pool split's ``teacher_probs`` column, in ``labels`` order (the
    soft targets of the student; log p works as logits because softmax ignores a per-row shift)."""
    rows = []
    numbers = frame[ROW] if ROW in frame else pd.Series(range(1, len(frame) + 1))
    for v, row in zip(frame[PROBS_COLUMN], numbers, strict=True):
        try:
            d = json.loads(v) if isinstance(v, str) else dict(v)
            rows.append([float(d[lab]) for lab in labels])
        except (ValueError, KeyError, TypeError) as e:
            raise DataError(f"{PROBS_COLUMN} is not a JSON object with a probability for each of {labels} ({e}).",
                            source=source, column=PROBS_COLUMN, rows=[int(row)]) from e
    return np.log(np.clip(np.asarray(rows, dtype=np.float64), 1e-12, None)).astype(np.float32)
