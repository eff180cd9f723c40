"""The Flower ServerApp: FedAvg or FedProx over the exchanged tensors, with centralised evaluation.

Each round the strategy sends the global tensors to the sampled clients, averages the replies weighted by
row count and the server scores the new global model on the validation split (``task.evaluate``). Every
round becomes one line of ``federated/rounds.jsonl`` in the run directory — clients asked / answered /
failed (with the error each failed client reported), bytes sent each way, the clients' mean training loss
and the validation metrics — which the coordinator prints as it appears and turns into the report. Round
0 is the untrained model. The final global tensors go to ``federated/global.pt``.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable
from typing import Any

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg, FedProx

from taskfit.federated.client import SPEC_KEY
from taskfit.federated.state import FedContext, load_context
from taskfit.train.loop import pick_device
from taskfit.utils.io import append_jsonl, atomic_save

ROUNDS_FILE = "rounds.jsonl"
GLOBAL_FILE = "global.pt"
#: longest failure reason kept per client (tracebacks are long; the first lines say what happened)
_REASON_CHARS = 300


class RoundLog:
    """Collects what happens in each round and appends one record per round to ``rounds.jsonl``."""

    def __init__(self, ctx: FedContext) -> None:
        self.ctx = ctx
        self.path = ctx.run_dir / "federated" / ROUNDS_FILE
        self.path.unlink(missing_ok=True)
        self.pending: dict[str, Any] = {}
        self.t0 = time.perf_counter()

    def sent(self, messages: list[Message]) -> None:
        self.pending = {"clients_sampled": len(messages),
                        "bytes_down": sum(_bytes(m) for m in messages)}

    def received(self, ok: list[Message], failed: list[Message], used: bool) -> None:
        weights = [float(m.content["metrics"]["num-examples"]) for m in ok]  # type: ignore[index,arg-type]
        losses = [float(m.content["metrics"]["train_loss"]) for m in ok]  # type: ignore[index,arg-type]
        steps = [int(m.content["metrics"]["steps"]) for m in ok]  # type: ignore[index,arg-type]
        self.pending.update(
            clients_ok=len(ok), clients_failed=len(failed), aggregated=used, client_steps=sum(steps),
            bytes_up=sum(_bytes(m) for m in ok),
            train_loss=(sum(w * x for w, x in zip(weights, losses, strict=True)) / sum(weights)) if ok else None,
            epsilon_max=max((float(m.content["metrics"]["epsilon"]) for m in ok  # type: ignore[index,arg-type]
                             if "epsilon" in m.content["metrics"]), default=None),  # type: ignore[operator]
            failures=[{"node": int(m.metadata.src_node_id), "reason": failure_reason(str(m.error.reason))}
                      for m in failed])

    def evaluated(self, server_round: int, metrics: dict[str, Any]) -> None:
        record = {"round": server_round, **(self.pending if server_round else {}),
                  "valid_loss": metrics["loss"],
                  **{f"valid_{k}": metrics[k] for k in self.ctx.task.headline
                     if k != "loss" and isinstance(metrics.get(k), float)},
                  "seconds": round(time.perf_counter() - self.t0, 2)}
        self.pending = {}
        append_jsonl(self.path, record)


def failure_reason(text: str) -> str:
    """The telling part of a failed client's error: Ray wraps the client's exception in a long traceback
    with colour codes; the client's own message follows its last "Message: "."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    if text.startswith("<class ") and text.endswith("'>"):  # Flower's "<class 'E'>:<'text'>" wrapper
        text = text[:-2]
    if "Message: " in text:
        text = text.rsplit("Message: ", 1)[1]
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return (lines[0] if lines else "unknown error")[:_REASON_CHARS]


def _bytes(msg: Message) -> int:
    arrays = msg.content.array_records.get("arrays")
    return int(arrays.count_bytes()) if arrays is not None else 0


