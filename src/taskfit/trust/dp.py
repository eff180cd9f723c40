"""Differentially private training (DP-SGD) through Opacus.

DP-SGD bounds how much any one training row can change the model: each example's gradient is clipped
to L2 norm ``max_grad_norm`` (C), Gaussian noise of standard deviation ``σ × C`` is added to the sum of
a batch, and batches are Poisson-sampled (each row independently with probability q = batch_size /
rows). A privacy accountant (PRV or RDP) turns (σ, q, steps) into the (ε, δ) spent. taskfit plans σ up
front so that the whole run spends at most the recipe's ε::

    privacy:
      dp: {epsilon: 3, delta: 1e-5, max_grad_norm: 1.0, accountant: prv}

:class:`DPHook` wraps the forward module in Opacus' ``GradSampleModule`` (per-example gradients), the
optimiser in ``DPOptimizer`` (clipping + noise) and replaces the length-bucketed batcher with
:class:`~taskfit.trust.dp_batching.PoissonBatcher`; its accountant history goes into every checkpoint so
``--resume`` continues the same budget.

Precision: bf16 autocast stays on where the loop picks it. Per-example gradients then match fp32 to
0.2 % in norm (cosine 0.99999, MiniLM LoRA and a full BERT measured), and the clipping, the noise and the
sum happen in fp32 on the parameters, so the guarantee does not depend on the precision.

What works: text_classification, multi_label and regression with methods full, lora and frozen;
image_classification with method frozen (the backbone's BatchNorm stays in eval mode). What is refused,
and why, is in :data:`REFUSED_TASKS` and :func:`recipe_problems`.
"""

from __future__ import annotations

import functools
import html
import math
import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

from taskfit.config import DPConfig, Recipe, TrainConfig
from taskfit.errors import ConfigError, IncompatibleError
from taskfit.train.hooks import BatchPlan, StepHook
from taskfit.trust.dp_batching import PoissonBatcher

#: Tasks whose loss is not a mean of independent per-example losses: clipping each example's gradient
#: then does not bound one row's influence on the update, so no (ε, δ) guarantee would hold.
REFUSED_TASKS: dict[str, str] = {
    "retrieval": "its in-batch contrastive loss (InfoNCE) scores every question against the other rows' "
                 "answers in the same batch, so one row's gradient depends on the other rows and cannot be "
                 "clipped per example",
    "generation": "its loss is averaged over all answer tokens of the batch (and packing lays several "
                  "examples into one sequence), so each example's gradient is scaled by the other examples' "
                  "lengths and per-example clipping no longer bounds one row's influence",
    "ner": "its loss is averaged over all tokens of the batch, so each sentence's gradient is scaled by the "
           "other sentences' lengths and per-example clipping no longer bounds one row's influence",
}

#: Model types whose absolute position ids Opacus mis-handles when they come from the model's own
#: [1, L] buffer (opacus#841: "stack expects each tensor to be equal size"); we pass explicit [B, L] ids.
_EXPLICIT_ID_MODELS = ("bert",)

#: Largest noise multiplier taskfit plans; a budget that needs more is refused (nothing would be learnt).
MAX_NOISE = 50.0


def recipe_problems(recipe: Recipe) -> list[str]:
    """What keeps ``privacy.dp`` from working with the rest of the recipe, as dotted-path lines.

    Found from the recipe alone (before any data is read); :class:`DPHook` re-checks at setup.
    """
    cfg = recipe.privacy.dp
    if cfg is None:
        return []
    problems: list[str] = []
    task, method = recipe.task.name, recipe.method.name
    if task in REFUSED_TASKS:
        problems.append(f"privacy.dp: task {task!r} cannot be trained with DP-SGD: {REFUSED_TASKS[task]}. "
                        "Remove privacy.dp for this task.")
    if task == "image_classification" and method == "full":  # (lora is refused by the task itself)
        problems.append(f"privacy.dp: method {method!r} trains the BatchNorm layers of the image backbones, "
                        "which normalise each image with its batch mates' statistics (no per-example gradient "
                        "exists). Use method.name: frozen (the backbone's BatchNorm stays in eval mode).")
    if recipe.train.grad_accum > 1:
        problems.append(f"train.grad_accum: {recipe.train.grad_accum} is not supported with privacy.dp (the "
                        "accountant counts one Poisson-sampled batch per noisy step); set train.grad_accum: 1 "
                        "and raise train.batch_size instead.")
    if recipe.train.batch_tokens is not None:
        problems.append(f"train.batch_tokens: {recipe.train.batch_tokens} cannot be used with privacy.dp: "
                        "DP batches are Poisson-sampled by rows (each row with probability batch_size / rows). "
                        "Remove train.batch_tokens and set train.batch_size.")
    world = _world_size()
    if world > 1:
        problems.append(f"privacy.dp: {world} processes (--nproc / WORLD_SIZE) are not supported with DP-SGD "
                        "here (each rank would sample and noise its own batch); train with one process.")
    return problems


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return int(torch.distributed.get_world_size())
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        return 1


