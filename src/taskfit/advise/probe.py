"""Measure one option (model × method × precision) on this machine: training step time, peak memory, serving speed.

Runs in a fresh process per option (``python -m taskfit.advise.probe SPEC.json OUT.json``, started by
:func:`taskfit.advise.profile.run_profile`), for the reason ``taskfit compress`` measures in fresh processes: the
peak resident memory of a process only grows (Linux ``VmHWM``), so one option's peak would hide the next one's.

A training step here is the loop's step (:func:`taskfit.train.train_loop`), piece by piece: the task's own model
(``Task.build_model`` with the attention kernel the pipeline picks), the method's ``apply``, the loop's AdamW
(``build_optimizer``), autocast at the loop's precision, ``Task.loss``, backward, gradient clipping at the
default norm, ``optimizer.step`` and ``zero_grad``. Batches are ``rows`` synthetic rows of exactly ``length``
token ids (random ids from the model's vocabulary: speed does not depend on which ids), collated by the task, at
two lengths so that step time can be split into a fixed part and a part per token (see ``estimate.py``).

Image models (``kind`` "image") are measured the same way with ``rows`` synthetic images at each square side
of ``image_sides`` (64, 128 and 224 px by default), where a row's "tokens" are its pixels (side × side): step
time, memory, latency and throughput are then piecewise-linear in pixels. Their timed steps include the task's
collate (random crop, flip, rotation and colour jitter of the stored uint8 copies, as the training loop does per
batch), and their timed forward passes the resize to the served size: on CNNs this small those are a visible
share of a step, on text models they are not.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

#: task used to measure each model kind (the head is a small share of the cost; see docs/advise.md)
TASK_OF_KIND = {"encoder": "text_classification", "causal_lm": "generation", "image": "image_classification"}
PROBE_LABELS = ["a", "b", "c", "d"]


def rss_mb(field: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident memory of this process in MB (Linux; 0 elsewhere)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def model_kind(model_dir: Path, name: str) -> str:
    """"encoder", "causal_lm" or "image": the packaged catalogue's word, else what config.json describes (an
    image model directory saved by taskfit names its CNN architecture; a causal LM ends in ForCausalLM)."""
    from taskfit.models.resolve import ALIASES, PACKAGED
    from taskfit.models.vision import is_image_model_dir

    key = ALIASES.get(name, name)
    if key in PACKAGED:
        return PACKAGED[key].kind
    if is_image_model_dir(model_dir):
        return "image"
    cfg = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    archs = cfg.get("architectures") or []
    return "causal_lm" if any(str(a).endswith("ForCausalLM") for a in archs) else "encoder"


def synthetic_rows(task_name: str, rows: int, length: int, vocab: int, seed: int) -> Any:
    """``rows`` rows of ``length`` random token ids as the task's :class:`Encoded` (targets included)."""
    from taskfit.tasks import Encoded

    rng = np.random.default_rng([seed, length])
    # ids from the upper part of the vocabulary: never the special tokens at the start
    ids = [rng.integers(min(1000, vocab // 2), vocab, size=length, dtype=np.int64) for _ in range(rows)]
    if task_name == "generation":
        # the answer is the second half of each row (the prompt's targets are ignored, as in a chat row)
        targets = [np.concatenate([np.full(length // 2, -100), x[length // 2 + 1:], [-100]]).astype(np.int64)
                   for x in ids]
        fields: dict[str, Any] = {"input_ids": ids, "targets": targets}
    else:
        fields = {"input_ids": ids, "targets": rng.integers(0, len(PROBE_LABELS), size=rows, dtype=np.int64)}
    return Encoded(fields, np.full(rows, length, dtype=np.int64), np.arange(1, rows + 1))


def synthetic_images(rows: int, side: int, seed: int) -> Any:
    """``rows`` random images as the image task stores them (uint8 [rows, 3, S, S], S = the stored side for
    ``side`` px with its margin for random crops) with targets, as an :class:`Encoded`."""
    from taskfit.tasks import Encoded
    from taskfit.tasks.image_data import stored_size

    rng = np.random.default_rng([seed, side])
    stored = stored_size(side)
    pixels = rng.integers(0, 256, size=(rows, 3, stored, stored), dtype=np.uint8)
    targets = rng.integers(0, len(PROBE_LABELS), size=rows, dtype=np.int64)
    return Encoded({"pixels": pixels, "targets": targets}, np.ones(rows, dtype=np.int64), np.arange(1, rows + 1))


class _Shapes:
    """The probe's batches of one model kind: the task at each size, and a callable giving a collated batch.

    Text: one task; a shape is a length in tokens, a batch is collated once and reused (collating token ids is
    negligible). Images: one task per side (the side is a task option); a shape is a side in pixels, and the
    batch is collated inside every timed call (augmentation is part of each training step)."""

    def __init__(self, kind: str, spec: dict[str, Any]) -> None:
        from taskfit.config import ImageClassificationOptions
        from taskfit.tasks import TASKS

        self.image = kind == "image"
        task_cls: Any = TASKS.get(TASK_OF_KIND[kind])  # concrete tasks default their options block
        if self.image:
            self.sizes = sorted(int(x) for x in spec["image_sides"])
            self.tasks = {side: task_cls(ImageClassificationOptions(image_size=side)) for side in self.sizes}
        else:
            self.sizes = sorted(int(x) for x in spec["lengths"])
            self.tasks = {}
        self.task = self.tasks[self.sizes[-1]] if self.image else task_cls(max_length=self.sizes[-1])

    def units(self, size: int) -> int:
        """Tokens of one row (a row's pixels for an image)."""
        return size * size if self.image else size

    def batches(self, rows: int, size: int, vocab: int, seed: int, device: Any, train: bool
                ) -> tuple[Any, list[int]]:
        """(a callable returning the batch for one step, the shape of the tensor the step runs on)."""
        if self.image:
            task, enc, idx = self.tasks[size], synthetic_images(rows, size, seed), np.arange(rows)

            def fresh() -> dict[str, Any]:
                return {k: v.to(device) for k, v in task.collate(enc, idx, train=train).items()}

            return fresh, [rows, 3, size, size]
        task = self.task
        enc = synthetic_rows(task.name, rows, size, vocab, seed)
        batch = {k: v.to(device) for k, v in task.collate(enc, np.arange(rows), train=train).items()}
        return (lambda: batch), [int(d) for d in batch["input_ids"].shape]


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: Any, warmup: int, repeats: int, first: list[float] | None = None
           ) -> tuple[list[float], list[float]]:
    """Wall-clock and CPU seconds (all threads of this process) of each of ``repeats`` calls of ``fn``, after
    ``warmup`` calls whose wall-clock seconds go into ``first`` if given. CPU seconds barely move when other
    processes share the cores, wall-clock seconds do: both are kept (see docs/advise.md)."""
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        if first is not None:
            first.append(time.perf_counter() - t0)
    wall, cpu = [], []
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        _sync(device)
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return wall, cpu


def measure_option(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one option; ``spec`` holds model, method, precision, steps, rows, lengths, infer_lengths,
    infer_rows, infer_length (see :func:`taskfit.advise.profile.option_spec`). Returns the profile entry."""
    import torch

    from taskfit.config import TrainConfig
    from taskfit.methods import METHODS
    from taskfit.models import resolve_model
    from taskfit.pipeline import attention_kernel
    from taskfit.train.loop import build_optimizer, pick_device, pick_precision
    from taskfit.train.memory import shape_of

    base_rss = rss_mb()
    model_dir = resolve_model(spec["model"])
    kind = model_kind(model_dir, spec["model"])
    probe = _Shapes(kind, spec)
    task = probe.task
    method = METHODS.get(spec["method"])
    mcfg = method.config_cls()  # type: ignore[call-arg]  # each method's config defaults its name
    task.check_method(spec["method"])
    # A run holds its tokenizer all along (XLM-R's, for e5, is ~0.3 GB resident): count it as a run does.
    task.load_processor(model_dir)
    device = pick_device()
    dtype = pick_precision(spec["precision"], device)
    torch.manual_seed(0)
    t_load = time.perf_counter()
    model, heads = task.build_model(model_dir, PROBE_LABELS, attention_kernel("auto"))
    model = method.apply(model, mcfg, heads).to(device).train()
    load_s = time.perf_counter() - t_load
    shape = shape_of(model)
    cfg = TrainConfig()
    optimizer = build_optimizer(model, cfg, heads, device)
    vocab = 0 if probe.image else int(model.get_input_embeddings().num_embeddings)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)  # the peak from here on includes the weights already there

    def train_step(make_batch: Any) -> None:
        batch = make_batch()
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = task.loss(model, batch)
        loss.backward()
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], cfg.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    shapes: list[dict[str, Any]] = []
    first: list[float] = []
    # Shapes run smallest first, so the peak read after each shape is that shape's own (peaks only grow): two
    # points to fit memory against activations, as step time is fitted against tokens.
    for i, size in enumerate(probe.sizes):
        make_batch, ran_on = probe.batches(spec["rows"], size, vocab, i, device, train=True)
        secs, cpu = _timed(lambda b=make_batch: train_step(b), device, warmup=1 if i else 2, repeats=spec["steps"],
                           first=first if i == 0 else None)
        # "batch": the tensor shape the step ran on (a causal LM's rows are packed into fewer, longer rows)
        shapes.append({"rows": spec["rows"], "length": size, "tokens": spec["rows"] * probe.units(size),
                       "batch": ran_on,
                       "step_s": statistics.median(secs), "cpu_s": statistics.median(cpu),
                       "step_s_all": [round(s, 4) for s in secs],
                       "peak_mb": round(torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda"
                                        else rss_mb("VmHWM") - base_rss, 1)})
    # A run's first steps pay once for allocations and kernel choices; its share is added to estimates once.
    warmup_extra = max(0.0, sum(first) - len(first) * shapes[0]["step_s"])
    if device.type == "cuda":
        train_peak = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        train_peak = rss_mb("VmHWM") - base_rss
    entry = {"model": spec["model"], "method": spec["method"], "precision": spec["precision"],
             "precision_used": "bf16" if dtype is not None else "fp32", "kind": kind, "task": task.name,
             "unit": "pixels" if probe.image else "tokens",
             "device": str(device), "threads": torch.get_num_threads(), "load_s": round(load_s, 2),
             "warmup_extra_s": round(warmup_extra, 3),
             "shape": {"params": shape.params, "trainable": shape.trainable, "layers": shape.layers,
                       "hidden": shape.hidden, "heads": shape.heads},
             "train": shapes, "train_peak_mb": round(train_peak, 1), "base_rss_mb": round(base_rss, 1),
             "memory_measured_by": "cuda max_memory_allocated" if device.type == "cuda" else "VmHWM − VmRSS at start"}
    optimizer.zero_grad(set_to_none=True)
    optimizer.state.clear()  # AdamW moments are not needed to serve: free them before the inference figures
    entry["inference"] = _inference(probe, method.finalize(model, mcfg), spec, vocab, device)
    return entry


def _inference(probe: _Shapes, model: Any, spec: dict[str, Any], vocab: int, device: Any) -> dict[str, Any]:
    """Eager fp32 forward passes of the served (merged) model: batch-1 latency at each of ``infer_lengths``
    tokens and rows/s at ``infer_rows`` × ``infer_length`` (what ``Predictor`` runs; tokenisation excluded).
    Images: latency at each of ``image_sides`` and rows/s at the largest side, keyed by pixels per image, the
    resize to the served side included. Where an entry says "tokens" for an image, it means pixels."""
    import torch

    model.eval()
    out: dict[str, Any] = {"latency_ms": {}}
    def forward(make_batch: Any) -> None:
        batch = make_batch()
        model(**{k: v for k, v in batch.items() if k != "labels"})

    lat_sizes = probe.sizes if probe.image else [int(x) for x in spec["infer_lengths"]]
    thr_size = probe.sizes[-1] if probe.image else int(spec["infer_length"])
    with torch.inference_mode():
        for size in lat_sizes:
            make_batch, _ = probe.batches(1, size, vocab, 7, device, train=False)
            secs, _ = _timed(lambda b=make_batch: forward(b), device, warmup=2, repeats=spec["infer_calls"])
            out["latency_ms"][str(probe.units(size))] = round(statistics.median(secs) * 1000, 3)
        make_batch, _ = probe.batches(spec["infer_rows"], thr_size, vocab, 8, device, train=False)
        secs, _ = _timed(lambda: forward(make_batch), device, warmup=1, repeats=3)
        out["throughput_rows_s"] = round(spec["infer_rows"] / statistics.median(secs), 2)
        out["throughput_shape"] = [spec["infer_rows"], probe.units(thr_size)]
    return out


def main() -> None:
    from taskfit.utils.env import offline_defaults

    offline_defaults()
    spec_file, out = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    if spec.get("threads"):
        import torch

        torch.set_num_threads(int(spec["threads"]))
    result = measure_option(spec)
    out.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
