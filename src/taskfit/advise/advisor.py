"""``taskfit advise``: rank the profiled options (model × method × precision) for a user's workload.

Every option of the profile (this machine's, or the built-in reference measured on the project's 2-core CPU)
is checked against the workload and the constraints, in this order, and the first failed check rejects it with
its reason: the model kind fits the task, the task can train with the method, the model speaks the requested
languages, serving latency, training budget (hours, or money at a price per hour), memory. The kept options
are ranked by the objective; each carries the reasoning behind its figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from taskfit.advise.estimate import Estimate, Workload, estimate_option
from taskfit.advise.quality import Expected, expected_quality
from taskfit.errors import ConfigError

Objective = Literal["quality", "time", "cost", "latency"]
OBJECTIVES: tuple[str, ...] = ("quality", "time", "cost", "latency")
#: model kind each task trains
KIND_OF_TASK = {"generation": "causal_lm", "image_classification": "image"}


@dataclass(frozen=True)
class Constraints:
    """Limits an option must meet. ``None`` = no limit. ``price_per_hour`` turns hours into money."""

    latency_ms: float | None = None
    budget_hours: float | None = None
    budget_money: float | None = None
    price_per_hour: float | None = None
    memory_gb: float | None = None


@dataclass
class Option:
    """One ranked (or rejected) option with its figures and the reasons behind them."""

    model: str
    method: str
    precision: str
    estimate: Estimate
    quality: Expected | None
    cost: float | None
    serve_as: str = "eager"
    reasons: list[str] = field(default_factory=list)
    rejected: str | None = None

    def as_dict(self) -> dict[str, Any]:
        e, q = self.estimate, self.quality
        return {"model": self.model, "method": self.method, "precision": self.precision,
                "train_hours": round(e.total_s / 3600, 5), "train_s": round(e.train_s, 2),
                "eval_s": round(e.eval_s, 2), "total_s": round(e.total_s, 2), "steps": e.steps,
                "peak_train_mb": round(e.peak_mb, 1), "process_peak_mb": round(e.process_mb, 1),
                "latency_ms": round(e.latency_ms, 3), "int8_latency_ms": None if e.int8_latency_ms is None
                else round(e.int8_latency_ms, 3), "throughput_rows_s": round(e.throughput_rows_s, 1),
                "serve_as": self.serve_as, "cost": None if self.cost is None else round(self.cost, 4),
                "quality": None if q is None else {"metric": q.metric, "value": round(q.value, 4),
                                                   "measured": q.measured.value, "measured_rows": q.measured.rows,
                                                   "source": q.measured.source},
                "reasons": self.reasons, "rejected": self.rejected}


@dataclass
class Advice:
    """Ranked options, rejected options, and where the figures came from."""

    workload: Workload
    objective: str
    ranked: list[Option]
    rejected: list[Option]
    source: str  #: "profile" (measured on this machine) or "reference" (built in)
    machine: dict[str, Any]
    notes: list[str]

    def as_dict(self) -> dict[str, Any]:
        w = self.workload
        return {"workload": {"task": w.task, "rows": w.rows, "labels": w.labels, "languages": list(w.languages),
                             "epochs": w.epochs, "batch_size": w.batch_size, "tokens": w.tokens,
                             "longest": w.longest, "train_rows": w.train_rows, "image_side": w.image_side,
                             "largest_batches": {m: [list(s) for s in v] for m, v in (w.batches or {}).items()}},
                "objective": self.objective, "source": self.source, "machine": self.machine, "notes": self.notes,
                "ranked": [o.as_dict() for o in self.ranked], "rejected": [o.as_dict() for o in self.rejected]}


def check_workload(work: Workload, objective: str, limits: Constraints) -> None:
    """Every bad input at once, before anything is estimated."""
    from taskfit.tasks import TASKS

    problems = []
    if work.task not in TASKS:
        problems.append(f"--task: {work.task!r} is not a task; available: {', '.join(TASKS.names())}.")
    if work.rows <= 0:
        problems.append(f"--rows: must be a positive number of training rows; got {work.rows}.")
    if work.labels is not None and work.labels < 2:
        problems.append(f"--labels: a classifier needs at least 2 labels; got {work.labels}.")
    if work.epochs <= 0 or work.batch_size <= 0:
        problems.append(f"--epochs and --batch-size must be positive; got {work.epochs:g} and {work.batch_size}.")
    if objective not in OBJECTIVES:
        problems.append(f"--objective: {objective!r} is not one of {', '.join(OBJECTIVES)}.")
    if limits.budget_money is not None and limits.price_per_hour is None:
        problems.append("--budget-money needs --price-per-hour (the price of one hour of this hardware).")
    for name, value in (("--latency-ms", limits.latency_ms), ("--budget-hours", limits.budget_hours),
                        ("--budget-money", limits.budget_money), ("--price-per-hour", limits.price_per_hour),
                        ("--memory-gb", limits.memory_gb)):
        if value is not None and value <= 0:
            problems.append(f"{name}: must be positive; got {value:g}.")
    if problems:
        raise ConfigError(f"taskfit advise: {len(problems)} problem(s) with the options:", problems)


def model_languages(model: str) -> tuple[set[str], bool]:
    """(languages named by the packaged catalogue, whether it covers many more), e.g. ({"zh", "en"}, True)."""
    from taskfit.models.resolve import ALIASES, PACKAGED

    key = ALIASES.get(model, model)
    if key not in PACKAGED:
        return set(), True  # a local directory: taskfit cannot tell, so it does not filter
    words = [w.strip() for w in PACKAGED[key].languages.split(",")]
    return {w for w in words if w and not w.startswith("+")}, any(w.startswith("+") for w in words)


def _a(word: str) -> str:
    return f"{'an' if word[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {word}"


def _task_checks(entry: dict[str, Any], work: Workload) -> str | None:
    from taskfit.tasks import TASKS

    want = KIND_OF_TASK.get(work.task, "encoder")
    if entry.get("kind") != want:
        return f"{_a(str(entry.get('kind')))} model cannot train task {work.task} (it needs {_a(want)} model)"
    supported = TASKS.get(work.task).supported_methods
    if supported is not None and entry["method"] not in supported:
        return f"task {work.task} trains with {', '.join(supported)} only"
    if want == "image":
        return None  # images have no language
    langs, many = model_languages(entry["model"])
    missing = [lang for lang in work.languages if lang not in langs and not many]
    if missing:
        return f"{entry['model']} does not cover {', '.join(missing)} (it covers {', '.join(sorted(langs))})"
    return None


def _limit_checks(opt: Option, limits: Constraints) -> str | None:
    e = opt.estimate
    if limits.latency_ms is not None and e.latency_ms > limits.latency_ms:
        if e.int8_latency_ms is not None and e.int8_latency_ms <= limits.latency_ms:
            opt.serve_as = "onnx-int8"
            opt.reasons.append(f"eager latency {e.latency_ms:.1f} ms > {limits.latency_ms:g} ms, but int8 ONNX "
                               f"(≈ {e.int8_latency_ms:.1f} ms) meets it: `taskfit compress --method onnx-int8`")
        else:
            return f"latency {e.latency_ms:.1f} ms > {limits.latency_ms:g} ms"
    hours = e.total_s / 3600
    if limits.budget_hours is not None and hours > limits.budget_hours:
        return f"training {hours:.2f} h > budget {limits.budget_hours:g} h"
    if limits.budget_money is not None and opt.cost is not None and opt.cost > limits.budget_money:
        return f"cost {opt.cost:.2f} > budget {limits.budget_money:g}"
    if limits.memory_gb is not None and e.process_mb / 1024 > limits.memory_gb:
        return f"peak memory {e.process_mb / 1024:.2f} GB > {limits.memory_gb:g} GB"
    return None


def _sort_key(objective: str) -> Any:
    def key(o: Option) -> tuple[float, ...]:
        q = o.quality
        quality = -(q.value if q.measured.higher_is_better else -q.value) if q else float("inf")
        time_s, lat = o.estimate.total_s, o.estimate.latency_ms
        if objective == "quality":
            return (q is None, quality, time_s)
        if objective == "latency":
            return (lat, time_s)
        if objective == "cost":
            return (o.cost if o.cost is not None else time_s, quality)
        return (time_s, quality)

    return key


def advise(work: Workload, profile: dict[str, Any], *, objective: str = "quality",
           limits: Constraints | None = None, source: str = "profile") -> Advice:
    """Rank every option of ``profile`` (a :mod:`taskfit.advise.profile` table) for ``work`` under ``limits``."""
    limits = limits or Constraints()
    check_workload(work, objective, limits)
    ranked: list[Option] = []
    rejected: list[Option] = []
    for entry in profile["options"].values():
        est = estimate_option(entry, work, profile["settings"])
        cost = est.total_s / 3600 * limits.price_per_hour if limits.price_per_hour is not None else None
        qual = expected_quality(work.task, entry["model"], entry["method"], work.languages, work.train_rows,
                                work.labels)
        opt = Option(entry["model"], entry["method"], entry["precision"], est, qual, cost)
        opt.reasons.extend(_reasons(opt, entry, work))
        opt.rejected = _task_checks(entry, work) or _limit_checks(opt, limits)
        (rejected if opt.rejected else ranked).append(opt)
    ranked.sort(key=_sort_key(objective))
    notes = []
    if source == "reference":
        m = profile["machine"]
        load = m.get("load_during_profile")
        shared = f", shared with other work (load average {load[0]}–{load[1]})" if load else ""
        notes.append("not profiled on this machine — run `taskfit profile`: figures are the built-in reference "
                     f"measured on {m.get('cpu')} ({m.get('cpu_cores')} cores{shared}).")
        elsewhere: dict[tuple[str, int], set[str]] = {}
        for e in profile["options"].values():
            if e.get("measured_on"):
                elsewhere.setdefault((e["measured_on"]["cpu"], e["measured_on"]["cpu_cores"]), set()).add(e["model"])
        for (cpu, cores), models in sorted(elsewhere.items()):
            notes.append(f"the reference's options for {', '.join(sorted(models))} were measured on another machine: "
                         f"{cpu} ({cores} cores).")
    return Advice(work, objective, ranked, rejected, source, profile["machine"], notes)


def _reasons(opt: Option, entry: dict[str, Any], work: Workload) -> list[str]:
    e = opt.estimate
    out = list(e.notes)
    out.append(f"+ evaluation {e.eval_s:.0f} s at {e.throughput_rows_s:.0f} rows/s, "
               f"+ model load {entry.get('load_s', 0)} s")
    measured = [s for s in entry["train"] if "peak_mb" in s]
    if entry.get("kind") == "image":
        from taskfit.advise.estimate import image_data_mb

        side = work.image_side or 224
        at = " and ".join(f"{s['peak_mb']:.0f} MB at {s['rows']} images of {s['length']} px" for s in measured)
        out.append(f"memory: measured {at} (a line against pixels per batch), carried to "
                   f"{min(work.batch_size, work.train_rows)} images of {side} px, + {image_data_mb(work):.0f} MB "
                   f"for the {work.rows} images decoded once → {e.peak_mb:.0f} MB "
                   f"(+ {entry.get('base_rss_mb', 0):.0f} MB Python and libraries)")
    else:
        at = (" and ".join(f"{s['peak_mb']:.0f} MB at {s['rows']} × {s['length']}" for s in measured)
              + " tokens (a line against activations)") if len(measured) >= 2 else \
            f"{entry['train_peak_mb']:.0f} MB at {entry['train'][-1]['rows']} × {entry['train'][-1]['length']} tokens"
        out.append(f"memory: measured {at}, carried to the largest batch "
                   f"{' or '.join(f'{r} × {n}' for r, n in work.peak_batches(opt.model))}"
                   f" → {e.peak_mb:.0f} MB (+ {entry.get('base_rss_mb', 0):.0f} MB Python and libraries)")
    t = entry["shape"]["trainable"]
    out.append(f"{t / 1e6:.2f} M of {entry['shape']['params'] / 1e6:.2f} M parameters train; precision "
               f"{entry.get('precision_used', opt.precision)}")
    if opt.quality is not None:
        out.append(f"quality: {opt.quality.note}")
    else:
        out.append("quality: not measured by the project for this task, model and method")
    return out
