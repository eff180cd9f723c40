"""How close are `taskfit advise` estimates to real runs? (the advise issue's acceptance check: within ±30 %).

1. `taskfit profile` (the library call) for the options the cases need, on this machine, measured afresh.
2. For each case (task, data, rows, model, method): tokens per row counted on the real rows with the model's
   tokenizer (as `taskfit advise --data` does; an image case's rows are its images, each row side² pixels),
   then `advise` estimates training-step time and peak training memory for 1 epoch.
3. The real run: `train_recipe` in a fresh process with the same rows, batch size, precision and epochs. Measured
   training time = the loop's ``train_seconds`` (optimizer steps only; validation and checkpoint writes are
   excluded on both sides); measured memory = peak resident memory at the end of the training loop (VmHWM, read
   in the loop's ``Progress.stop``) minus resident memory before ``train_recipe`` started — the same definition
   as the profile's (peak minus resident memory after imports).

Prints a table (estimated, measured, ratio) and writes ``benchmarks/results/advise_accuracy.json``.

    python benchmarks/advise_accuracy.py                      # ~13 minutes on the 2-core CPU (SmolLM2: 5)
    python benchmarks/advise_accuracy.py --write-reference    # profile the packaged models (see write_reference)
                                                              # and regenerate advise/reference.py
    python benchmarks/advise_accuracy.py --add-image-reference   # add this machine's image options to it
    python benchmarks/advise_accuracy.py --only fashion-effnet-full-64 ...   # some cases (others' results kept)
"""

from __future__ import annotations

import argparse
import json
import os
import pprint
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "advise_accuracy.json"
REFERENCE_PY = ROOT / "src" / "taskfit" / "advise" / "reference.py"

#: (name, dataset, rows, max_length, model, method, languages)
CASES = (
    ("bbc-minilm-full", "bbc_news", 500, 128, "all-MiniLM-L6-v2", "full", ("en",)),
    ("bbc-minilm-lora-64", "bbc_news", 500, 64, "all-MiniLM-L6-v2", "lora", ("en",)),
    ("zh-e5-lora", "zh_sentiment", 500, 128, "multilingual-e5-small", "lora", ("zh",)),
    # generation: chat pairs, tokens of the chat template around prompt and response, batches packed into rows
    # of max_length tokens
    ("chat-smollm2-lora", "chat_en", 500, 256, "SmolLM2-135M-Instruct", "lora", ("en",)),
    # images: the fourth field is the side images train at (task.image_size); the profile measures 64 and 224 px
    # (the task's default), so these are at both profiled sides and between them
    ("fashion-effnet-full-64", "fashion_mnist", 2000, 64, "efficientnet-lite0", "full", ()),
    ("fashion-mobilenet-full-112", "fashion_mnist", 1000, 112, "mobilenet_v2", "full", ()),
    ("fashion-effnet-frozen-224", "fashion_mnist", 500, 224, "efficientnet-lite0", "frozen", ()),
)


def task_of(dataset: str) -> str:
    from taskfit.data.packaged import DATASETS

    return DATASETS.get(dataset).task

def _auto_precision() -> str:
    """What ``train.precision: auto`` picks on this machine (bf16 where the CPU computes it natively, e.g.
    AVX-512-BF16 / AMX; fp32 elsewhere): the precision a user's real run would use. Stated in the output."""
    import torch

    from taskfit.train.loop import pick_precision

    return "bf16" if pick_precision("auto", torch.device("cpu")) is not None else "fp32"


PRECISION = _auto_precision()

