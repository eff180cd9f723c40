"""The Flower ClientApp: one round of local training on one client's rows.

A client receives the global trainable tensors (LoRA adapters + head with ``method: lora``; every weight
with ``method: full``), loads them into its copy of the model, trains ``federated.local_epochs`` passes over
its own rows and sends the updated tensors back with its row count (FedAvg weights clients by it). With
``strategy: fedprox`` the local loss gets the proximal term mu/2 · ||w − w_global||² over the exchanged
tensors, which keeps clients with skewed data from drifting far from the global model.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any, cast

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from taskfit.data.batching import BucketBatcher
from taskfit.federated.state import FedContext, load_context
from taskfit.train.loop import build_optimizer, pick_device, pick_precision

#: run_config key naming the spec file (deployment mode; simulation binds the path directly)
SPEC_KEY = "taskfit-spec"
#: node-state key of a client's DP accountant history
DP_STATE_KEY = "taskfit-dp"


def local_train(ctx: FedContext, client: int, state: dict[str, torch.Tensor], *, epochs: float, mu: float,
                server_round: int, dp_state: dict[str, Any] | None = None
                ) -> tuple[dict[str, torch.Tensor], dict[str, int | float]]:
    """Train the global tensors ``state`` on client ``client``'s rows.

    With ``privacy.dp`` in the recipe the client trains with DP-SGD (taskfit's Opacus hook): per-example
    clipping and noise planned so that the client's ε budget covers all ``federated.rounds`` rounds, and an
    accountant whose history ``dp_state`` carries from round to round (the ClientApp keeps it in Flower's
    node state). The guarantee protects each row of a client's data against everyone who sees its updates.

    Args:
        ctx: the process's federation context (model, encoded rows, shares).
        client: the client's partition id (0-based).
        state: the global exchanged tensors, name → tensor.
        epochs: local passes over the client's rows (fractions allowed).
        mu: FedProx proximal weight (0 = plain FedAvg).
        server_round: the round number (seeds the client's data order and dropout).
        dp_state: the DP accountant state after the client's previous round (None: first round).

    Returns:
        (updated exchanged tensors on CPU, metrics: ``num-examples``, ``train_loss``, ``steps``, ``seconds``
        and with DP ``epsilon`` spent so far); with DP the new accountant state is in ``ctx.dp_states``.
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
        batcher: Any = BucketBatcher(rows.lengths, cfg.batch_size, cfg.batch_tokens, cfg.bucket_size, seed)
        optimizer: Any = build_optimizer(model, cfg, ctx.head_names, device)
        fwd: torch.nn.Module = model
        hook = _dp_hook(ctx, len(rows), epochs, seed) if ctx.recipe.privacy.dp is not None else None
        if hook is not None:
            fwd, optimizer, batcher = hook.setup(model, model, optimizer, batcher, device)
            hook.load_state_dict(dp_state or {})
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
                    loss = task.loss(fwd, batch)
                loss_sum += float(loss.detach())
                if mu > 0:
                    prox = sum(((p - anchor[n]) ** 2).sum() for n, p in params)
                    loss = loss + 0.5 * mu * prox
                if hook is not None:
                    hook.backward(lambda loss=loss: loss, loss, 1.0)
                else:
                    loss.backward()
                if cfg.max_grad_norm and hook is None:  # DP-SGD clips each example itself
                    torch.nn.utils.clip_grad_norm_([p for _, p in params], cfg.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
                steps += 1
                if hook is not None:
                    hook.after_step(steps)
            epoch += 1
        model.eval()
        metrics: dict[str, int | float] = {"num-examples": len(rows), "train_loss": loss_sum / steps, "steps": steps,
                                           "seconds": round(time.perf_counter() - t0, 3)}
        if hook is not None:
            hook.teardown()  # takes Opacus' hooks off the shared model
            summary = hook.summary()
            metrics["epsilon"] = float(summary["epsilon_spent"])
            ctx.dp_states[client] = hook.state_dict()
        return ctx.global_state(), metrics


def _dp_hook(ctx: FedContext, n_rows: int, epochs: float, seed: int) -> Any:
    """A DP-SGD hook whose noise is planned for all rounds of this client (rounds × steps per round)."""
    from taskfit.trust.dp import DPHook
    from taskfit.trust.dp_batching import PoissonBatcher

    cfg, dp = ctx.recipe.train, ctx.recipe.privacy.dp
    assert dp is not None
    per_round = max(1, math.ceil(epochs * len(PoissonBatcher(n_rows, cfg.batch_size / n_rows, seed))))
    planned = cfg.model_copy(update={"max_steps": ctx.fed.rounds * per_round, "seed": seed})
    return DPHook(dp, planned, n_rows)


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
        # The DP accountant's history lives in Flower's node state: it outlives this process (deployment
        # mode starts a new ClientApp process every round).
        kept = context.state.config_records.get(DP_STATE_KEY)
        dp_state = json.loads(str(kept["accountant"])) if kept is not None else None
        new_state, metrics = local_train(ctx, client, dict(state), epochs=float(config["local-epochs"]),
                                         mu=float(config.get("proximal-mu", 0.0)), server_round=server_round,
                                         dp_state=dp_state)
        if client in ctx.dp_states:
            context.state[DP_STATE_KEY] = ConfigRecord({"accountant": json.dumps(ctx.dp_states.pop(client))})
        content = RecordDict({"arrays": ArrayRecord(new_state), "metrics": MetricRecord(cast(Any, metrics))})
        return Message(content=content, reply_to=msg)

    return app
