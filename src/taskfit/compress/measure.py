"""Measure one model directory: score on labelled rows, size on disk, latency, throughput and peak memory.

Run in a fresh process per model (``python -m taskfit.compress.measure MODEL_DIR ROWS.jsonl OUT.json``) so
the peak resident memory of one model does not leak into another's figure and every model starts cold
in the same way. Latency is end to end for one text (tokenise + forward + softmax) through
:class:`taskfit.inference.Predictor`, the call ``taskfit predict`` and ``taskfit serve`` make.
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


def main() -> None:
    from taskfit.utils.env import offline_defaults

    offline_defaults()
    model_dir, rows_file, out = (Path(a) for a in sys.argv[1:4])
    result = measure(model_dir, rows_file)
    out.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
