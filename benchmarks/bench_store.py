"""What the serving database costs per request: API-key checks and request logging, SQLite vs PostgreSQL.

For each backend (a SQLite file in WAL mode; a throwaway PostgreSQL server started like the tests do, skipped
when its binaries are absent):

1. ``create_key`` (one scrypt hash) and the first ``verify_key`` of a key (scrypt again) vs later ones (row read +
   cached SHA-256 digest), median of many calls;
2. ``Auth.check`` as a route dependency runs it: verify, scope, token bucket, quota counted in the database
   (one write transaction), median and p95 over single-thread calls, and requests/s with 4 threads at once;
3. ``log_predictions`` rows/s for batches of 32, with PII masking (Presidio + taskfit recognisers) and without.

Prints a table and writes ``benchmarks/results/store.json``. About 1 minute:

    python benchmarks/bench_store.py
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "store.json"
TEXTS = ["The match ended 2-1 after extra time.", "请联系张伟，电话 13812345678，邮箱 zw@example.com",
         "Shares fell 3% after the report; contact ir@company.com.", "新款手机续航很好，物流也快。"]


def _ms(fn: Callable[[], Any], n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def _p95(xs: list[float]) -> float:
    return sorted(xs)[int(0.95 * (len(xs) - 1))]


def measure(url: str) -> dict[str, Any]:
    """All figures for one database URL (an empty database)."""
    from taskfit.serve.auth import Auth
    from taskfit.serve.db import Store
    from taskfit.serve.records import PredictionRecord

    store = Store(url)
    res: dict[str, Any] = {"backend": store.dialect}
    t = time.perf_counter()
    raw = store.create_key("bench", scopes=["predict"], rate_per_minute=10**9, quota=10**9)
    res["create_key_ms"] = (time.perf_counter() - t) * 1000
    t = time.perf_counter()
    store.verify_key(raw)
    res["verify_first_ms"] = (time.perf_counter() - t) * 1000
    res["verify_cached_ms"] = statistics.median(_ms(lambda: store.verify_key(raw), 300))
    auth = Auth(store)
    single = _ms(lambda: auth.check(raw, "predict"), 300)
    res["auth_check_ms_p50"], res["auth_check_ms_p95"] = statistics.median(single), _p95(single)

    def hammer(n: int) -> None:
        for _ in range(n):
            auth.check(raw, "predict")

    threads = [threading.Thread(target=hammer, args=(100,)) for _ in range(4)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    res["auth_check_4_threads_per_s"] = 400 / (time.perf_counter() - t)
    res["key_used_after"] = store.list_keys()[0].used  # 1 + 300 + 400 counted exactly

    def batch(i: int) -> list[PredictionRecord]:
        return [PredictionRecord(f"r{i}-{j}", "news", "1", f"{TEXTS[j % len(TEXTS)]} #{i}-{j}", "sport", 0.9,
                                 {"label": "sport"}, 3.0) for j in range(32)]

    from taskfit.trust.pii import engines

    engines()  # Presidio start-up is a one-off, not per-row cost
    for mask in (False, True):
        batches = [batch(i + (1000 if mask else 0)) for i in range(8)]
        t = time.perf_counter()
        for b in batches:
            store.log_predictions(b, mask=mask)
        res[f"log_rows_per_s_{'masked' if mask else 'unmasked'}"] = 32 * len(batches) / (time.perf_counter() - t)
    store.close()
    return res


def main() -> None:
    sys.path.insert(0, str(ROOT / "tests"))  # the PostgreSQL fixture of the tests starts the server the same way
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rows.append(measure(f"sqlite:///{Path(tmp) / 'bench.db'}"))
    from serve import pg  # tests/serve/pg.py

    server = None
    if pg.pg_bin() is None:
        print("PostgreSQL binaries not found: PostgreSQL row skipped")
    else:
        try:
            server = pg._acquire()
            rows.append(measure(server.new_database()))
        finally:
            if server is not None:
                pg._release()
    cols = ["backend", "create_key_ms", "verify_first_ms", "verify_cached_ms", "auth_check_ms_p50",
            "auth_check_ms_p95", "auth_check_4_threads_per_s", "log_rows_per_s_unmasked", "log_rows_per_s_masked"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    load = os.getloadavg()
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"rows": rows, "load_avg_1_5_15": load, "cpus": os.cpu_count()}, indent=2))
    print(f"load average {load[0]:.1f} {load[1]:.1f} {load[2]:.1f} on {os.cpu_count()} CPUs; wrote {RESULTS}")


if __name__ == "__main__":
    main()