DRIVER = r"""
import json, sys, time
from pathlib import Path
from taskfit.advise.probe import rss_mb
from taskfit.config import parse_recipe
from taskfit.pipeline import train_recipe
from taskfit.train import Progress

class Steps(Progress):
    # The loop calls step() right after each optimiser step, before any validation or checkpoint write, so
    # the span start() .. last step() is the training steps alone, in wall-clock and in CPU seconds.
    t = {}
    def start(self, total, done):
        Steps.t.update(wall0=time.perf_counter(), cpu0=time.process_time(), peak=0.0)
    def step(self, step, loss, lr, rate):
        Steps.t.update(wall=time.perf_counter(), cpu=time.process_time(), peak=rss_mb("VmHWM"))

recipe = parse_recipe(json.loads(Path(sys.argv[1]).read_text()))
base = rss_mb()
t0 = time.perf_counter()
s = train_recipe(recipe, progress=Steps())
t = Steps.t
print(json.dumps({"train_s": s.train.train_seconds, "steps": s.train.steps, "samples": s.train.samples_seen,
                  "span_s": t["wall"] - t["wall0"], "cpu_s": t["cpu"] - t["cpu0"],
                  "tokens": s.train.tokens_seen, "precision": s.train.precision, "wall_s": time.perf_counter() - t0,
                  "peak_mb": t["peak"] - base, "base_mb": base,
                  "accuracy": (s.test_metrics or {}).get("accuracy")}))
"""


def load() -> float:
    return round(os.getloadavg()[0], 2)


def real_run(csv: Path, case: tuple[Any, ...], tmp: Path) -> dict[str, Any]:
    name, dataset, _, max_length, model, method, _ = case
    task: Any = task_of(dataset)
    if task == "generation":  # a few greedy replies only: the evaluation is not what is being estimated
        task = {"name": "generation", "eval_prompts": 4, "max_new_tokens": 16}
    if task == "image_classification":
        task = {"name": "image_classification", "image_size": max_length}
    recipe = {"task": task, "data": {"train": str(csv), "max_length": max_length},
              "model": {"name": model}, "method": {"name": method},
              "train": {"epochs": 1, "batch_size": 32, "precision": PRECISION, "lr": 1e-4, "seed": 0},
              "output": {"dir": str(tmp / "runs"), "name": name, "overwrite": True}}
    spec = tmp / f"{name}.json"
    spec.write_text(json.dumps(recipe), encoding="utf-8")
    res = subprocess.run([sys.executable, "-c", DRIVER, str(spec)], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"training {name} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run_cases(steps: int, only: list[str] | None = None) -> dict[str, Any]:
    from taskfit.advise import ProfileSettings, Workload, advise, run_profile
    from taskfit.advise.estimate import train_seconds
    from taskfit.advise.tokens import data_tokens, image_rows
    from taskfit.data.packaged import write_dataset

    out: dict[str, Any] = {"load_start": load(), "precision": PRECISION, "cases": []}
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="advise-acc-") as d:
        tmp = Path(d)
        cases = [c for c in CASES if not only or c[0] in only]
        models = sorted({c[4] for c in cases})
        methods = sorted({c[5] for c in cases})
        t0 = time.perf_counter()
        wanted = {(c[4], c[5]) for c in cases}
        prof_path = tmp / "profile.json"
        doc: dict[str, Any] = {}
        for model, method in sorted(wanted):  # only the options the cases use (not the full product)
            run = run_profile([model], [method], [PRECISION], out=prof_path, settings=ProfileSettings(steps=steps),
                              force=False)
            doc = run.doc
            if run.failed:
                raise SystemExit(f"profile failed: {run.failed}")
        out["profile_s"] = round(time.perf_counter() - t0, 1)
        out["machine"] = doc["machine"]
        out["profile"] = doc
        print(f"profiled {len(doc['options'])} options of {models} × {methods} in {out['profile_s']} s "
              f"(load {load()})", flush=True)
        for case in cases:
            name, dataset, rows, max_length, model, method, langs = case
            task = task_of(dataset)
            if task == "image_classification":  # a folder of PNGs; a row's "tokens" are its pixels
                csv = write_dataset(dataset, tmp / f"{dataset}-{rows}", n=rows, seed=0)
                side = max_length
                work = Workload(task, image_rows(csv), None, (), epochs=1.0, batch_size=32,
                                tokens=float(side * side), longest=side, image_side=side)
                mean_tokens, longest = side * side, side
            else:
                csv = write_dataset(dataset, tmp / f"{dataset}-{rows}.csv", n=rows, seed=0)
                counted = data_tokens(csv, "text", [model], max_length=max_length, task=task)
                work = counted.workload(Workload(task, counted.rows, None, langs, epochs=1.0, batch_size=32))
                mean_tokens, longest = round(counted.mean[model], 1), counted.longest[model]
            one = {"options": {k: v for k, v in doc["options"].items() if k.startswith(f"{model}|{method}|")},
                   "settings": doc["settings"], "machine": doc["machine"]}
            advice = advise(work, one)
            opt = (advice.ranked or advice.rejected)[0]
            measured = real_run(csv, case, tmp)
            est = opt.estimate
            _, est_cpu, _ = train_seconds(one["options"][f"{model}|{method}|{PRECISION}"], work, "cpu_s")
            row = {"case": name, "model": model, "method": method, "rows": rows, "train_rows": work.train_rows,
                   "max_length": max_length, "mean_tokens": mean_tokens,
                   "longest": longest, "est_steps": est.steps, "steps": measured["steps"],
                   "est_train_s": round(est.train_s, 2), "train_s": round(measured["train_s"], 2),
                   "time_ratio": round(est.train_s / measured["train_s"], 3),
                   "est_cpu_s": round(est_cpu, 2), "cpu_s": round(measured["cpu_s"], 2),
                   "cpu_ratio": round(est_cpu / measured["cpu_s"], 3),
                   "est_peak_mb": round(est.peak_mb, 1), "peak_mb": round(measured["peak_mb"], 1),
                   "memory_ratio": round(est.peak_mb / measured["peak_mb"], 3),
                   "est_total_s": round(est.total_s, 1), "wall_s": round(measured["wall_s"], 1),
                   "precision": measured["precision"], "test_accuracy": measured["accuracy"], "load": load()}
            out["cases"].append(row)
            print(f"{name}: est {row['est_train_s']} s vs {row['train_s']} s; est {row['est_peak_mb']} MB vs "
                  f"{row['peak_mb']} MB (load {row['load']})", flush=True)
    out["total_s"] = round(time.perf_counter() - t_all, 1)
    out["load_end"] = load()
    out["within_30pct"] = all(0.7 <= c["time_ratio"] <= 1.3 and 0.7 <= c["memory_ratio"] <= 1.3
                              for c in out["cases"])
    out["within_30pct_cpu_time"] = all(0.7 <= c["cpu_ratio"] <= 1.3 for c in out["cases"])
    return out


