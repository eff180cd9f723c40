"""Load test of `taskfit serve`: throughput and latency with and without micro-batching, and 10× overload.

    .venv/bin/python benchmarks/load_test.py [--run RUN_DIR] [--seconds 8] [--out benchmarks/out/load]

Starts `taskfit serve` in a subprocess on a free loopback port (keys off, SQLite request log on) and drives it
from this process with an async httpx client: closed-loop phases with 1, 8 and 64 concurrent clients, each
sending one real BBC news text per request, for ``--seconds`` each, once with micro-batching (max_batch 32)
and once one-at-a-time (max_batch 1). Then an open-loop overload at 10× the best measured throughput: every
request must be answered (200, or 429/503 when the queue is full) and the server must stay ready. Without
``--run`` it trains a MiniLM run for a few steps first (the weights' quality does not change the speed).
Results go to benchmarks/results/load_test.json and a table is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import numpy as np


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def train_run(out: Path) -> Path:
    from taskfit.config import Recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe

    data = write_dataset("bbc_news", out / "bbc.csv", n=300, seed=0)
    recipe = Recipe.model_validate({
        "data": {"train": str(data), "max_length": 128}, "model": {"name": "all-MiniLM-L6-v2"},
        "train": {"max_steps": 3, "batch_size": 16, "lr": 1e-4, "seed": 0},
        "output": {"dir": str(out / "runs"), "name": "news", "overwrite": True}})
    return Path(train_recipe(recipe).run_dir)


class Server:
    """`taskfit serve` in its own process group, stopped with SIGTERM (SIGKILL after 30 s)."""

    def __init__(self, run: Path, max_batch: int, out: Path, threads: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (out / f"serve-batch{max_batch}.log").open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "taskfit", "serve", str(run), "--name", "news", "--port", str(self.port),
             "--no-keys", "--max-batch", str(max_batch), "--db", f"sqlite:///{out / f'serve{max_batch}.db'}",
             "--log-level", "warning", *(["--threads", str(threads)] if threads else [])],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})

    def wait_ready(self, timeout: float = 180) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}; see {self.log.name}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise RuntimeError("server not ready")

    def stop(self) -> int | None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return None
        except ProcessLookupError:
            return self.proc.poll()
        finally:
            self.log.close()


def batch_totals(url: str) -> tuple[float, float]:
    """(inputs, forward passes) so far, from the server's Prometheus batch-size histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(("taskfit_batch_size_sum", "taskfit_batch_size_count"))}
    return values.get("taskfit_batch_size_sum", 0.0), values.get("taskfit_batch_size_count", 0.0)


def summarise(latencies: list[float], statuses: Counter[str], seconds: float) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1000.0
    ok = statuses.get("200", 0)
    return {"requests": sum(statuses.values()), "ok": ok, "throughput_per_s": ok / seconds,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None, "statuses": dict(statuses)}


