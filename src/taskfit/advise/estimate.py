"""From a profile entry (one measured option) to the cost of a user's workload: time, memory, latency.

The scalings, stated once (docs/advise.md repeats them):

- **Training time.** The profile times a training step at two batch shapes with the same rows and different
  lengths and fits ``step_s = fixed + per_token × tokens``: ``fixed`` is what a step costs whatever the batch
  (optimizer update, gradient clipping, Python), ``per_token`` the forward and backward work per token (the
  attention term grows with length too; at the profiled lengths ≤ 128 it is folded into the linear fit). A run
  of ``train_rows × epochs`` rows at ``tokens`` per row in batches of ``batch_size`` then takes
  ``steps × fixed + per_token × train_rows × epochs × tokens`` seconds, ``steps = ceil(epochs ×
  ceil(train_rows / batch_size))`` — linear in rows, epochs and tokens (except for step rounding) — plus
  once the measured extra cost of a run's first steps (allocations, kernel choices).
- **Evaluation time.** Validation after every epoch plus the final scoring of the validation and test splits
  run at the measured forward throughput (rows/s at the profiled batch), scaled by tokens per row.
- **Peak memory.** What training adds to the process (measured: peak resident memory minus the resident memory
  before the model was built; on GPU the allocator's peak), carried to the user's batch by the activation term of
  :func:`taskfit.train.memory.activation_bytes`: ``measured + act(batch, longest) − act(profiled batch)``.
  Frozen backbones keep no activations for backward, so the term is 0 for ``frozen``.
- **Serving latency.** Batch-1 forward latency interpolated linearly between the profiled request lengths (eager
  fp32 PyTorch, tokenisation excluded); throughput at batch 32 scales inversely with tokens per row.

Image models: a row's "tokens" are its pixels (``image_side²``), so the same lines hold in pixels — step time
``fixed + per_pixel × pixels`` (the per-batch augmentation included, see :mod:`taskfit.advise.probe`), latency
between the profiled sides. Images are profiled at three sides (64, 128, 224 px by default) because a CNN's cost
per pixel is not constant across that range; each figure then comes from the two profiled sides around the
workload's (piecewise linear). Memory is a line through the profiled peaks against the pixels of a batch (the
transformer activation formula does not describe a CNN), plus what the run keeps of the data: every image of
every split decoded once as uint8 at the stored side (the side plus its margin for random crops).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

from taskfit.train.memory import ModelShape, activation_bytes

#: how many encoder passes a row costs, by task (retrieval encodes a query and a passage per row)
PASSES_PER_ROW = {"retrieval": 2.0}
#: ONNX Runtime int8 vs eager PyTorch, measured on MiniLM by `taskfit compress` (BENCHMARKS.md, Compression)
INT8_LATENCY_FACTOR = 4.58
INT8_THROUGHPUT_FACTOR = 2.73


@dataclass(frozen=True)
class StepFit:
    """``step_s = fixed + per_token × tokens`` fitted to two measured batch shapes."""

    fixed: float
    per_token: float

    def step_s(self, tokens: float) -> float:
        return self.fixed + self.per_token * tokens


def segment(points: list[tuple[float, float]], at: float | None) -> tuple[tuple[float, float], tuple[float, float]]:
    """The two points of a sorted list a line is drawn through for ``at``: the first and last (``at`` None, or
    two points), else the neighbours around ``at`` (the first or last pair beyond the measured range), so three
    or more measured shapes give a piecewise-linear curve."""
    if at is None or len(points) == 2:
        return points[0], points[-1]
    for left, right in itertools.pairwise(points):
        if at <= right[0]:
            return left, right
    return points[-2], points[-1]


def fit_steps(train: list[dict[str, Any]], key: str = "step_s", at: float | None = None) -> StepFit:
    """Fit the line through the shortest and longest measured shapes (both coefficients kept ≥ 0: under noise a
    negative intercept would make tiny batches free). ``key``: "step_s" (wall clock) or "cpu_s" (CPU seconds).
    With more than two shapes (image profiles), the line through the two around ``at`` tokens per batch; a segment
    above the smallest shape may cross zero below it (cost per pixel grows with the side): it is only used
    around ``at``, so its intercept is kept."""
    pts = sorted((float(s["tokens"]), float(s[key])) for s in train)
    if len(pts) == 1:
        return StepFit(0.0, pts[0][1] / pts[0][0])
    (t1, s1), (t2, s2) = segment(pts, at)
    per_token = max(0.0, (s2 - s1) / (t2 - t1))
    fixed = s1 - per_token * t1
    if fixed < 0 and t1 == pts[0][0]:  # the short shape was slower per token than the line says: keep the slope
        # through the long one
        fixed, per_token = 0.0, s2 / t2
    return StepFit(fixed, per_token)


@dataclass(frozen=True)
class Workload:
    """The user's job. ``tokens`` is the mean tokens per row (after truncation), ``longest`` the longest
    padded row (peak memory is reached on the longest batch); both may be per-model dicts because
    tokenizers differ (e5's XLM-R vocabulary splits Chinese and English differently from MiniLM's). A model
    missing from such a dict (one the data was not counted for: an encoder of a generation workload, which the
    advice rejects for the task anyway) gets the uncounted default, 128 tokens."""

    task: str
    rows: int
    labels: int | None = None
    languages: tuple[str, ...] = ()
    epochs: float = 3.0
    batch_size: int = 32
    tokens: float | dict[str, float] = 128.0
    longest: int | dict[str, int] = 128
    valid_fraction: float = 0.1
    test_fraction: float = 0.1
    #: per model, the (rows, length) shapes that can hold the peak (from the data's own lengths, see
    #: :func:`taskfit.advise.tokens.batch_shapes`); without it, ``batch_size × longest`` is assumed
    batches: dict[str, tuple[tuple[int, int], ...]] | None = None
    #: image tasks: the square side images are trained at (``task.image_size``); ``tokens`` is then side²
    image_side: int | None = None

    def tokens_for(self, model: str) -> float:
        return float(self.tokens.get(model, 128.0) if isinstance(self.tokens, dict) else self.tokens)

    def longest_for(self, model: str) -> int:
        return int(self.longest.get(model, 128) if isinstance(self.longest, dict) else self.longest)

    def peak_batches(self, model: str) -> tuple[tuple[int, int], ...]:
        """Candidate (rows, length) shapes of the batch with the most activations."""
        known = (self.batches or {}).get(model)
        return known if known else ((self.batch_size, self.longest_for(model)),)

    @property
    def train_rows(self) -> int:
        return max(1, round(self.rows * (1.0 - self.valid_fraction - self.test_fraction)))

    @property
    def valid_rows(self) -> int:
        return round(self.rows * self.valid_fraction)

    @property
    def test_rows(self) -> int:
        return round(self.rows * self.test_fraction)


@dataclass(frozen=True)
class Estimate:
    """What one option costs for a workload (seconds, MB, ms) and how each figure was obtained."""

    steps: int
    train_s: float
    eval_s: float
    total_s: float
    peak_mb: float
    process_mb: float
    latency_ms: float
    throughput_rows_s: float
    int8_latency_ms: float | None
    fit: StepFit
    notes: tuple[str, ...]


def shape_of_entry(entry: dict[str, Any]) -> ModelShape:
    s = entry["shape"]
    return ModelShape(params=s["params"], trainable=s["trainable"], layers=s["layers"], hidden=s["hidden"],
                      heads=s["heads"])


def train_seconds(entry: dict[str, Any], work: Workload, key: str = "step_s") -> tuple[int, float, StepFit]:
    """(optimiser steps, seconds of training steps, the fitted step line) for ``work`` (see the module doc);
    ``key="cpu_s"`` gives CPU seconds instead of wall-clock seconds (without the first-steps allowance)."""
    tokens = work.tokens_for(entry["model"]) * PASSES_PER_ROW.get(work.task, 1.0)
    fit = fit_steps(entry["train"], key, at=min(work.batch_size, work.train_rows) * tokens)
    per_epoch = math.ceil(work.train_rows / work.batch_size)
    steps = max(1, math.ceil(work.epochs * per_epoch))
    seconds = steps * fit.fixed + fit.per_token * work.train_rows * work.epochs * tokens
    return steps, seconds + (float(entry.get("warmup_extra_s", 0.0)) if key == "step_s" else 0.0), fit


def eval_seconds(entry: dict[str, Any], work: Workload) -> float:
    """Forward passes over validation (each epoch and at the end) and test rows at the measured throughput."""
    inf = entry["inference"]
    rows_s = inf["throughput_rows_s"] * inf["throughput_shape"][1] / max(1.0, work.tokens_for(entry["model"]))
    rows = (math.ceil(work.epochs) + 1) * work.valid_rows + work.test_rows
    return rows * PASSES_PER_ROW.get(work.task, 1.0) / rows_s


def _ran_on(shape: dict[str, Any]) -> tuple[int, int]:
    """(rows, length) of the tensor a profiled step ran on: packed rows where the profile recorded them, else the
    rows and length it asked for (the same for encoders)."""
    rows, length = shape.get("batch") or (shape["rows"], shape["length"])
    return int(rows), int(length)


def image_data_mb(work: Workload) -> float:
    """The decoded images a run holds: every row of every split, uint8, 3 channels at the stored side."""
    from taskfit.tasks.image_data import stored_size

    side = stored_size(work.image_side or 224)
    return work.rows * 3 * side * side / 2**20


def _image_peak_mb(entry: dict[str, Any], work: Workload) -> float:
    """Peak memory of an image option: a line through the profiled peaks against the pixels of a batch, at the
    workload's largest batch, plus the decoded data."""
    pixels = min(work.batch_size, work.train_rows) * work.tokens_for(entry["model"])
    points = sorted((float(s["tokens"]), float(s["peak_mb"])) for s in entry["train"] if "peak_mb" in s)
    if len(points) >= 2 and points[-1][0] > points[0][0] and points[-1][1] > points[0][1]:
        (a1, p1), (a2, p2) = segment(points, pixels)
        peak = p1 + (p2 - p1) / (a2 - a1) * (pixels - a1) if a2 > a1 else p2
    else:
        peak = float(entry["train_peak_mb"])
    return max(0.0, peak) + image_data_mb(work)