def print_table(out: dict[str, Any]) -> None:
    head = ("case", "steps est/real", "train s est", "train s real", "ratio", "CPU s est", "CPU s real", "ratio",
            "peak MB est", "peak MB real", "ratio", "wall s est/real")
    print("\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for c in out["cases"]:
        print(f"| {c['case']} | {c['est_steps']}/{c['steps']} | {c['est_train_s']} | {c['train_s']} | "
              f"{c['time_ratio']} | {c['est_cpu_s']} | {c['cpu_s']} | {c['cpu_ratio']} | "
              f"{c['est_peak_mb']} | {c['peak_mb']} | {c['memory_ratio']} | {c['est_total_s']}/{c['wall_s']} |")
    print(f"\nwall-clock time and memory within ±30%: {out['within_30pct']}; CPU time within ±30%: "
          f"{out['within_30pct_cpu_time']}; load {out['load_start']} → {out['load_end']}; "
          f"{out['total_s']} s in all; machine {out['machine']['cpu']} ({out['machine']['cpu_cores']} cores)")


IMAGE_REFERENCE = (["efficientnet-lite0", "mobilenet_v2"], ["full", "frozen"], ["fp32"])


def _write_reference_py(doc: dict[str, Any]) -> None:
    src = ('"""Reference figures: a `taskfit profile` table measured on the project\'s 2-core CPU machine.\n\n'
           "Used by ``taskfit advise`` when this machine has no profile; the advice then says \"not profiled on this\n"
           "machine\". Generated by ``python benchmarks/advise_accuracy.py --write-reference`` (do not edit); options\n"
           "carrying ``measured_on`` were added later from another machine by ``--add-image-reference``.\n"
           '"""\n\nfrom __future__ import annotations\n\nfrom typing import Any\n\n'
           f"REFERENCE: dict[str, Any] = {pprint.pformat(doc, width=110, sort_dicts=False)}\n")
    REFERENCE_PY.write_text(src, encoding="utf-8")


def write_reference(steps: int) -> None:
    """Profile every installed packaged model × method × precision and regenerate advise/reference.py."""
    from taskfit.advise import ProfileSettings, run_profile
    from taskfit.advise.profile import default_models

    path = ROOT / "benchmarks" / "out" / "advise-reference-profile.json"
    load0 = load()
    # bf16 is what train.precision=auto runs on this CPU; fp32 for the fastest model only (a profile of your
    # own machine measures every precision). SmolLM2 (generation) is left out: ~6 min on a shared 2-core machine.
    # Images: fp32 only (train.precision=auto means fp32 for images on a CPU).
    doc: dict[str, Any] = {}
    failed: dict[str, str] = {}
    for models, methods, precisions in ((["all-MiniLM-L6-v2"], ["full", "lora", "frozen"], ["bf16", "fp32"]),
                                        (["multilingual-e5-small"], ["full", "lora", "frozen"], ["bf16"]),
                                        IMAGE_REFERENCE):
        run = run_profile([m for m in models if m in default_models()], methods, precisions, out=path,
                          settings=ProfileSettings(steps=steps),
                          on_option=lambda key, state: print(f"{key}: {state} (load {load()})", flush=True))
        doc, failed = dict(run.doc), {**failed, **run.failed}
    doc["machine"] = {**doc["machine"], "host": "taskfit reference machine", "load_during_profile": [load0, load()]}
    _write_reference_py(doc)
    print(f"wrote {REFERENCE_PY} ({len(doc['options'])} options; failed: {failed or 'none'})")


def add_image_reference(steps: int) -> None:
    """Profile the packaged image models on this machine and add them to the built-in reference, keeping its
    other options; each added option records the machine it was measured on (``measured_on``), which advice
    states next to the reference's own machine."""
    from taskfit.advise import ProfileSettings, run_profile
    from taskfit.advise.reference import REFERENCE

    path = ROOT / "benchmarks" / "out" / "advise-image-reference-profile.json"
    load0 = load()
    settings = ProfileSettings(steps=steps)
    run = run_profile(*IMAGE_REFERENCE, out=path, settings=settings, force=True,
                      on_option=lambda key, state: print(f"{key}: {state} (load {load()})", flush=True))
    if run.failed:
        raise SystemExit(f"profile failed: {run.failed}")
    m = run.doc["machine"]
    on = {"cpu": m["cpu"], "cpu_cores": m["cpu_cores"], "torch_threads": m["torch_threads"],
          "cpu_bf16": m["cpu_bf16"], "torch": m["torch"], "load_during_profile": [load0, load()],
          "settings": run.doc["settings"]}
    doc = {**REFERENCE, "options": {k: v for k, v in REFERENCE["options"].items() if v.get("kind") != "image"}}
    doc["options"].update({k: {**v, "measured_on": on} for k, v in run.doc["options"].items()})
    _write_reference_py(doc)
    print(f"added {len(run.doc['options'])} image options to {REFERENCE_PY}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed profile steps per batch shape (as `taskfit profile`)")
    ap.add_argument("--write-reference", action="store_true", help="regenerate the built-in reference profile")
    ap.add_argument("--add-image-reference", action="store_true",
                    help="profile the packaged image models here and add them to the built-in reference")
    ap.add_argument("--only", nargs="+", choices=[c[0] for c in CASES], help="run these cases only")
    args = ap.parse_args()
    if args.write_reference:
        write_reference(args.steps)
        return
    if args.add_image_reference:
        add_image_reference(args.steps)
        return
    out = run_cases(args.steps, args.only)
    print_table(out)
    if args.only and RESULTS.is_file():  # keep the other cases' last results, each row with its own load
        kept = [c for c in json.loads(RESULTS.read_text(encoding="utf-8"))["cases"] if c["case"] not in args.only]
        out["cases"] = kept + out["cases"]
        out["partial_run"] = args.only
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
