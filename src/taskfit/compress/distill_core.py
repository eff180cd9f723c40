"""The parts of knowledge distillation that touch tensors: the loss, the task wrapper that feeds it to the
training loop, the student cut from the teacher's layers, and the teacher's logits on the training rows.

The loss (Hinton et al. 2015) mixes the usual cross-entropy on the hard labels with the KL divergence
between the temperature-softened teacher and student distributions::

    loss = alpha · CE(student, labels) + (1 − alpha) · T² · KL(softmax(teacher/T) ‖ softmax(student/T))

The T² factor keeps the soft term's gradients at the scale of the hard term's when T changes (soft
gradients shrink as 1/T²). It enters the loop as a *task* wrapper, not a :class:`~taskfit.train.StepHook`:
a hook sees the loss, never the batch, while the teacher's logits belong to the batch's rows. The wrapper
subclasses the student's own task, so the loop, evaluation, saving and ``taskfit.json`` stay those of a
plain text_classification run (a distilled model is an ordinary model afterwards).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from taskfit.errors import IncompatibleError
from taskfit.tasks.base import Encoded, Task

#: Name of the per-row teacher logits field added to the training split's Encoded fields.
TEACHER_FIELD = "teacher_logits"


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor | None, temperature: float,
            alpha: float) -> torch.Tensor:
    """Distillation loss of one batch (a mean over its rows).

    Args:
        student: student logits [B, C].
        teacher: teacher logits [B, C] (log-probabilities work too: softmax ignores a per-row shift).
        targets: hard label indices [B], or None for soft targets only (then ``alpha`` must be 0).
        temperature: T > 0; higher T spreads the teacher's probability over more labels.
        alpha: weight of the hard-label cross-entropy, in [0, 1].

    Returns:
        A scalar: ``alpha·CE + (1−alpha)·T²·KL(p_teacher ‖ p_student)`` with both softened by T.
    """
    student, teacher = student.float(), teacher.float()
    soft = torch.zeros((), device=student.device)
    if alpha < 1:
        log_p_s = F.log_softmax(student / temperature, dim=-1)
        log_p_t = F.log_softmax(teacher / temperature, dim=-1)
        # KL(p_t ‖ p_s) per row = Σ p_t (log p_t − log p_s); "batchmean" divides the sum by B.
        soft = F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * temperature ** 2
    hard = F.cross_entropy(student, targets) if alpha > 0 and targets is not None else torch.zeros_like(soft)
    return alpha * hard + (1 - alpha) * soft


def kd_loss_multi_label(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor | None,
                        temperature: float, alpha: float) -> torch.Tensor:
    """Distillation loss for independent labels (logits [B, L], targets [B, L] in {0, 1}): ``alpha·BCE(labels) +
    (1−alpha)·T²·KL(Bernoulli(σ(teacher/T)) ‖ Bernoulli(σ(student/T)))``, each a mean over rows and labels."""
    student, teacher = student.float(), teacher.float()
    soft = torch.zeros((), device=student.device)
    if alpha < 1:
        p_t = torch.sigmoid(teacher / temperature)
        # KL = cross-entropy − entropy of the teacher; the entropy term makes the loss 0 when the two agree.
        cross = F.binary_cross_entropy_with_logits(student / temperature, p_t)
        entropy = F.binary_cross_entropy_with_logits(teacher / temperature, p_t)
        soft = (cross - entropy) * temperature ** 2
    hard = (F.binary_cross_entropy_with_logits(student, targets.float()) if alpha > 0 and targets is not None
            else torch.zeros_like(soft))
    return alpha * hard + (1 - alpha) * soft


def kd_loss_regression(student: torch.Tensor, teacher: torch.Tensor, targets: torch.Tensor | None,
                       temperature: float, alpha: float) -> torch.Tensor:
    """Distillation loss for a score (outputs [B, 1] or [B], normalised scale): ``alpha·MSE(targets) +
    (1−alpha)·MSE(teacher)``; there is no distribution to soften, so the temperature is not used."""
    student, teacher = student.float().reshape(-1), teacher.float().reshape(-1)
    soft = F.mse_loss(student, teacher) if alpha < 1 else torch.zeros((), device=student.device)
    hard = F.mse_loss(student, targets.float()) if alpha > 0 and targets is not None else torch.zeros_like(soft)
    return alpha * hard + (1 - alpha) * soft


#: The distillation loss of each task a teacher run may be distilled for.
KD_LOSSES: dict[str, Callable[..., torch.Tensor]] = {
    "text_classification": kd_loss, "multi_label": kd_loss_multi_label, "regression": kd_loss_regression}


def distill_task(base: Task, temperature: float, alpha: float) -> Task:
    """A copy of ``base`` (a task of :data:`KD_LOSSES`) whose training loss is its distillation loss.

    Training batches of a split that carries :data:`TEACHER_FIELD` (see :func:`with_teacher`) get the
    teacher's logits; everything else (evaluation, metrics, prediction, ``meta()``) is ``base``'s own.
    """

    class Distilled(type(base)):  # type: ignore[misc,valid-type]
        def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
            batch = super().collate(enc, idx, train)
            if train and TEACHER_FIELD in enc:
                batch[TEACHER_FIELD] = torch.from_numpy(enc[TEACHER_FIELD][idx])
            return batch

        def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            teacher = batch.get(TEACHER_FIELD)
            if teacher is None:  # a batch without teacher logits trains as the plain task
                return super().loss(model, batch)
            inputs = {k: v for k, v in batch.items() if k not in ("labels", TEACHER_FIELD)}
            logits = model(**inputs).logits
            return KD_LOSSES[self.name](logits, teacher, batch["labels"], temperature, alpha)

    task = copy.copy(base)
    task.__class__ = Distilled
    return task


def with_teacher(enc: Encoded, logits: np.ndarray) -> Encoded:
    """``enc`` with the teacher's logits [N, C] (row-aligned with ``enc``) as a training field."""
    if logits.shape[0] != len(enc):
        raise ValueError(f"teacher logits have {logits.shape[0]} rows for a split of {len(enc)}")
    return Encoded({**enc.fields, TEACHER_FIELD: np.ascontiguousarray(logits, dtype=np.float32)},
                   enc.lengths, enc.rows, enc.labelled, dict(enc.extra))


