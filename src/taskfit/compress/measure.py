"""Measure one model directory: score on labelled rows, size on disk, latency, throughput and peak memory.

Run in a fresh process per model (``python -m taskfit.compress.measure MODEL_DIR ROWS.jsonl OUT.json``) so
the peak resident memory of one model does not leak into another's figure and every model starts cold
in the same way. Latency is end to end for one text (tokenise + forward + softmax) through
:class:`taskfit.inference.Predictor`, the call ``taskfit predict`` and ``taskfit serve`` make.

The throughput ratio is measured again with both models in one process (``... MODEL_DIR ROWS.jsonl OUT.json
--paired-with SOURCE_DIR``: after the compressed model's own figures, memory included, are taken, the
source is loaded beside it; :func:`paired_throughput`): rounds that time each model back to back on the same
batches, the ratio being the median of the per-round ratios. Two processes measured
minutes apart on a shared machine (or a VM whose host steals time) can differ by 2× on their own; paired
rounds see the same conditions.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

LATENCY_CALLS = 60
THROUGHPUT_BATCH = 32
PAIRED_ROUNDS = 5


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MB. Linux's VmHWM belongs to the current address space;
    ``ru_maxrss`` would carry the parent's peak across fork + exec (getrusage(2)), so it is only the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def dir_size_mb(path: Path) -> float:
    """Size of the model files (weights, graph, tokenizer, config) in MB."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def measure(model_dir: Path, rows_file: Path) -> dict[str, Any]:
    import pandas as pd
    import torch

    from taskfit.inference import Predictor

    base_rss = peak_rss_mb()
    t0 = time.perf_counter()
    pred = Predictor.load(model_dir)
    load_s = time.perf_counter() - t0
    frame = pd.read_json(rows_file, lines=True, dtype=False)
    task, labels = pred.task, pred.labels
    enc = task.encode(frame, pred.processor, labels)
    with torch.inference_mode():
        scores = task.evaluate(pred.model, enc, labels, pred.device, pred.dtype)
        texts = [str(t) for t in frame[task.text]]
        for t in texts[:5]:  # warm-up: first calls allocate and pick kernels
            pred.outputs([t])  # the forward pass alone: regression has no probabilities
        lat = []
        for i in range(LATENCY_CALLS):
            t1 = time.perf_counter()
            pred.outputs([texts[i % len(texts)]])
            lat.append(time.perf_counter() - t1)
        batches = [texts[i:i + THROUGHPUT_BATCH] for i in range(0, len(texts), THROUGHPUT_BATCH)]
        pred.outputs(batches[0])
        t2 = time.perf_counter()
        for b in batches:
            pred.outputs(b)
        thr = len(texts) / (time.perf_counter() - t2)
    peak = peak_rss_mb()
    headline = {k: scores[k] for k in task.headline if isinstance(scores.get(k), float)}
    return {"metrics": headline, "n": int(scores.get("n", len(frame))), "size_mb": round(dir_size_mb(model_dir), 2),
            "latency_p50_ms": round(float(np.percentile(lat, 50)) * 1000, 3),
            "latency_p95_ms": round(float(np.percentile(lat, 95)) * 1000, 3),
            "throughput_per_s": round(thr, 1), "peak_rss_mb": round(peak, 1),
            "model_rss_mb": round(peak - base_rss, 1), "load_s": round(load_s, 2),
            "threads": torch.get_num_threads()}


def paired_throughput(dirs: list[Path], texts: list[str], rounds: int = PAIRED_ROUNDS, clock: str = "wall",
                      batch: int = THROUGHPUT_BATCH) -> list[dict[str, Any]]:
    """Batch throughput of several models on the same texts, in rounds that time each model back to back.

    Returns one dict per model: ``ratio`` (median over rounds of its rate / the first model's rate in the
    same round), ``rows_per_s`` (median rate) and ``ratios`` (every round's, sorted). ``clock="wall"``:
    wall-clock time with the default threads, what a user sees. ``clock="cpu"``: CPU time of the process
    with one thread (PyTorch and ONNX Runtime both run in the calling thread), which other processes' load
    and a hypervisor's steal time barely change: the work each model does.
    """
    import statistics

    import torch

    from taskfit.inference import Predictor
    from taskfit.models.exported import OnnxModel

    threads = torch.get_num_threads()
    if clock == "cpu":
        torch.set_num_threads(1)
    models = []
    for d in dirs:
        p = Predictor.load(d)
        if clock == "cpu" and isinstance(p.model, OnnxModel):
            p.model = OnnxModel(p.model.path, threads=1)
        models.append(p)
    timer = time.process_time if clock == "cpu" else time.perf_counter
    batches = [texts[i:i + batch] for i in range(0, len(texts), batch)]
    rates: list[list[float]] = [[] for _ in dirs]
    try:
        with torch.inference_mode():
            for m in models:
                m.outputs(batches[0])  # warm-up: first calls allocate and pick kernels
            for _ in range(rounds):
                for i, m in enumerate(models):
                    t0 = timer()
                    for b in batches:
                        m.outputs(b)
                    rates[i].append(len(texts) / max(timer() - t0, 1e-9))
    finally:
        torch.set_num_threads(threads)
    out = []
    for r in rates:
        ratios = sorted(a / b for a, b in zip(r, rates[0], strict=True))
        out.append({"ratio": round(statistics.median(ratios), 3), "rows_per_s": round(statistics.median(r), 1),
                    "ratios": [round(x, 3) for x in ratios]})
    return out


def _texts(model_dir: Path, rows_file: Path) -> list[str]:
    import pandas as pd

    from taskfit.tasks import TASKS

    meta = json.loads((model_dir / "taskfit.json").read_text(encoding="utf-8"))
    frame = pd.read_json(rows_file, lines=True, dtype=False)
    return [str(t) for t in frame[TASKS.get(meta["task"]).from_meta(meta).text]]


def main() -> None:
    from taskfit.utils.env import offline_defaults

    offline_defaults()
    model_dir, rows_file, out = (Path(a) for a in sys.argv[1:4])
    result = measure(model_dir, rows_file)
    if sys.argv[4:5] == ["--paired-with"]:  # after measure(): the source's memory stays out of the figures
        source = Path(sys.argv[5])
        before, after = paired_throughput([source, model_dir], _texts(model_dir, rows_file))
        result["paired"] = {"rounds": PAIRED_ROUNDS, "clock": "wall", "before_per_s": before["rows_per_s"],
                            "after_per_s": after["rows_per_s"], "ratio": after["ratio"], "ratios": after["ratios"]}
    out.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