async def closed_loop(url: str, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` workers, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        async def worker(i: int, until: float, record: bool) -> None:
            n = i
            while time.perf_counter() < until:
                start = time.perf_counter()
                try:
                    res = await client.post("/v1/predict", json={"text": texts[n % len(texts)], "top_k": 1})
                    code = str(res.status_code)
                except httpx.HTTPError as e:
                    code = type(e).__name__
                if record:
                    statuses[code] += 1
                    if code == "200":
                        latencies.append(time.perf_counter() - start)
                n += clients

        warm = time.perf_counter() + 1.0  # connections open and the batcher settles before measuring
        await asyncio.gather(*[worker(i, warm, False) for i in range(clients)])
        start = time.perf_counter()
        await asyncio.gather(*[worker(i, start + seconds, True) for i in range(clients)])
        elapsed = time.perf_counter() - start
    return summarise(latencies, statuses, elapsed)


async def overload(url: str, texts: list[str], rate: float, seconds: float) -> dict[str, Any]:
    """Open loop: requests start at ``rate`` per second whatever the answers; every one must be answered."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=httpx.Timeout(60, pool=60)) as client:
        async def one(n: int) -> None:
            start = time.perf_counter()
            try:
                res = await client.post("/v1/predict", json={"text": texts[n % len(texts)], "top_k": 1})
                code = str(res.status_code)
            except httpx.HTTPError as e:
                code = type(e).__name__
            statuses[code] += 1
            if code == "200":
                latencies.append(time.perf_counter() - start)

        tasks, start, n = [], time.perf_counter(), 0
        while (now := time.perf_counter()) < start + seconds:
            due = int((now - start) * rate)
            while n < due:
                tasks.append(asyncio.create_task(one(n)))
                n += 1
            await asyncio.sleep(0.002)
        sent_s = time.perf_counter() - start
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - start
    out = summarise(latencies, statuses, elapsed)
    out.update({"offered_per_s": rate, "sent": n, "sent_per_s": n / sent_s})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None, help="A finished run directory (default: train one).")
    ap.add_argument("--seconds", type=float, default=8.0, help="Length of each measured phase.")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 64])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/out/load"))
    ap.add_argument("--threads", type=int, default=None, help="PyTorch threads of the server (default: cores).")
    args = ap.parse_args()

    from taskfit.data.packaged import write_dataset
    from taskfit.utils.env import offline_defaults

    offline_defaults()
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    run = args.run or train_run(args.out)
    import pandas as pd

    texts = pd.read_csv(write_dataset("bbc_news", args.out / "texts.csv", n=200, seed=1))["text"].tolist()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                               "loadavg_before": load_before, "run": str(run), "seconds": args.seconds,
                               "server_threads": args.threads,
                               "mean_text_chars": float(np.mean([len(t) for t in texts])), "phases": {}}
    best = 0.0
    for max_batch in (32, 1):
        server = Server(run, max_batch, args.out, args.threads)
        try:
            server.wait_ready()
            for clients in args.clients:
                inputs0, passes0 = batch_totals(server.url)
                res = asyncio.run(closed_loop(server.url, texts, clients, args.seconds))
                inputs1, passes1 = batch_totals(server.url)
                res["mean_batch"] = (inputs1 - inputs0) / max(passes1 - passes0, 1)
                results["phases"][f"batch{max_batch}_c{clients}"] = {"max_batch": max_batch, "clients": clients,
                                                                       **res}
                best = max(best, res["throughput_per_s"])
                print(f"max_batch {max_batch:>2}  clients {clients:>3}: {res['throughput_per_s']:7.1f} req/s  "
                      f"p50 {res['p50_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms  mean batch {res['mean_batch']:5.1f}  "
                      f"{res['statuses']}", flush=True)
            if max_batch == 32:
                res = asyncio.run(overload(server.url, texts, 10 * best, args.seconds))
                ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code
                res.update({"alive_after": server.proc.poll() is None, "readyz_after": ready})
                results["overload"] = res
                print(f"overload at {res['offered_per_s']:.0f} req/s offered ({res['sent_per_s']:.0f}/s sent): "
                      f"{res['statuses']}, server alive {res['alive_after']}, /readyz {ready}", flush=True)
        finally:
            results.setdefault("exit_codes", {})[f"batch{max_batch}"] = server.stop()
    phases = results["phases"]
    top = max(args.clients)
    results["speedup_at_max_clients"] = (phases[f"batch32_c{top}"]["throughput_per_s"]
                                         / max(phases[f"batch1_c{top}"]["throughput_per_s"], 1e-9))
    results["loadavg_after"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - t0
    print("\n| max_batch | clients | req/s | p50 ms | p99 ms | mean batch | non-200 |\n|---|---|---|---|---|---|---|")
    for p in phases.values():
        bad = sum(v for k, v in p["statuses"].items() if k != "200")
        print(f"| {p['max_batch']} | {p['clients']} | {p['throughput_per_s']:.1f} | {p['p50_ms']:.1f} | "
              f"{p['p99_ms']:.1f} | {p['mean_batch']:.1f} | {bad} |")
    o = results["overload"]
    print(f"\nmicro-batching speed-up at {top} clients: {results['speedup_at_max_clients']:.1f}×; overload "
          f"{o['sent']} requests → {o['statuses']}; load average {load_before[0]:.1f} → "
          f"{results['loadavg_after'][0]:.1f}; {results['wall_s']:.0f} s")
    out = Path("benchmarks/results/load_test.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)


if __name__ == "__main__":
    main()
