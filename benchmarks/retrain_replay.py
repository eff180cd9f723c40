"""Forgetting and replay: `taskfit retrain` on skewed feedback, with and without replay of the training data.

    .venv/bin/python benchmarks/retrain_replay.py [--base-steps 40] [--steps 15] [--lr 1e-4]

MiniLM (packaged) fine-tuned on 300 real BBC news rows; then feedback on 56 unseen BBC rows, skewed the way
users correct what they see most (40 business, 4 of each other topic), goes through ``retrain_run`` twice with
the same steps: ``--replay 0`` (feedback only) and ``--replay 1.0`` (all original training rows mixed in).
Prints macro-F1 before/after on the OLD test set (the run's test split) and the NEW one (held-out feedback),
and the gate's decision at tolerance 0.02. Results go to benchmarks/results/retrain_replay.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-steps", type=int, default=40)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--work", type=Path, default=Path("benchmarks/out/retrain_replay"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/retrain_replay.json"))
    args = ap.parse_args()

    from taskfit.utils.env import offline_defaults

    offline_defaults()
    import pandas as pd

    from taskfit.config import parse_recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe
    from taskfit.serve.db import Store
    from taskfit.serve.records import PredictionRecord
    from taskfit.serve.retrain import retrain_run

    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    data = write_dataset("bbc_news", args.work / "bbc.csv", n=300, seed=0)
    every = pd.read_csv(write_dataset("bbc_news", args.work / "all.csv", n=None, seed=0))
    unseen = every[~every["text"].isin(set(pd.read_csv(data)["text"]))]
    t0 = time.perf_counter()
    run = train_recipe(parse_recipe({
        "data": {"train": str(data), "max_length": 64}, "model": {"name": "all-MiniLM-L6-v2"},
        "method": {"name": "full"}, "output": {"dir": str(args.work / "runs"), "name": "news"},
        "train": {"max_steps": args.base_steps, "lr": args.lr, "batch_size": 16, "seed": 0,
                  "checkpoint_every": 1000}}))
    base_s = time.perf_counter() - t0
    store = Store(f"sqlite:///{args.work / 'serve.db'}")
    feedback = pd.concat([unseen[unseen["label"] == "business"].head(40)]
                         + [unseen[unseen["label"] == c].head(4) for c in ("entertainment", "politics", "sports",
                                                                            "tech")])
    records = [PredictionRecord(uuid.uuid4().hex, "news", "1", t, "tech", 0.5, {}, 1.0) for t in feedback["text"]]
    store.log_predictions(records, mask=False)
    for rec, label in zip(records, feedback["label"], strict=True):
        store.add_feedback(rec.request_id, label)
    rows = []
    for replay in (0.0, 1.0):
        t0 = time.perf_counter()
        res = retrain_run(run.run_dir, store, out=args.work / f"retrain-replay-{replay:g}", replay=replay,
                          tolerance=0.02, overrides={"max_steps": args.steps, "lr": args.lr})
        r = res.report
        rows.append({"replay": replay, "rows": r["rows"], "scores": r["scores"], "gate": r["gate"],
                     "seconds": round(time.perf_counter() - t0, 1)})
    store.close()
    print(f"{'replay':>6} {'train rows':>10} {'old before':>10} {'old after':>9} {'new before':>10} "
          f"{'new after':>9} gate")
    for r in rows:
        o, n = r["scores"]["old_test"], r["scores"]["new_test"]
        print(f"{r['replay']:6g} {r['rows']['train']:10d} {o['before']:10.4f} {o['after']:9.4f} {n['before']:10.4f} "
              f"{n['after']:9.4f} {r['gate']}")
    load = os.getloadavg()[0]
    print(f"base run {base_s:.0f} s; load average (1 min) {load:.2f} on {os.cpu_count()} cores")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"base_steps": args.base_steps, "steps": args.steps, "lr": args.lr,
                                    "metric": "macro_f1", "results": rows, "base_seconds": round(base_s, 1),
                                    "load_1min": round(load, 2), "cpu_cores": os.cpu_count(),
                                    "created": datetime.now(UTC).isoformat(timespec="seconds")}, indent=2) + "\n",
                        encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