def planned_steps(train: TrainConfig, batches_per_epoch: int) -> int:
    """Optimiser steps the loop will run (the loop's own formula; grad_accum is 1 under DP)."""
    return train.max_steps or max(1, math.ceil(train.epochs * batches_per_epoch))


@functools.lru_cache(maxsize=32)  # a pure function that costs seconds (the RDP series are slow in Python)
def noise_for_budget(epsilon: float, delta: float, sample_rate: float, steps: int, accountant: str) -> float:
    """Smallest noise multiplier σ (to Opacus' 0.01 ε tolerance) whose ε after ``steps`` is ≤ ``epsilon``.

    Raises:
        ConfigError: the budget cannot be reached with σ ≤ :data:`MAX_NOISE` (ε too small for this many steps).
    """
    from opacus.accountants.utils import create_accountant, get_noise_multiplier

    with warnings.catch_warnings():
        # RDP's "optimal order is the largest alpha" note during the search: the bound stays valid.
        warnings.simplefilter("ignore", UserWarning)
        # Opacus' own search doubles σ up to 1e6 before giving up (a minute on a small CPU); past σ = 50
        # the gradients drown in noise anyway, so check that bound once and refuse early.
        probe = create_accountant(accountant)
        probe.history = [(MAX_NOISE, sample_rate, steps)]
        floor = float(probe.get_epsilon(delta=delta))
        if floor > epsilon:
            raise ConfigError(f"privacy.dp.epsilon: {epsilon} cannot be reached with {steps} steps at sample rate "
                              f"{sample_rate:.4g}: even noise multiplier {MAX_NOISE:g} spends ε = {floor:.3g}. "
                              "Raise privacy.dp.epsilon, or lower train.epochs / train.max_steps / "
                              "train.batch_size.")
        return float(get_noise_multiplier(target_epsilon=epsilon, target_delta=delta, sample_rate=sample_rate,
                                          steps=steps, accountant=accountant))


def model_problems(model: torch.nn.Module) -> list[str]:
    """Layers Opacus cannot give per-example gradients for, as ``name (Type): why`` lines.

    Uses Opacus' ``ModuleValidator`` checks on each trainable layer (so the message can name it) and adds
    BatchNorm layers left in training mode even when frozen: their batch statistics mix examples.
    """
    from opacus.validators import ModuleValidator

    problems: list[str] = []
    for name, sub in model.named_modules():
        label = f"{name or '<model>'} ({type(sub).__name__})"
        trainable = any(p.requires_grad for p in sub.parameters(recurse=False))
        check = ModuleValidator.VALIDATORS.get(type(sub))
        errors = check(sub) if trainable and check is not None else []
        if errors:
            problems.append(f"{label}: {str(errors[0]).split('. ')[0].strip()}")
        elif isinstance(sub, torch.nn.modules.batchnorm._BatchNorm) and sub.training:
            problems.append(f"{label}: BatchNorm in training mode normalises each example with its batch mates")
    return problems


class _ExplicitPositions(torch.nn.Module):
    """Forward wrapper giving BERT-style models explicit [B, L] ``position_ids`` / ``token_type_ids``.

    Without them the model expands its own [1, L] buffers and Opacus' embedding grad sampler sees a batch
    of 1 (opacus#841). The ids passed are exactly what the model would build itself, so outputs are equal.
    """

    def __init__(self, inner: torch.nn.Module, token_types: bool) -> None:
        super().__init__()
        self.inner = inner
        self.token_types = token_types

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        ids = kwargs.get("input_ids")
        if isinstance(ids, torch.Tensor) and ids.dim() == 2:
            b, length = ids.shape
            # .repeat materialises a real [B, L] tensor (an .expand view is what trips the grad sampler).
            kwargs.setdefault("position_ids", torch.arange(length, device=ids.device).unsqueeze(0).repeat(b, 1))
            if self.token_types:
                kwargs.setdefault("token_type_ids", torch.zeros_like(ids))
        return self.inner(*args, **kwargs)


