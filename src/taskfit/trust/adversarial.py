"""Adversarial training on the input embeddings (recipe block ``adversarial: {method: fgm|pgd, epsilon}``).

Every training step first runs the ordinary clean forward/backward. The hook then perturbs the output of
the model's input-embedding layer (the token embeddings, before positions and LayerNorm) in the direction
that raises the loss most, runs the batch again with that perturbation and adds ``weight × adversarial
loss`` to the gradients. The model learns to keep its prediction when the embeddings of its input move a
little, which is what typos, synonyms and homophones do to a text (see :mod:`taskfit.trust.attacks`).

- FGM (fast gradient method; Miyato et al. 2017): one step, ``r = ε · g / ‖g‖₂`` per example, ``g`` the
  gradient of the clean loss with respect to the embedding output [L, H] of that example.
- PGD (projected gradient descent; Madry et al. 2018): ``steps`` ascent steps of size ``alpha`` along the
  normalised gradient, each projected back onto the ε-ball. The first step reuses the clean gradient; the
  intermediate gradients are taken with :func:`torch.autograd.grad` with respect to the perturbation only,
  so they never reach the parameters' ``.grad``.

The perturbation is added by a forward hook on the embedding module, so it works with full fine-tuning,
LoRA / frozen backbones (the embedding weights do not train: the hook makes the output require grad so
that ``g`` exists), bf16 autocast, and tasks that run the encoder more than once per batch (each call gets
its own perturbation). Padding positions are never perturbed: the hook reads the ``attention_mask`` the
model is called with, or, for calls without one, treats tokens equal to the task's pad id as padding.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from markupsafe import escape

from taskfit.config import AdversarialConfig
from taskfit.errors import IncompatibleError
from taskfit.train.hooks import BatchPlan, StepHook

if TYPE_CHECKING:
    from taskfit.config import Recipe
    from taskfit.tasks.base import Task

_TINY = 1e-12  # keeps ‖g‖ away from 0 (a zero gradient gives a zero perturbation, not NaN)


def recipe_problems(recipe: Recipe) -> list[str]:
    """Why the recipe's ``adversarial`` block cannot work (one line per problem), before any data is read."""
    from taskfit.tasks import TASKS

    if recipe.adversarial is None:
        return []
    name = recipe.task.name
    task_cls = TASKS.get(name)
    if not task_cls.text_input:
        return [f"adversarial: task {name!r} does not read token embeddings (its inputs are not text), so there "
                "is nothing to perturb; adversarial training works with text tasks (text_classification, "
                "multi_label, ner, regression, retrieval, generation). Remove the adversarial block."]
    return []


def find_embeddings(model: torch.nn.Module) -> torch.nn.Module:
    """The input (token) embedding module of a transformers model, also through PEFT / DDP wrappers.

    Raises:
        IncompatibleError: the model exposes no input embeddings.
    """
    seen: list[str] = []
    current: Any = model
    for _ in range(4):  # DDP(.module) → PeftModel(.base_model) → LoraModel(.model) → transformers model
        getter = getattr(current, "get_input_embeddings", None)
        if callable(getter):
            try:
                emb = getter()
            except (NotImplementedError, AttributeError):
                emb = None
            if isinstance(emb, torch.nn.Module):
                return emb
        seen.append(type(current).__name__)
        nxt = getattr(current, "module", None) or getattr(current, "base_model", None)
        if nxt is None or nxt is current:
            break
        current = nxt
    raise IncompatibleError(f"adversarial: the model ({' → '.join(seen)}) has no input embeddings "
                            "(get_input_embeddings()) to perturb; remove the adversarial block.")


def per_example_normalise(g: torch.Tensor) -> torch.Tensor:
    """``g / ‖g‖₂`` with the norm taken per example over all but the first axis ([B, L, H] → [B, L, H])."""
    norms = g.flatten(1).norm(dim=1).clamp_min(_TINY)
    return g / norms.view(-1, *([1] * (g.dim() - 1)))