def peak_memory_mb(entry: dict[str, Any], work: Workload, profiled_rows: int, profiled_length: int) -> float:
    """Memory training adds at the workload's largest batch (image models: :func:`_image_peak_mb`).

    With a peak measured per profiled shape (profiles written since 2026-12), a line through the two points in
    activation units: ``peak = fixed + k × activations`` — the measured slope ``k`` absorbs what the formula's
    constants miss (LoRA's extra saved inputs, allocator slack). Otherwise (the built-in reference, older
    profiles) the formula's activation difference is added to the one measured peak."""
    if entry.get("kind") == "image":
        return _image_peak_mb(entry, work)
    if entry["method"] == "frozen":
        return float(entry["train_peak_mb"])
    shape, half = shape_of_entry(entry), entry.get("precision_used") == "bf16"
    passes = int(PASSES_PER_ROW.get(work.task, 1.0))
    peak_act = max(activation_bytes(shape, rows * passes, length, half)
                   for rows, length in work.peak_batches(entry["model"])) / 2**20
    points = sorted((activation_bytes(shape, *_ran_on(s), half) / 2**20, float(s["peak_mb"]))
                    for s in entry["train"] if "peak_mb" in s)
    if len(points) >= 2 and points[-1][0] > points[0][0] and points[-1][1] > points[0][1]:
        (a1, p1), (a2, p2) = points[0], points[-1]
        k = (p2 - p1) / (a2 - a1)
        return max(0.0, p1 + k * (peak_act - a1))
    profiled = activation_bytes(shape, profiled_rows, profiled_length, half) / 2**20
    return max(0.0, float(entry["train_peak_mb"]) + peak_act - profiled)