class DPHook(StepHook):
    """DP-SGD as a training-step hook: per-example clipping and noise, Poisson batches, an accountant.

    Args:
        cfg: the recipe's ``privacy.dp`` block.
        train: the recipe's ``train`` block (batch size, epochs / max_steps, seed, grad_accum).
        n_train: training rows N (the sample rate is q = batch_size / N).

    Raises:
        ConfigError: batch size not below N, or δ not below 1 / N.
    """

    name = "dp"
    replaces_clipping = True

    def __init__(self, cfg: DPConfig, train: TrainConfig, n_train: int) -> None:
        from opacus.accountants.utils import create_accountant

        if train.batch_size >= n_train:
            raise ConfigError(f"train.batch_size: {train.batch_size} must be below the {n_train} training rows "
                              "under privacy.dp (the sample rate batch_size / rows must be < 1); lower it.")
        self.cfg, self.train, self.n_train = cfg, train, n_train
        self.sample_rate = train.batch_size / n_train
        self.delta = cfg.delta if cfg.delta is not None else 1.0 / (10 * n_train)
        if self.delta >= 1.0 / n_train:
            raise ConfigError(f"privacy.dp.delta: {self.delta:g} is not below 1 / rows = {1.0 / n_train:g}; such a "
                              "δ allows releasing a whole row. Use at most 1 / (10 × rows) or leave it unset.")
        self.accountant = create_accountant(cfg.accountant)
        self.noise_multiplier: float | None = None
        self.steps_planned: int | None = None
        self.plan: PoissonBatcher | None = None
        self._gsm: Any = None

    # ---- setup -------------------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, fwd: torch.nn.Module, optimizer: torch.optim.Optimizer,
              batcher: BatchPlan, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, BatchPlan]:
        """Plan σ for the run, wrap model and optimiser in Opacus, and return the Poisson batch plan.

        Raises:
            IncompatibleError: several processes, gradient accumulation, or layers without per-example
                gradients (named).
        """
        from opacus import GradSampleModule
        from opacus.optimizers import DPOptimizer

        if _world_size() > 1:
            raise IncompatibleError("privacy.dp: DP-SGD runs in one process; it was started with "
                                    f"{_world_size()} (--nproc / WORLD_SIZE). Train with one process.")
        if fwd is not model:
            raise IncompatibleError(f"privacy.dp: the forward module was already wrapped ({type(fwd).__name__}) "
                                    "by another step hook; DP-SGD must be the only hook that changes the step.")
        if self.train.grad_accum > 1:
            raise IncompatibleError(f"train.grad_accum: {self.train.grad_accum} is not supported with privacy.dp; "
                                    "set it to 1 and raise train.batch_size instead.")
        bad = model_problems(model)
        if bad:
            raise IncompatibleError(f"privacy.dp: Opacus cannot compute per-example gradients for {len(bad)} "
                                    f"layer(s) of this model: {'; '.join(bad[:5])}"
                                    f"{' …' if len(bad) > 5 else ''}. Use a model with LayerNorm/GroupNorm, "
                                    "or a method that freezes those layers (method.name: frozen).")
        self.plan = PoissonBatcher(self.n_train, self.sample_rate, self.train.seed)
        self.steps_planned = planned_steps(self.train, len(self.plan))
        self.noise_multiplier = noise_for_budget(self.cfg.epsilon, self.delta, self.sample_rate,
                                                 self.steps_planned, self.cfg.accountant)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Opacus warns about full backward hooks on every wrap
            self._gsm = GradSampleModule(model, loss_reduction="mean")
        # The tasks' losses are batch means (F.cross_entropy / mse / bce default), hence "mean": Opacus
        # rescales to per-example gradients and divides the noisy sum by the *expected* batch size.
        dp_optimizer = DPOptimizer(optimizer, noise_multiplier=self.noise_multiplier,
                                   max_grad_norm=self.cfg.max_grad_norm,
                                   expected_batch_size=self.train.batch_size, loss_reduction="mean")
        config = getattr(model, "config", None)
        wrapped: torch.nn.Module = self._gsm
        if getattr(config, "model_type", None) in _EXPLICIT_ID_MODELS:
            wrapped = _ExplicitPositions(self._gsm, token_types=getattr(config, "type_vocab_size", 0) > 0)
        return wrapped, dp_optimizer, self.plan

    # ---- per step ----------------------------------------------------------------------------------
    def backward(self, compute_loss: Callable[[], torch.Tensor], loss: torch.Tensor, scale: float) -> None:
        """Plain backward; Opacus' hooks fill ``p.grad_sample`` [B, *p.shape] for the optimiser to clip."""
        with warnings.catch_warnings():
            # Opacus' full backward hook on the first layer fires although token ids need no gradient.
            warnings.filterwarnings("ignore", message="Full backward hook is firing", category=UserWarning)
            (loss * scale).backward()

    def after_step(self, step: int) -> None:
        """Charge one Poisson-sampled Gaussian step to the accountant."""
        assert self.noise_multiplier is not None, "setup() runs before the first step"
        self.accountant.step(noise_multiplier=self.noise_multiplier, sample_rate=self.sample_rate)

    @property
    def steps(self) -> int:
        """Noisy steps charged so far."""
        return sum(int(n) for _, _, n in self.accountant.history)

    def epsilon_spent(self) -> float:
        """ε spent so far at this run's δ (0 before the first step), as the accountant reports it."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # RDP's "optimal order is the largest alpha" note
            return float(self.accountant.get_epsilon(delta=self.delta))

    # ---- checkpoints -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"accountant": dict(self.accountant.state_dict()), "noise_multiplier": self.noise_multiplier,
                "sample_rate": self.sample_rate}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the accountant history, so a resumed run keeps spending the same budget.

        Raises:
            ConfigError: the checkpoint was made with another noise multiplier or sample rate.
        """
        if not state:
            return
        seen = (state.get("noise_multiplier"), state.get("sample_rate"))
        if seen != (self.noise_multiplier, self.sample_rate):
            raise ConfigError(f"privacy.dp: the checkpoint was trained with noise multiplier / sample rate {seen}, "
                              f"this run plans {(self.noise_multiplier, self.sample_rate)}; privacy or train "
                              "settings changed since. Resume with the run's own recipe.yaml.")
        self.accountant.load_state_dict(state["accountant"])

    # ---- results -----------------------------------------------------------------------------------
    def teardown(self) -> None:
        """Detach Opacus' per-example-gradient hooks, so the saved and evaluated model is a plain module."""
        if self._gsm is not None:
            self._gsm._close()
            self._gsm = None

    def summary(self) -> dict[str, Any]:
        """The privacy guarantee of the run, for results.json["privacy"] and the report."""
        steps = self.steps
        empty = sum(self.plan.empty_skipped.values()) if self.plan else 0
        return {
            "epsilon_target": self.cfg.epsilon,
            "epsilon_spent": round(self.epsilon_spent(), 6),
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.cfg.max_grad_norm,
            "sample_rate": self.sample_rate,
            "expected_batch_size": self.train.batch_size,
            "steps": steps,
            "steps_planned": self.steps_planned,
            "accountant": self.cfg.accountant,
            "empty_batches_skipped": empty,
            "delta_sampling_slack": self.plan.delta_slack(steps) if self.plan else 0.0,
        }


