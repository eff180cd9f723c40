"""Load test of `taskfit serve`: throughput and latency with and without micro-batching, and 10× overload.

    .venv/bin/python benchmarks/load_test.py [--model minilm|tiny | --run RUN_DIR] [--seconds 8] [--threads N]

Starts `taskfit serve` in a subprocess on a free loopback port (keys off, SQLite request log on) and drives
it from this process with a minimal asyncio HTTP/1.1 keep-alive client: closed-loop phases with 1, 8 and 64
concurrent clients, each sending one real BBC news text per request, for ``--seconds`` each, once with
micro-batching (max_batch 32) and once one-at-a-time (max_batch 1). Then an open-loop overload at 10× the
best measured throughput: every request must be answered (200, or 429/503 when the queue is full) and the
server must stay ready. Without ``--run`` it trains a run for a few steps first: ``--model minilm``
(default; the real cost of a forward pass) or ``--model tiny`` (a 2-layer BERT: what the service costs).
Each phase also reports the mean batch size (from the server's metrics) and the server's CPU time per
answered request, which depends less on what else runs on a shared machine than wall-clock throughput.
Results go to benchmarks/results/load_test_<model>.json and a table is printed.
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


def tiny_model(out: Path) -> Path:
    """A 2-layer, 32-wide BERT with MiniLM's tokenizer (as in the tests): its forward pass costs little, so the
    run measures the service itself (HTTP, batching, logging) rather than the matrix multiplications."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from taskfit.models import resolve_model

    dest = out / "tiny-bert"
    torch.manual_seed(1234)
    BertModel(BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(dest)
    AutoTokenizer.from_pretrained(resolve_model("all-MiniLM-L6-v2")).save_pretrained(dest)
    return dest


def train_run(out: Path, model: str) -> Path:
    """A run trained for a few steps (the weights' quality does not change the speed)."""
    from taskfit.config import Recipe
    from taskfit.data.packaged import write_dataset
    from taskfit.pipeline import train_recipe

    data = write_dataset("bbc_news", out / "bbc.csv", n=300, seed=0)
    name = "all-MiniLM-L6-v2" if model == "minilm" else str(tiny_model(out))
    recipe = Recipe.model_validate({
        "data": {"train": str(data), "max_length": 128}, "model": {"name": name},
        "train": {"max_steps": 3, "batch_size": 16, "lr": 1e-4, "seed": 0},
        "output": {"dir": str(out / "runs"), "name": model, "overwrite": True}})
    return Path(train_recipe(recipe).run_dir)


class Server:
    """`taskfit serve` in its own process group, stopped with SIGTERM (SIGKILL after 30 s)."""

    def __init__(self, run: Path, max_batch: int, out: Path, threads: int | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = (out / f"serve-batch{max_batch}.log").open("w")
        db = out / f"serve{max_batch}.db"
        for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            stale.unlink(missing_ok=True)  # a fresh registry and request log per server
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


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, all threads) the process has used: on a shared machine the CPU cost per
    request is a fairer measure of efficiency than wall-clock throughput, which depends on the neighbours."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def batch_totals(url: str) -> tuple[float, float]:
    """(inputs, forward passes) so far, from the server's Prometheus batch-size histogram."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    values = {line.split("{")[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
              if line.startswith(("taskfit_batch_size_sum", "taskfit_batch_size_count"))}
    return values.get("taskfit_batch_size_sum", 0.0), values.get("taskfit_batch_size_count", 0.0)


class RawClient:
    """A minimal HTTP/1.1 keep-alive client on asyncio streams (one connection, one request at a time).

    httpx costs the client process about a millisecond of CPU per request and more with many connections; on
    a 2-core machine shared with the server that made the client the bottleneck being measured. This one
    writes the request bytes and reads the status line, headers and Content-Length body, nothing else.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post(self, path: str, body: bytes) -> int:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        assert self.reader is not None
        self.writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        await self.reader.readexactly(int(headers.get("content-length", "0")))
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return status

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def summarise(latencies: list[float], statuses: Counter[str], seconds: float) -> dict[str, Any]:
    lat = np.asarray(latencies) * 1000.0
    ok = statuses.get("200", 0)
    return {"requests": sum(statuses.values()), "ok": ok, "throughput_per_s": ok / seconds,
            "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
            "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None, "statuses": dict(statuses)}


async def closed_loop(port: int, texts: list[str], clients: int, seconds: float) -> dict[str, Any]:
    """``clients`` connections, each sending its next request when the last one is answered."""
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bodies = [json.dumps({"text": t, "top_k": 1}).encode() for t in texts]
    conns = [RawClient(port) for _ in range(clients)]

    async def worker(i: int, until: float, record: bool) -> None:
        n = i
        while time.perf_counter() < until:
            start = time.perf_counter()
            try:
                code = str(await conns[i].post("/v1/predict", bodies[n % len(bodies)]))
            except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                code = type(e).__name__
                await conns[i].close()
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
    for c in conns:
        await c.close()
    return summarise(latencies, statuses, elapsed)


async def overload(port: int, texts: list[str], rate: float, seconds: float, in_flight: int = 512) \
        -> dict[str, Any]:
    """Open loop: requests start at ``rate`` per second whatever the answers; every one must be answered.

    Up to ``in_flight`` connections (twice the server's queue, so its queue does overflow) each carry one
    request at a time; arrivals finding every connection busy are counted as ``client_skipped`` rather than
    piling up inside this client, whose own CPU would then become what is measured.
    """
    latencies: list[float] = []
    statuses: Counter[str] = Counter()
    bodies = [json.dumps({"text": t, "top_k": 1}).encode() for t in texts]
    idle = [RawClient(port) for _ in range(in_flight)]
    conns = list(idle)

    async def one(n: int, conn: RawClient) -> None:
        start = time.perf_counter()
        try:
            code = str(await asyncio.wait_for(conn.post("/v1/predict", bodies[n % len(bodies)]), 60))
        except (OSError, asyncio.IncompleteReadError, ValueError, TimeoutError) as e:
            code = type(e).__name__
            await conn.close()
        idle.append(conn)
        statuses[code] += 1
        if code == "200":
            latencies.append(time.perf_counter() - start)

    tasks, skipped, start, n = [], 0, time.perf_counter(), 0
    while (now := time.perf_counter()) < start + seconds:
        due = int((now - start) * rate)
        while n < due:
            if idle:
                tasks.append(asyncio.create_task(one(n, idle.pop())))
            else:
                skipped += 1
            n += 1
        await asyncio.sleep(0.002)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for c in conns:
        await c.close()
    out = summarise(latencies, statuses, elapsed)
    out.update({"offered_per_s": rate, "offered": n, "sent": len(tasks), "client_skipped": skipped,
                "in_flight_cap": in_flight})
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", type=Path, default=None, help="A finished run directory (default: train one).")
    ap.add_argument("--model", choices=["minilm", "tiny"], default="minilm",
                    help="What to train without --run: MiniLM-L6 (real cost) or a tiny BERT (service overhead).")
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
    run = args.run or train_run(args.out, args.model)
    import pandas as pd

    texts = pd.read_csv(write_dataset("bbc_news", args.out / "texts.csv", n=200, seed=1))["text"].tolist()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"machine": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
                               "loadavg_before": load_before, "run": str(run), "seconds": args.seconds,
                               "server_threads": args.threads, "model": args.model if args.run is None else None,
                               "mean_text_chars": float(np.mean([len(t) for t in texts])), "phases": {}}
    best = 0.0
    for max_batch in (32, 1):
        server = Server(run, max_batch, args.out, args.threads)
        try:
            server.wait_ready()
            for clients in args.clients:
                inputs0, passes0 = batch_totals(server.url)
                cpu0 = cpu_seconds(server.proc.pid)
                res = asyncio.run(closed_loop(server.port, texts, clients, args.seconds))
                cpu1 = cpu_seconds(server.proc.pid)
                inputs1, passes1 = batch_totals(server.url)
                res["mean_batch"] = (inputs1 - inputs0) / max(passes1 - passes0, 1)
                # the phase's warm-up second is included in the CPU time but not in the count: an upper bound
                res["server_cpu_ms_per_request"] = 1000 * (cpu1 - cpu0) / max(res["ok"], 1)
                results["phases"][f"batch{max_batch}_c{clients}"] = {"max_batch": max_batch, "clients": clients,
                                                                       **res}
                best = max(best, res["throughput_per_s"])
                print(f"max_batch {max_batch:>2}  clients {clients:>3}: {res['throughput_per_s']:7.1f} req/s  "
                      f"p50 {res['p50_ms']:7.1f} ms  p99 {res['p99_ms']:7.1f} ms  mean batch {res['mean_batch']:5.1f}  "
                      f"server CPU {res['server_cpu_ms_per_request']:6.1f} ms/req  "
                      f"{res['statuses']}", flush=True)
            if max_batch == 32:
                res = asyncio.run(overload(server.port, texts, 10 * best, args.seconds))
                ready = httpx.get(f"{server.url}/readyz", timeout=10).status_code
                res.update({"alive_after": server.proc.poll() is None, "readyz_after": ready})
                results["overload"] = res
                print(f"overload at {res['offered_per_s']:.0f} req/s offered ({res['sent']} sent, "
                      f"{res['client_skipped']} skipped at {res['in_flight_cap']} in flight): "
                      f"{res['statuses']}, server alive {res['alive_after']}, /readyz {ready}", flush=True)
        finally:
            results.setdefault("exit_codes", {})[f"batch{max_batch}"] = server.stop()
    phases = results["phases"]
    top = max(args.clients)
    results["speedup_at_max_clients"] = (phases[f"batch32_c{top}"]["throughput_per_s"]
                                         / max(phases[f"batch1_c{top}"]["throughput_per_s"], 1e-9))
    results["cpu_saving_at_max_clients"] = (phases[f"batch1_c{top}"]["server_cpu_ms_per_request"]
                                            / max(phases[f"batch32_c{top}"]["server_cpu_ms_per_request"], 1e-9))
    results["loadavg_after"] = os.getloadavg()
    results["wall_s"] = time.perf_counter() - t0
    print("\n| max_batch | clients | req/s | p50 ms | p99 ms | mean batch | server CPU ms/req | non-200 |\n"
          "|---|---|---|---|---|---|---|---|")
    for p in phases.values():
        bad = sum(v for k, v in p["statuses"].items() if k != "200")
        print(f"| {p['max_batch']} | {p['clients']} | {p['throughput_per_s']:.1f} | {p['p50_ms']:.1f} | "
              f"{p['p99_ms']:.1f} | {p['mean_batch']:.1f} | {p['server_cpu_ms_per_request']:.1f} | {bad} |")
    o = results["overload"]
    print(f"\nmicro-batching speed-up at {top} clients: {results['speedup_at_max_clients']:.1f}× throughput, "
          f"{results['cpu_saving_at_max_clients']:.1f}× less server CPU per request; overload "
          f"{o['sent']} requests → {o['statuses']}; load average {load_before[0]:.1f} → "
          f"{results['loadavg_after'][0]:.1f}; {results['wall_s']:.0f} s")
    out = Path(f"benchmarks/results/load_test_{args.model if args.run is None else run.name}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(out)


if __name__ == "__main__":
    main()