class _Recording:
    """Mixed into a Flower strategy: logs each round and enforces ``federated.min_fit_clients``."""

    round_log: RoundLog
    min_results: int
    expected: int
    min_available_nodes: int

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord,
                        grid: Grid) -> Iterable[Message]:
        # Flower waits (without a time limit) until this many nodes are connected: every client for the first
        # round, so that all SuperNodes have joined; later, only as many as a round needs, so that a node
        # that went away for good does not stall the federation.
        self.min_available_nodes = self.expected if server_round == 1 else self.min_results
        messages = list(super().configure_train(server_round, arrays, config, grid))  # type: ignore[misc]
        self.round_log.sent(messages)
        return messages

    def aggregate_train(self, server_round: int,
                        replies: Iterable[Message]) -> tuple[ArrayRecord | None, MetricRecord | None]:
        replies = list(replies)
        ok = [m for m in replies if not m.has_error()]
        failed = [m for m in replies if m.has_error()]
        # Too few results: keep the previous global model rather than average a biased few.
        used = len(ok) >= self.min_results
        self.round_log.received(ok, failed, used)
        if not used:
            return None, None
        return super().aggregate_train(server_round, replies)  # type: ignore[misc,no-any-return]


class TaskfitFedAvg(_Recording, FedAvg):
    """FedAvg that logs rounds."""


class TaskfitFedProx(_Recording, FedProx):
    """FedProx (server side = FedAvg; clients add the proximal term) that logs rounds."""


def make_strategy(ctx: FedContext, round_log: RoundLog) -> FedAvg:
    """The strategy the ``federated`` block names, sampling ``fraction_fit`` of the clients each round."""
    fed = ctx.fed
    common: dict[str, Any] = {"fraction_train": fed.fraction_fit, "fraction_evaluate": 0.0,
                              "min_train_nodes": 1, "min_available_nodes": fed.clients}
    strategy: FedAvg
    if fed.strategy == "fedprox":
        strategy = TaskfitFedProx(proximal_mu=fed.proximal_mu, **common)
    else:
        strategy = TaskfitFedAvg(**common)
    strategy.round_log = round_log  # type: ignore[attr-defined]
    strategy.min_results = fed.min_fit_clients or 1  # type: ignore[attr-defined]
    strategy.expected = fed.clients  # type: ignore[attr-defined]
    return strategy


def evaluate_global(ctx: FedContext, state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Validation metrics of the model holding exchanged tensors ``state``."""
    with ctx.lock:
        ctx.load_state(state)
        device = pick_device()
        ctx.model.to(device)
        return ctx.task.evaluate(ctx.model, ctx.encoded["valid"], ctx.splits.labels, device, None)


def run_server(grid: Grid, ctx: FedContext) -> None:
    """Run every round of the federation; write ``rounds.jsonl`` and ``global.pt``."""
    round_log = RoundLog(ctx)
    strategy = make_strategy(ctx, round_log)
    initial = ArrayRecord(ctx.global_state())

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        metrics = evaluate_global(ctx, dict(arrays.to_torch_state_dict()))
        round_log.evaluated(server_round, metrics)
        return MetricRecord({k: float(v) for k, v in metrics.items()
                             if isinstance(v, (int, float)) and not isinstance(v, bool)})

    result = strategy.start(grid=grid, initial_arrays=initial, num_rounds=ctx.fed.rounds,
                            timeout=ctx.fed.round_timeout,
                            train_config=ConfigRecord({"local-epochs": float(ctx.fed.local_epochs)}),
                            evaluate_fn=evaluate)
    final = result.arrays if len(result.arrays) else initial
    state = dict(final.to_torch_state_dict())
    atomic_save(ctx.run_dir / "federated" / GLOBAL_FILE, lambda p: torch.save(state, p))


def make_server_app(spec: str | None = None) -> ServerApp:
    """The taskfit ServerApp.

    Args:
        spec: the spec file; None reads it from the run config key ``taskfit-spec`` (deployment mode).
    """
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        run_server(grid, load_context(spec or str(context.run_config[SPEC_KEY])))

    return app