def privacy_section(summary: dict[str, Any]) -> tuple[str, str]:
    """The report's privacy section: the (ε, δ) guarantee and how it was obtained."""
    s = {k: summary.get(k) for k in ("epsilon_target", "epsilon_spent", "delta", "noise_multiplier",
                                     "max_grad_norm", "sample_rate", "expected_batch_size", "steps",
                                     "accountant", "empty_batches_skipped", "delta_sampling_slack")}
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(_fmt(v))}</td></tr>" for k, v in s.items())
    eps, delta = _fmt(s["epsilon_spent"]), _fmt(s["delta"])
    text = (
        f"<p>Trained with DP-SGD (Opacus): the model is <b>({html.escape(eps)}, {html.escape(delta)})"
        "-differentially private</b> with respect to each training row. Every example's gradient was clipped "
        f"to L2 norm {html.escape(_fmt(s['max_grad_norm']))} and Gaussian noise of standard deviation "
        f"{html.escape(_fmt(s['noise_multiplier']))} × that norm was added to each batch sum; batches were "
        f"Poisson-sampled (rate {html.escape(_fmt(s['sample_rate']))}). The {html.escape(str(s['accountant']))} "
        f"accountant gives ε spent over {html.escape(_fmt(s['steps']))} steps "
        f"(budget {html.escape(_fmt(s['epsilon_target']))}).</p>"
        "<p>Not covered: the validation and test rows (used for early stopping and scores), statistics taken "
        "from the training data outside the gradients (the label set; regression's target mean and spread), "
        "and repeated runs with different settings on the same data (each run spends its own budget).</p>"
    )
    return "Privacy (differential privacy)", f"{text}<table><tr><th>key</th><th>value</th></tr>{rows}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "—" if value is None else str(value)