def project(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Project each example's perturbation [B, L, H] onto the L2 ball of radius ``epsilon``."""
    norms = delta.flatten(1).norm(dim=1)
    factor = (epsilon / norms.clamp_min(_TINY)).clamp(max=1.0)
    return delta * factor.view(-1, *([1] * (delta.dim() - 1)))


class AdversarialHook(StepHook):
    """FGM / PGD adversarial training as a :class:`StepHook` (owns the backward pass)."""

    name = "adversarial"

    def __init__(self, cfg: AdversarialConfig, task: Task) -> None:
        self.cfg = cfg
        self.task = task
        self.steps = 1 if cfg.method == "fgm" else cfg.steps
        self.alpha = cfg.alpha if cfg.alpha is not None else cfg.epsilon / self.steps * 1.5
        self.embeddings: torch.nn.Module | None = None
        self._handles: list[Any] = []
        self._mask: torch.Tensor | None = None  # the attention mask of the current model call
        self._captured: list[torch.Tensor] = []  # embedding outputs of the current forward pass
        self._captured_keep: list[torch.Tensor] = []  # their [B, L, 1] real-token masks
        self._deltas: list[torch.Tensor] | None = None  # perturbations to add, one per embedding call
        self._call = 0
        #: the perturbations [B, L, H] of the last step (one per embedding call), for inspection and tests
        self.last_perturbation: list[torch.Tensor] = []
        self.stats = {"clean_loss_sum": 0.0, "adv_loss_sum": 0.0, "batches": 0, "delta_norm_sum": 0.0}

    # ---- wiring --------------------------------------------------------------------------------
    def setup(self, model: torch.nn.Module, fwd: torch.nn.Module, optimizer: torch.optim.Optimizer,
              batcher: BatchPlan, device: torch.device) -> tuple[torch.nn.Module, torch.optim.Optimizer, BatchPlan]:
        self.attach(model)
        return fwd, optimizer, batcher

    def attach(self, model: torch.nn.Module) -> None:
        """Register the hooks on ``model`` (the loop calls this through :meth:`setup`)."""
        self.detach()
        self.embeddings = find_embeddings(model)
        self._handles = [
            model.register_forward_pre_hook(self._remember_mask, with_kwargs=True),
            self.embeddings.register_forward_hook(self._on_embeddings),
        ]

    def detach(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []

    def _remember_mask(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        mask = kwargs.get("attention_mask")
        self._mask = mask if isinstance(mask, torch.Tensor) and mask.dim() == 2 else None

    def _padding_keep(self, ids: Any, out: torch.Tensor) -> torch.Tensor | None:
        """[B, L, 1] float: 1 at real tokens, 0 at padding; None when every position is real."""
        shape = tuple(out.shape[:2])
        if self._mask is not None and tuple(self._mask.shape) == shape:
            keep = self._mask != 0
        elif isinstance(ids, torch.Tensor) and tuple(ids.shape) == shape:
            keep = ids != self.task.pad_id
        else:
            return None
        return keep.unsqueeze(-1).to(torch.float32)

    def _on_embeddings(self, module: torch.nn.Module, inputs: tuple[Any, ...], out: torch.Tensor) -> Any:
        if not (torch.is_grad_enabled() and module.training) or not isinstance(out, torch.Tensor) or out.dim() != 3:
            return None  # evaluation, or an embedding we do not understand: leave it alone
        keep = self._padding_keep(inputs[0] if inputs else None, out)
        if self._deltas is not None:  # the adversarial (or PGD ascent) pass: add this call's perturbation
            delta = self._deltas[self._call] if self._call < len(self._deltas) else None
            self._call += 1
            if delta is None or delta.shape != out.shape:
                return None
            return out + (delta if keep is None else delta * keep).to(out.dtype)
        # The clean pass: keep the output so that its gradient is known after the clean backward. With frozen
        # embedding weights (LoRA, frozen) the output is a leaf without grad: make it require one.
        if not out.requires_grad:
            out.requires_grad_(True)
        out.retain_grad()
        self._captured.append(out)
        self._captured_keep.append(keep if keep is not None else torch.ones(*out.shape[:2], 1, device=out.device))
        return None

    # ---- the step ------------------------------------------------------------------------------
    def backward(self, compute_loss: Callable[[], torch.Tensor], loss: torch.Tensor, scale: float) -> None:
        """Clean backward, then the adversarial pass(es); parameter grads get clean + weight × adversarial."""
        captured, keeps = self._captured, self._captured_keep
        self._captured, self._captured_keep = [], []
        (loss * scale).backward()
        grads = [c.grad for c in captured]
        if not captured or any(g is None for g in grads):
            raise IncompatibleError("adversarial: the loss does not depend on the input embeddings of this model "
                                    "(no gradient reached them), so they cannot be perturbed; remove the "
                                    "adversarial block.")
        # FGM, and the first PGD step: the clean gradient gives the direction (its scale does not matter).
        deltas = [self._step(torch.zeros_like(g, dtype=torch.float32), g, k)  # type: ignore[arg-type]
                  for g, k in zip(grads, keeps, strict=True)]
        for _ in range(self.steps - 1):
            deltas = self._ascend(compute_loss, deltas, keeps)
        self.last_perturbation = [(d * k).detach() for d, k in zip(deltas, keeps, strict=True)]
        self._deltas, self._call = self.last_perturbation, 0
        try:
            adv_loss = compute_loss()
        finally:
            self._deltas = None
        (adv_loss * (self.cfg.weight * scale)).backward()
        self._captured, self._captured_keep = [], []  # (nothing is captured while deltas are set)
        self.stats["clean_loss_sum"] += float(loss.detach())
        self.stats["adv_loss_sum"] += float(adv_loss.detach())
        self.stats["delta_norm_sum"] += float(torch.stack([d.flatten(1).norm(dim=1).mean() for d in deltas]).mean())
        self.stats["batches"] += 1

    def _step(self, delta: torch.Tensor, grad: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """One ascent step from ``delta`` along ``grad`` (padding zeroed), projected onto the ε-ball."""
        g = grad.detach().to(torch.float32) * keep
        if self.cfg.method == "fgm":
            return self.cfg.epsilon * per_example_normalise(g)
        return project(delta + self.alpha * per_example_normalise(g), self.cfg.epsilon)

    def _ascend(self, compute_loss: Callable[[], torch.Tensor], deltas: list[torch.Tensor],
                keeps: list[torch.Tensor]) -> list[torch.Tensor]:
        """One PGD step: the gradient with respect to the perturbations only (parameters' .grad untouched)."""
        leaves = [d.detach().requires_grad_(True) for d in deltas]
        self._deltas, self._call = leaves, 0
        try:
            step_loss = compute_loss()
        finally:
            self._deltas = None
        grads = torch.autograd.grad(step_loss, leaves, allow_unused=True)
        return [self._step(d.detach(), g if g is not None else torch.zeros_like(d), k)
                for d, g, k in zip(leaves, grads, keeps, strict=True)]

    # ---- bookkeeping ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return dict(self.stats)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.stats:
            if k in state:
                self.stats[k] = type(self.stats[k])(state[k])

    def teardown(self) -> None:
        # Later gradient passes over the model (explanations, tests) must not be perturbed.
        self.detach()

    def summary(self) -> dict[str, Any]:
        n = max(1, int(self.stats["batches"]))
        out: dict[str, Any] = {"method": self.cfg.method, "epsilon": self.cfg.epsilon, "steps": self.steps,
                               "weight": self.cfg.weight, "batches": int(self.stats["batches"])}
        if self.cfg.method == "pgd":
            out["alpha"] = self.alpha
        if self.stats["batches"]:
            out["mean_clean_loss"] = round(self.stats["clean_loss_sum"] / n, 6)
            out["mean_adversarial_loss"] = round(self.stats["adv_loss_sum"] / n, 6)
            out["mean_perturbation_norm"] = round(self.stats["delta_norm_sum"] / n, 6)
        return out


def adversarial_section(summary: dict[str, Any]) -> tuple[str, str]:
    """The report section (title, trusted html) of a run trained with adversarial perturbations."""
    rows = [("method", str(summary.get("method", "")).upper()), ("epsilon (L2 per example)", summary.get("epsilon")),
            ("ascent steps", summary.get("steps")), ("step size alpha", summary.get("alpha")),
            ("adversarial loss weight", summary.get("weight")), ("batches", summary.get("batches")),
            ("mean clean loss", summary.get("mean_clean_loss")),
            ("mean adversarial loss", summary.get("mean_adversarial_loss")),
            ("mean perturbation norm", summary.get("mean_perturbation_norm"))]
    cells = "".join(f"<tr><td>{escape(k)}</td><td class=\"num\">{escape(_fmt(v))}</td></tr>"
                    for k, v in rows if v is not None)
    gap = ""
    if summary.get("mean_clean_loss") is not None and summary.get("mean_adversarial_loss") is not None:
        gap = (f"<p>On average the perturbed batches cost {escape(_fmt(summary['mean_adversarial_loss']))} against "
               f"{escape(_fmt(summary['mean_clean_loss']))} clean: the gap is what the model was trained to close. "
               "Robustness to real text perturbations is measured by <code>taskfit attack RUN_DIR</code>.</p>")
    html = ("<p>The model was trained on clean batches plus the same batches with their token embeddings moved "
            "in the loss-increasing direction (an L2 ball of radius epsilon per example; padding untouched).</p>"
            f"<table><tr><th>setting</th><th>value</th></tr>{cells}</table>{gap}")
    return "Adversarial training", html


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