def latency_ms(entry: dict[str, Any], tokens: float) -> float:
    """Batch-1 latency at ``tokens`` tokens: linear between (and beyond) the profiled request lengths (between
    neighbours where more than two were profiled)."""
    pts = sorted((float(k), float(v)) for k, v in entry["inference"]["latency_ms"].items())
    if len(pts) == 1:
        return pts[0][1]
    (l1, v1), (l2, v2) = segment(pts, tokens)
    return max(0.0, v1 + (v2 - v1) * (tokens - l1) / (l2 - l1))


def estimate_option(entry: dict[str, Any], work: Workload, settings: dict[str, Any]) -> Estimate:
    """All figures of one profiled option for ``work``."""
    steps, train_s, fit = train_seconds(entry, work)
    eval_s = eval_seconds(entry, work)
    total = train_s + eval_s + float(entry.get("load_s", 0.0))
    peak = peak_memory_mb(entry, work, int(settings["rows"]), int(max(settings["lengths"])))
    tokens = work.tokens_for(entry["model"])
    lat = latency_ms(entry, tokens)
    inf = entry["inference"]
    thr = inf["throughput_rows_s"] * inf["throughput_shape"][1] / max(1.0, tokens)
    int8 = lat / INT8_LATENCY_FACTOR if entry.get("kind") == "encoder" else None
    if entry.get("kind") == "image":
        side = work.image_side or round(math.sqrt(tokens))
        (lo, _), (hi, _) = segment(sorted((float(s["length"]), 0.0) for s in entry["train"]), float(side))
        where = "between" if lo <= side <= hi else "extrapolated from"
        step = (f"step ≈ {fit.step_s(work.batch_size * tokens):.2f} s for {work.batch_size} images of {side} × {side}"
                f" px (linear in pixels {where} the profiled {lo:.0f} and {hi:.0f} px)")
    else:
        step = (f"step = {fit.fixed * 1000:.0f} ms + {fit.per_token * 1e6:.1f} µs × tokens ({work.batch_size} × "
                f"{tokens:.0f} tokens → {fit.step_s(work.batch_size * tokens):.2f} s)")
    notes = (f"{step}; {steps} steps over {work.train_rows} train rows × {work.epochs:g} epochs",)
    return Estimate(steps, train_s, eval_s, total, peak, peak + float(entry.get("base_rss_mb", 0.0)), lat, thr,
                    int8, fit, notes)
