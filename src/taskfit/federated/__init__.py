"""Federated training with Flower: `taskfit federate recipe.yaml` (see docs/trust.md).

Each client fine-tunes on its own share of the training rows (split by a column, at random, or label-skewed
with a Dirichlet draw); only the trainable tensors travel (LoRA adapters + head with ``method: lora``); the
server averages them (FedAvg, or FedProx with a proximal term on the clients) and scores the global model on
the validation split every round. Runs in Flower's simulation engine (one process + one Ray actor) or as
real SuperLink / SuperNode processes on loopback. The result is an ordinary taskfit run directory.

Modules: ``partition`` (client shares), ``state`` (the per-process context built from the spec file),
``client`` (ClientApp: local training), ``server`` (ServerApp: strategy, centralised evaluation, round log),
``processes`` (deployment on loopback), ``runner`` (:func:`run_federated`), ``report`` (report section).
Flower is imported only by these modules, which the CLI imports only for `taskfit federate`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from taskfit.federated.runner import FederatedSummary

__all__ = ["FederatedSummary", "run_federated"]


def __getattr__(name: str) -> Any:
    # Lazy: `import taskfit.federated` must not import Flower, Ray or torch.
    if name in __all__:
        from taskfit.federated import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
