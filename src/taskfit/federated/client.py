"""The Flower ClientApp: one round of local training on one client's rows.

A client receives the global trainable tensors (LoRA adapters + head with ``method: lora``; every weight
with ``method: full``), loads them into its copy of the model, trains ``federated.local_epochs`` passes over
its own rows and sends the updated tensors back with its row count (FedAvg weights clients by it). With
``strategy: fedprox`` the local loss gets the proximal term mu/2 · ||w − w_global||² over the exchanged
tensors, which keeps clients with skewed data from drifting far from the global model.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from taskfit.data.batching import BucketBatcher
from taskfit.federated.state import FedContext, load_context
from taskfit.train.loop import build_optimizer, pick_device, pick_precision

#: run_config key naming the spec file (deployment mode; simulation binds the path directly)
SPEC_KEY = "taskfit-spec"


def local_train(ctx: FedContext, client: int, state: dict[str, torch.Tensor], *, epochs: float, mu: float,
                server_round: int) -> tuple[dict[str, torch.Tensor], dict[str, int | float]]:
    """Train the global tensors ``state`` on client ``client``'s rows.

    Args:
        ctx: the process's federation context (model, encoded rows, shares).
        client: the client's partition id (0-based).
        state: the global exchanged tensors, name → tensor.
        epochs: local passes over the client's rows (fractions allowed).
        mu: FedProx proximal weight (0 = plain FedAvg).
        server_round: the round number (seeds the client's data order and dropout).

    Returns:
        (updated exchanged tensors on CPU, metrics: ``num-examples``, ``train_loss``, ``steps``, ``seconds``).
    """
    cfg = ctx.recipe.train
    with ctx.lock:  # a process may serve several clients (threads in one Ray actor): one at a time
        ctx.load_state(state)
        model, task = ctx.model, ctx.task
        device = pick_device()
        dtype = pick_precision(cfg.precision, device)
        if cfg.precision == "auto" and device.type == "cpu" and not task.cpu_bf16:
            dtype = None
        model.to(device).train()
        rows = ctx.client_rows(client)
        # A distinct, reproducible data order and dropout stream per (seed, round, client).
        seed = cfg.seed * 1_000_003 + server_round * 1_009 + client
        torch.manual_seed(seed)
        batcher = BucketBatcher(rows.lengths, cfg.batch_size, cfg.batch_tokens, cfg.bucket_size, seed)
        optimizer = build_optimizer(model, cfg, ctx.head_names, device)
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        anchor = {n: p.detach().clone() for n, p in params} if mu > 0 else {}
        total = max(1, math.ceil(epochs * len(batcher)))
        steps, loss_sum, t0 = 0, 0.0, time.perf_counter()
        epoch = 0
        while steps < total:
            for idx in batcher.epoch(epoch):
                if steps >= total:
                    break
                batch = {k: v.to(device) for k, v in task.collate(rows, idx, train=True).items()}
                with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = task.loss(model, batch)
                loss_sum += float(loss.detach())
                if mu > 0:
                    prox = sum(((p - anchor[n]) ** 2).sum() for n, p in params)
                    loss = loss + 0.5 * mu * prox
                loss.backward()
                if cfg.max_grad_norm:
                    torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
            epoch += 1
        model.eval()
        metrics: dict[str, int | float] = {"num-examples": len(rows), "train_loss": loss_sum / steps, "steps": steps,
                   "seconds": round(time.perf_counter() - t0, 3)}
        return ctx.global_state(), metrics


def _fault(ctx: FedContext, client: int, server_round: int) -> None:
    """Test aid: make this client fail in a chosen round ("raise" an error, or "exit" its process)."""
    fault = ctx.faults.get(client)
    if not fault or int(fault.get("round", 0)) != server_round:
        return
    if fault.get("how") == "exit":
        os._exit(17)  # the process dies mid-round, as a crashed or killed client would
    raise RuntimeError(f"client {client} failed on purpose in round {server_round} (fault injection)")


def make_client_app(spec: str | None = None) -> ClientApp:
    """The taskfit ClientApp.

    Args:
        spec: the spec file; None reads it from the run config key ``taskfit-spec`` (deployment mode).
    """
    app = ClientApp()

    @app.train()
    def train(msg: Message, context: Context) -> Message:
        ctx = load_context(spec or str(context.run_config[SPEC_KEY]))
        client = int(context.node_config["partition-id"])  # type: ignore[call-overload]
        if not 0 <= client < len(ctx.shares):
            raise ValueError(f"partition-id {client} is outside 0..{len(ctx.shares) - 1} (federated.clients "
                             f"is {len(ctx.shares)})")
        config: Any = msg.content["config"]
        server_round = int(config["server-round"])
        _fault(ctx, client, server_round)
        state = msg.content["arrays"].to_torch_state_dict()  # type: ignore[union-attr]
        new_state, metrics = local_train(ctx, client, dict(state), epochs=float(config["local-epochs"]),
                                         mu=float(config.get("proximal-mu", 0.0)), server_round=server_round)
        content = RecordDict({"arrays": ArrayRecord(new_state), "metrics": MetricRecord(cast(Any, metrics))})
        return Message(content=content, reply_to=msg)

    return app
