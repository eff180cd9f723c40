"""Paired throughput of several saved models on the same batches, robust to a shared machine.

Every round times each model once over all batches of 32, back to back, and each model's figure is the median
over rounds of its rate divided by the first model's rate in the same round. Two clocks:

- ``cpu``: CPU time of the process with one thread (PyTorch ``set_num_threads(1)``, ONNX Runtime sessions
  rebuilt with one intra-op thread, which then runs in the calling thread). Other processes' load and a
  hypervisor's steal time change wall-clock time a lot and this little; it is the work each model does.
- ``wall``: wall-clock time with the default threads (all cores), what a user sees on an idle machine.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any


def paired_throughput(dirs: list[Path], texts: list[str], rounds: int = 5, clock: str = "cpu",
                      batch: int = 32) -> list[dict[str, Any]]:
    """One dict per model dir: ``ratio`` (median of per-round rate / first model's rate), ``rows_per_s``
    (median rate), ``ratios`` (every round's, sorted)."""
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
                    rates[i].append(len(texts) / (timer() - t0))
    finally:
        torch.set_num_threads(threads)
    out = []
    for r in rates:
        ratios = sorted(a / b for a, b in zip(r, rates[0], strict=True))
        out.append({"ratio": round(statistics.median(ratios), 3), "rows_per_s": round(statistics.median(r), 1),
                    "ratios": [round(x, 3) for x in ratios]})
    return out