@torch.no_grad()
def teacher_logits(task: Task, model: torch.nn.Module, enc: Encoded, batch_rows: int = 64,
                   on_batch: Callable[[int, int], None] | None = None) -> np.ndarray:
    """The teacher's logits for every row of ``enc`` (encoded with the teacher's own tokenizer), [N, C].

    Computed once, in eval mode (no dropout) and fp32, so every epoch and a resumed run see the same targets.
    ``on_batch(done, total)`` reports progress.
    """
    from taskfit.data.batching import BucketBatcher

    model.eval()
    device = next(model.parameters()).device
    out: np.ndarray | None = None
    batcher = BucketBatcher(enc.lengths, batch_size=batch_rows, batch_tokens=16384, shuffle=False)
    done = 0
    for idx in batcher.epoch(0):
        batch = {k: v.to(device) for k, v in task.collate(enc, idx, train=False).items()}
        logits = np.asarray(task.outputs(model, batch), dtype=np.float32).reshape(len(idx), -1)  # regression: [B, 1]
        if out is None:
            out = np.zeros((len(enc), logits.shape[1]), dtype=np.float32)
        out[idx] = logits
        done += len(idx)
        if on_batch:
            on_batch(done, len(enc))
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)


# ---- a student cut from the teacher ----------------------------------------------------------------


def kept_layers(total: int, keep: int) -> list[int]:
    """Which of ``total`` layers a ``keep``-layer student takes: every k-th (k = total / keep), ending with the
    top layer, whose output the teacher's pooler and head were trained on (6 → 3 keeps 1, 3, 5)."""
    if not 1 <= keep <= total:
        raise ValueError(f"keep must be in [1, {total}], got {keep}")
    return [round((i + 1) * total / keep) - 1 for i in range(keep)]


def layer_list_prefix(model: torch.nn.Module, n_layers: int) -> str:
    """The dotted name of the model's stack of transformer layers (the ModuleList of ``n_layers`` blocks)."""
    found = [name for name, m in model.named_modules()
             if isinstance(m, torch.nn.ModuleList) and len(m) == n_layers and name]
    if not found:
        raise IncompatibleError(f"found no list of {n_layers} transformer layers in {type(model).__name__}; "
                                "--layers works with encoder models (BERT, RoBERTa, DistilBERT...). Give a "
                                "smaller model with --student instead.")
    return found[0]


def layer_student(teacher: torch.nn.Module, keep: int) -> tuple[torch.nn.Module, list[int]]:
    """A ``keep``-layer copy of a Hugging Face classifier: its embeddings, pooler and head, and every k-th
    transformer layer (see :func:`kept_layers`), renumbered 0..keep-1. Returns (student, kept indices).

    The student is built from the teacher's config with ``num_hidden_layers = keep`` (so it saves and loads as
    an ordinary model of that size) and gets the teacher's weights with a strict state-dict load.
    """
    cfg: Any = copy.deepcopy(teacher.config)
    total = int(cfg.num_hidden_layers)
    if keep >= total:
        raise IncompatibleError(f"--layers {keep} is not fewer than the teacher's {total} layers; give a number "
                                f"from 1 to {total - 1}.")
    kept = kept_layers(total, keep)
    prefix = layer_list_prefix(teacher, total)
    cfg.num_hidden_layers = keep
    student = type(teacher)(cfg)
    pattern = re.compile(rf"^{re.escape(prefix)}\.(\d+)\.(.*)$")
    new_index = {old: new for new, old in enumerate(kept)}
    state: dict[str, Any] = {}
    for key, value in teacher.state_dict().items():
        m = pattern.match(key)
        if m is None:
            state[key] = value.clone()
        elif int(m.group(1)) in new_index:
            state[f"{prefix}.{new_index[int(m.group(1))]}.{m.group(2)}"] = value.clone()
    student.load_state_dict(state, strict=True)
    return student, kept
