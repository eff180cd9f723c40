"""``taskfit profile``: measure every option (model × method × precision) on this machine and keep a table.

Each option is measured in a fresh process (:mod:`taskfit.advise.probe`) and written to the profile file as
soon as it is done (atomically), so an interrupted profile resumes where it stopped: an option already in the
file, measured with the same settings on the same machine, is skipped.

File layout (JSON)::

    {"version": 1, "machine": {...facts...}, "settings": {...}, "options": {"MODEL|METHOD|PRECISION": entry}}

where ``entry`` is what :func:`taskfit.advise.probe.measure_option` returns plus ``measured_at``.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from taskfit.errors import ConfigError, TaskfitError
from taskfit.utils.io import atomic_write_json

VERSION = 1
PRECISIONS = ("fp32", "bf16")
#: in a precision list, "auto" stands for what ``train.precision: auto`` would run each model in (see
#: :func:`auto_precisions`)
AUTO = "auto"


def cache_root() -> Path:
    """$TASKFIT_CACHE, else ~/.cache/taskfit (the models' cache lives in its ``models/``)."""
    return Path(os.environ.get("TASKFIT_CACHE") or Path.home() / ".cache" / "taskfit")


def default_profile_path() -> Path:
    """``<cache>/profile-<host>.json``: one table per machine, so a shared home keeps each machine's figures."""
    host = "".join(c if c.isalnum() or c in "-_." else "_" for c in socket.gethostname()) or "host"
    return cache_root() / f"profile-{host}.json"


def machine_facts() -> dict[str, Any]:
    """What the figures depend on: CPU model, cores, torch threads, memory, bf16 support, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    mem_gb = 0.0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    facts: dict[str, Any] = {"host": socket.gethostname(), "cpu": cpu, "cpu_cores": os.cpu_count(),
                             "torch_threads": torch.get_num_threads(), "memory_gb": round(mem_gb, 1),
                             "cpu_bf16": bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()),
                             "torch": torch.__version__, "python": platform.python_version(), "gpu": None}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        facts.update(gpu=torch.cuda.get_device_name(0), gpu_memory_gb=round(props.total_memory / 2**30, 1))
    return facts


@dataclass(frozen=True)
class ProfileSettings:
    """Batch shapes and repetitions of a profile (all options of one file share them).

    Attributes:
        steps: timed training steps per shape (after warm-up steps that are not timed).
        rows: rows per training batch (the recipe default ``train.batch_size``).
        lengths: tokens per row of the two training shapes; step time is fitted as a + b × tokens.
        infer_lengths: request lengths (tokens) of the batch-1 latency.
        infer_rows, infer_length: the throughput batch.
        infer_calls: timed batch-1 calls per length.
        threads: torch threads of the probes (None: torch's default, all cores).
        image_sides: image models only, the square sides (px) of the training shapes (two or more), which are
            also the sides of the batch-1 latency; throughput is measured at the largest. Step time, memory
            and latency are piecewise-linear in pixels (side²) through them. The defaults span the small sides
            that train fast on a CPU (the packaged demos use 64–96 px) to the task's default, 224 px. Why three:
            with two (64 and 224 px) a 112 px run was over-estimated by 1.37× (the cost per pixel is not
            constant); with 64 and 160 px a 224 px run came out a third short (0.66×).
    """

    steps: int = 5
    rows: int = 32
    lengths: tuple[int, ...] = (16, 128)
    infer_lengths: tuple[int, ...] = (16, 128)
    infer_rows: int = 32
    infer_length: int = 64
    infer_calls: int = 20
    threads: int | None = None
    image_sides: tuple[int, ...] = (64, 128, 224)

    def as_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, "rows": self.rows, "lengths": list(self.lengths),
                "infer_lengths": list(self.infer_lengths), "infer_rows": self.infer_rows,
                "infer_length": self.infer_length, "infer_calls": self.infer_calls, "threads": self.threads,
                "image_sides": list(self.image_sides)}


def option_key(model: str, method: str, precision: str) -> str:
    return f"{model}|{method}|{precision}"


def default_models() -> list[str]:
    """The packaged models that are installed: text encoders, causal LMs and image CNNs."""
    from taskfit.models.resolve import PACKAGED

    return [m.name for m in PACKAGED.values() if m.installed()]


def check_options(models: Sequence[str], methods: Sequence[str], precisions: Sequence[str]) -> None:
    """Raise ConfigError (every problem at once) before anything is measured."""
    from taskfit.methods import METHODS
    from taskfit.models.resolve import ALIASES, PACKAGED

    problems = []
    for p in precisions:
        if p not in (*PRECISIONS, AUTO):
            problems.append(f"--precisions: {p!r} is not a precision; expected one of {', '.join(PRECISIONS)} "
                            f"or {AUTO}.")
    for m in methods:
        if m not in METHODS:
            problems.append(f"--methods: {m!r} is not a tuning method; available: {', '.join(METHODS.names())}.")
    for name in models:
        key = ALIASES.get(name, name)
        if key in PACKAGED:
            if not PACKAGED[key].installed():
                problems.append(f"--models: {name!r} is not installed: {PACKAGED[key].install}")
        elif not (Path(name).expanduser() / "config.json").is_file():
            problems.append(f"--models: {name!r} is neither a packaged model ({', '.join(PACKAGED)}) nor a "
                            "Hugging Face model directory (no config.json there).")
    if not (models and methods and precisions):
        problems.append("--models, --methods and --precisions must each name at least one entry.")
    if problems:
        raise ConfigError(f"taskfit profile: {len(problems)} problem(s) with the options:", problems)


def load_profile(path: Path) -> dict[str, Any]:
    """Read a profile file (ConfigError naming the file when it is not one)."""
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"--profile {str(path)!r} does not exist; run `taskfit profile` first (it writes "
                          f"{default_profile_path()} by default).") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"--profile {str(path)!r} is not a readable JSON profile ({e}).") from None
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("options"), dict):
        raise ConfigError(f"--profile {str(path)!r} is not a taskfit profile (version {VERSION} with an 'options' "
                          "table); write one with `taskfit profile --out FILE`.")
    return doc


@dataclass
class ProfileRun:
    """What :func:`run_profile` did: the table's path and which options it measured, skipped or failed."""

    path: Path
    doc: dict[str, Any]
    measured: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def _same_machine(old: dict[str, Any], new: dict[str, Any]) -> bool:
    keys = ("cpu", "cpu_cores", "torch_threads", "gpu", "torch")
    return all(old.get(k) == new.get(k) for k in keys)


def run_profile(models: Sequence[str], methods: Sequence[str], precisions: Sequence[str], *,
                out: Path | None = None, settings: ProfileSettings | None = None, force: bool = False,
                on_option: Callable[[str, str], None] | None = None) -> ProfileRun:
    """Measure every option not yet in the profile file and return the table.

    Args:
        models, methods, precisions: the options are their product.
        out: the profile file (default :func:`default_profile_path`); kept and extended if it exists.
        settings: batch shapes and repetitions (options measured with other settings are measured again).
        force: measure every option again.
        on_option: called with (option key, "measuring" | "skipped" | "done" | "failed") for progress.
    """
    check_options(models, methods, precisions)
    settings = settings or ProfileSettings()
    path = Path(out) if out is not None else default_profile_path()
    machine = machine_facts()
    doc: dict[str, Any] = {"version": VERSION, "machine": machine, "settings": settings.as_dict(), "options": {}}
    if path.is_file():
        old = load_profile(path)
        # a file written before image models were profiled has no image_sides: its text figures still hold
        old_settings = {"image_sides": doc["settings"]["image_sides"], **old.get("settings", {})}
        if not force and _same_machine(old.get("machine", {}), machine) and old_settings == doc["settings"]:
            doc["options"] = old["options"]
    run = ProfileRun(path, doc)
    note = on_option or (lambda key, state: None)
    for model in models:
        for method in methods:
            for precision in _expand(model, precisions):
                key = option_key(model, method, precision)
                if not _applicable(model, method):
                    continue  # e.g. a frozen causal LM: the generation task trains full or LoRA only
                if key in doc["options"]:
                    run.skipped.append(key)
                    note(key, "skipped")
                    continue
                note(key, "measuring")
                try:
                    entry = _measure_in_process(model, method, precision, settings)
                except TaskfitError as e:
                    run.failed[key] = str(e)
                    note(key, "failed")
                    continue
                entry["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                doc["options"][key] = entry
                atomic_write_json(path, doc)  # after every option: an interrupted profile keeps what it has
                run.measured.append(key)
                note(key, "done")
    if not path.is_file():
        atomic_write_json(path, doc)
    return run


def planned(models: Sequence[str], methods: Sequence[str], precisions: Sequence[str]) -> list[str]:
    """The option keys a profile of these lists covers (combinations a task cannot train are left out)."""
    return [option_key(mo, me, p) for mo in models for me in methods for p in _expand(mo, precisions)
            if _applicable(mo, me)]


def auto_precisions(model: str) -> list[str]:
    """The precisions a run of ``model`` with ``train.precision: auto`` can use here: fp32, and bf16 where this
    machine computes it natively (a GPU with bf16; a CPU with AVX-512-BF16 or AMX, for text models only — the
    image task keeps fp32 on a CPU). Elsewhere bf16 is emulated: ~10× slower (EfficientNet-Lite0 at 224 px:
    28 s per step against 2.7 s on the AVX2-only 2-core CPU), so profiling it would only cost time."""
    from taskfit.train.loop import pick_device, pick_precision

    device = pick_device()
    native = pick_precision("auto", device) is not None
    return ["fp32", "bf16"] if native and not (device.type == "cpu" and _kind(model) == "image") else ["fp32"]


def _expand(model: str, precisions: Sequence[str]) -> list[str]:
    """``precisions`` with "auto" replaced by :func:`auto_precisions` of ``model`` (each precision once)."""
    out: list[str] = []
    for p in precisions:
        out.extend(auto_precisions(model) if p == AUTO else [p])
    return list(dict.fromkeys(out))


def _applicable(model: str, method: str) -> bool:
    """Whether the task that measures ``model`` (by its kind) can train with ``method``."""
    from taskfit.advise.probe import TASK_OF_KIND
    from taskfit.tasks import TASKS

    supported = TASKS.get(TASK_OF_KIND[_kind(model)]).supported_methods
    return supported is None or method in supported


def _kind(model: str) -> str:
    from taskfit.advise.probe import model_kind
    from taskfit.models.resolve import ALIASES, PACKAGED

    key = ALIASES.get(model, model)
    return PACKAGED[key].kind if key in PACKAGED else model_kind(Path(model).expanduser(), model)


def _measure_in_process(model: str, method: str, precision: str, settings: ProfileSettings) -> dict[str, Any]:
    spec = {"model": model, "method": method, "precision": precision, **settings.as_dict()}
    with tempfile.TemporaryDirectory(prefix="taskfit-probe-") as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec), encoding="utf-8")
        res = subprocess.run([sys.executable, "-m", "taskfit.advise.probe", str(spec_file), str(out_file)],
                             capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE":
                                                                  os.environ.get("HF_HUB_OFFLINE", "1")})
        if res.returncode != 0 or not out_file.is_file():
            tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
            raise TaskfitError(f"measuring {option_key(model, method, precision)} failed (exit {res.returncode}): "
                               + " | ".join(tail))
        return json.loads(out_file.read_text(encoding="utf-8"))  # type: ignore[no-any-return]
