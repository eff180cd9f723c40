"""Drift monitor on real text: what it flags, and what it costs the service.

    .venv/bin/python benchmarks/drift_check.py [--out benchmarks/results/drift_check.json]

Reference: an English news model's (BBC news: vocabulary of 1,500 training rows, features of 400 held-out
rows; the predicted label and confidence are stand-ins, no model is called). Windows of 200 inputs:

- BBC rows never seen (no drift expected), the same rows repeated 3× (length shift),
- Chinese product reviews mixed in at 10 / 25 / 50 / 100 % (language, vocabulary and length shift),

each with PSI and KS per feature and the monitor's verdict. Cost: ``Monitor.observe`` per input (the part on
the service's answer path) and ``drift()`` at 1k / 10k / 100k inputs in the window. Writes JSON results.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/drift_check.json"))
    ap.add_argument("--window", type=int, default=200)
    args = ap.parse_args()

    import pandas as pd

    from taskfit.config import MonitorConfig
    from taskfit.data.packaged import write_dataset
    from taskfit.serve.drift import Reference
    from taskfit.serve.monitor import Monitor
    from taskfit.serve.records import PredictionRecord

    tmp = Path("benchmarks/out/drift_check")
    tmp.mkdir(parents=True, exist_ok=True)
    bbc = pd.read_csv(write_dataset("bbc_news", tmp / "bbc.csv", n=None, seed=0))["text"].astype(str).tolist()
    zh = pd.read_csv(write_dataset("zh_sentiment", tmp / "zh.csv", n=None, seed=0))["text"].astype(str).tolist()
    labels = ["business", "entertainment", "politics", "sports", "tech"]
    rng = random.Random(0)
    rng.shuffle(bbc)  # the packaged file is sorted by topic; reference and windows must mix topics

    def outputs(n: int) -> tuple[list[str], list[float]]:
        return [labels[rng.randrange(5)] for _ in range(n)], [0.5 + 0.5 * rng.random() for _ in range(n)]

    held = bbc[1500:1900]
    ref = Reference.build(bbc[:1500], held, *outputs(len(held)), labels)
    settings = MonitorConfig(min_count=50, rules=[])

    def window(texts: list[str]) -> dict:
        mon = Monitor("news", settings, ref, labels)
        labs, conf = outputs(len(texts))
        now = datetime.now(UTC)
        mon.observe([PredictionRecord(uuid.uuid4().hex, "news", "1", t, lab, c, {}, 1.0, None, now)
                     for t, lab, c in zip(texts, labs, conf, strict=True)])
        return mon.drift()

    fresh = bbc[1900:1900 + args.window]
    scenarios = {"bbc_unseen": fresh, "bbc_repeated_3x": [" ".join([t] * 3) for t in fresh]}
    for share in (0.1, 0.25, 0.5, 1.0):
        k = round(share * args.window)
        mixed = fresh[: args.window - k] + zh[:k]
        rng.shuffle(mixed)
        scenarios[f"zh_{int(share * 100)}pct"] = mixed
    rows = []
    print(f"{'scenario':18} {'verdict':7} " + " ".join(f"{f + ' PSI':>15}" for f in ("length", "language", "oov"))
          + f" {'length KS p':>12} {'oov KS p':>10}")
    for name, texts in scenarios.items():
        d = window(texts)
        f = d["features"]
        rows.append({"scenario": name, "n": d["count"], "status": d["status"],
                     **{f"{k}_psi": round(f[k]["psi"], 4) for k in ("length", "language", "oov")},
                     "length_ks_p": f["length"]["ks_p"], "oov_ks_p": f["oov"]["ks_p"],
                     "drifted": sorted(k for k, v in f.items() if v["drifted"])})
        r = rows[-1]
        print(f"{name:18} {r['status']:7} {r['length_psi']:15.3f} {r['language_psi']:15.3f} {r['oov_psi']:15.3f} "
              f"{r['length_ks_p']:12.2e} {r['oov_ks_p']:10.2e}")

    # cost on the answer path: observe() of batches of 32, English and Chinese
    cost = {}
    for lang, pool in (("en", bbc), ("zh", zh)):
        mon = Monitor("news", settings, ref, labels)
        recs = [PredictionRecord(uuid.uuid4().hex, "news", "1", pool[i % len(pool)], "tech", 0.9, {}, 1.0)
                for i in range(3200)]
        t0 = time.perf_counter()
        for i in range(0, len(recs), 32):
            mon.observe(recs[i:i + 32])
        cost[f"observe_us_per_input_{lang}"] = round((time.perf_counter() - t0) / len(recs) * 1e6, 1)
    for n in (1_000, 10_000, 100_000):
        mon = Monitor("news", settings, ref, labels)
        mon.observe([PredictionRecord(uuid.uuid4().hex, "news", "1", bbc[i % len(bbc)][:300], "tech", 0.9, {}, 1.0)
                     for i in range(n)])
        t0 = time.perf_counter()
        mon.drift()
        cost[f"drift_ms_at_{n}"] = round((time.perf_counter() - t0) * 1e3, 1)
    print("\ncost: " + ", ".join(f"{k} {v}" for k, v in cost.items()))
    load = os.getloadavg()[0]
    print(f"load average (1 min) {load:.2f} on {os.cpu_count()} cores")
    result = {"window": args.window, "reference_rows": len(held), "scenarios": rows, "cost": cost,
              "machine": {"cpu_cores": os.cpu_count(), "load_1min": round(load, 2),
                          "python": platform.python_version()},
              "created": datetime.now(UTC).isoformat(timespec="seconds")}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
