"""DP-SGD hook on tiny BERTs built from config: per-example clipping, the accountant, Poisson batches,
and the model checks that refuse what Opacus cannot do."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import BertConfig, BertForSequenceClassification

from taskfit.config import DPConfig, TrainConfig
from taskfit.errors import ConfigError, IncompatibleError
from taskfit.methods import METHODS
from taskfit.methods.lora import LoraConfigBlock
from taskfit.trust.dp import DPHook, model_problems, privacy_section
from taskfit.trust.dp_batching import PoissonBatcher

N_ROWS, LENGTH, VOCAB = 48, 9, 120
CPU = torch.device("cpu")


def _model(method: str, num_labels: int = 3) -> torch.nn.Module:
    """A 1-layer, 16-wide BERT classifier without dropout (per-example gradients are then deterministic)."""
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                     intermediate_size=32, max_position_embeddings=32, num_labels=num_labels,
                     hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model: torch.nn.Module = BertForSequenceClassification(cfg)
    if method == "lora":
        model = METHODS.get("lora").apply(model, LoraConfigBlock(r=4, dropout=0.0), ["classifier"])
    return model.train()


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Token ids [N, L] with ragged lengths (right padding), attention mask [N, L], labels [N]."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(5, VOCAB, (N_ROWS, LENGTH), generator=g)
    lengths = torch.randint(3, LENGTH + 1, (N_ROWS,), generator=g)
    mask = (torch.arange(LENGTH)[None, :] < lengths[:, None]).long()
    return ids * mask, mask, torch.randint(0, 3, (N_ROWS,), generator=g)


def _setup(hook: DPHook) -> None:
    """Plan the hook's σ and wrap a tiny model (the accounting tests need no training)."""
    model = _model("full")
    hook.setup(model, model, torch.optim.SGD(model.parameters()), None, CPU)  # type: ignore[arg-type]


def _flat_grad(model: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])


@pytest.mark.parametrize("method", ["full", "lora"])
def test_update_is_the_mean_of_per_example_clipped_gradients(method: str) -> None:
    """With the noise switched off, a DP step moves the weights by exactly -lr/B × Σ clip(g_i), where each
    g_i is computed here by a plain one-example backward pass; so per-example clipping really happens."""
    model = _model(method)
    ids, mask, y = _data()
    train = TrainConfig(batch_size=8, max_steps=2, seed=3, precision="fp32")
    params = [p for p in model.parameters() if p.requires_grad]
    first, second = PoissonBatcher(N_ROWS, train.batch_size / N_ROWS, train.seed).epoch(0)[:2]

    # Reference per-example gradients [B, P] of the first batch, before Opacus touches the model.
    rows = []
    for i in first:
        model.zero_grad()
        F.cross_entropy(model(input_ids=ids[i:i + 1], attention_mask=mask[i:i + 1]).logits, y[i:i + 1]).backward()
        rows.append(_flat_grad(model))
    ref = torch.stack(rows)
    model.zero_grad()
    clip = float(ref.norm(dim=1).min() + ref.norm(dim=1).max()) / 2
    hook = DPHook(DPConfig(epsilon=8.0, max_grad_norm=clip), train, N_ROWS)
    fwd, opt, plan = hook.setup(model, model, torch.optim.SGD(params, lr=1.0), None, CPU)
    assert [b.tolist() for b in plan.epoch(0)[:2]] == [first.tolist(), second.tolist()]
    opt.noise_multiplier = 0.0  # isolate clipping; the planned σ is checked elsewhere

    factors = (clip / (ref.norm(dim=1) + 1e-6)).clamp(max=1.0)  # Opacus' clip factor
    assert (factors < 1).any() and (factors == 1).any()  # some examples are clipped, some are not
    expected = -(factors[:, None] * ref).sum(0) / train.batch_size  # lr 1, mean over the expected size
    for idx in (first, second):
        before = torch.cat([p.detach().flatten() for p in params])
        # fwd adds explicit position ids (opacus#841 breaks full BERT from the second step without them).
        # The second step runs under bf16 autocast, as training does on CPUs with fast bf16: clipping and
        # noise still happen in fp32 on the parameters' dtype, so the bound below holds all the same.
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=idx is second):
            loss = F.cross_entropy(fwd(input_ids=ids[idx], attention_mask=mask[idx]).logits.float(), y[idx])
        hook.backward(lambda: loss, loss, 1.0)  # noqa: B023 (called at once)
        opt.step()
        opt.zero_grad(set_to_none=True)
        hook.after_step(1)
        moved = torch.cat([p.detach().flatten() for p in params]) - before
        if idx is first:
            torch.testing.assert_close(moved, expected, atol=1e-6, rtol=1e-4)
        assert 0 < moved.norm() <= clip * len(idx) / train.batch_size + 1e-6
    assert hook.summary()["steps"] == 2


@pytest.mark.parametrize("accountant", ["rdp", "prv"])
def test_epsilon_spent_is_what_an_independent_opacus_accountant_reports(accountant: str) -> None:
    from opacus.accountants import PRVAccountant, RDPAccountant

    train = TrainConfig(batch_size=4, epochs=2, seed=0)
    hook = DPHook(DPConfig(epsilon=2.0, delta=1e-3, accountant=accountant), train, N_ROWS)
    _setup(hook)
    planned = hook.steps_planned
    assert planned == 2 * round(N_ROWS / 4)  # the loop's total: epochs × draws per epoch
    ref = RDPAccountant() if accountant == "rdp" else PRVAccountant()
    spent = []
    for step in range(1, planned + 1):
        hook.after_step(step)
        ref.step(noise_multiplier=hook.noise_multiplier, sample_rate=4 / N_ROWS)
        if step in (planned // 2, planned):
            spent.append(hook.epsilon_spent())
            assert spent[-1] == ref.get_epsilon(delta=1e-3)
    summary = hook.summary()
    assert summary["steps"] == planned and summary["epsilon_spent"] == round(spent[-1], 6)
    assert spent[0] < spent[-1] <= 2.0  # the budget grows with steps and the plan spends at most ε
    assert spent[-1] > 1.9  # and σ is not wastefully large (Opacus' search tolerance is 0.01)
    if accountant == "rdp":  # more noise for a smaller budget
        small = DPHook(DPConfig(epsilon=0.5, delta=1e-3, accountant=accountant), train, N_ROWS)
        _setup(small)
        assert small.noise_multiplier > hook.noise_multiplier  # type: ignore[operator]


def test_accountant_state_round_trips_and_refuses_another_plan() -> None:
    train = TrainConfig(batch_size=4, max_steps=5)
    a = DPHook(DPConfig(epsilon=3.0, accountant="rdp"), train, N_ROWS)
    _setup(a)
    for s in range(3):
        a.after_step(s + 1)
    b = DPHook(DPConfig(epsilon=3.0, accountant="rdp"), train, N_ROWS)
    _setup(b)
    b.load_state_dict(a.state_dict())
    assert b.steps == 3 and b.epsilon_spent() == a.epsilon_spent()
    c = DPHook(DPConfig(epsilon=1.0, accountant="rdp"), train, N_ROWS)
    _setup(c)
    with pytest.raises(ConfigError, match="noise multiplier / sample rate"):
        c.load_state_dict(a.state_dict())


def test_poisson_batches_are_seeded_independent_draws() -> None:
    plan = PoissonBatcher(200, 0.05, seed=7)
    assert len(plan) == 20
    e0, e1 = plan.epoch(0), plan.epoch(1)
    assert [b.tolist() for b in e0] == [b.tolist() for b in PoissonBatcher(200, 0.05, seed=7).epoch(0)]
    assert [b.tolist() for b in e0] != [b.tolist() for b in e1]
    draws = [b for e in range(100) for b in plan.epoch(e)]
    sizes = np.array([len(b) for b in draws])
    assert all(len(np.unique(b)) == len(b) and b.min() >= 0 and b.max() < 200 for b in draws)
    assert abs(sizes.mean() - 10) < 0.3 and sizes.min() < 6 and sizes.max() > 14  # Binomial(200, 0.05)
    counts = np.bincount(np.concatenate(draws), minlength=200)
    assert abs(counts.mean() - 100) < 3 and counts.min() > 60  # every row sampled ~once per epoch
    tiny = PoissonBatcher(10, 0.1, seed=0)  # P(empty) = 0.9^10 ≈ 0.35: empties are skipped and counted
    assert all(len(b) for e in range(5) for b in tiny.epoch(e)) and sum(tiny.empty_skipped.values()) > 0


def test_bad_settings_are_refused_with_the_fix() -> None:
    with pytest.raises(ConfigError, match=r"train.batch_size: 48 must be below the 48 training rows"):
        DPHook(DPConfig(epsilon=1.0), TrainConfig(batch_size=48), N_ROWS)
    with pytest.raises(ConfigError, match=r"privacy.dp.delta: 0.05 is not below 1 / rows"):
        DPHook(DPConfig(epsilon=1.0, delta=0.05), TrainConfig(batch_size=4), N_ROWS)
    hook = DPHook(DPConfig(epsilon=1e-4, accountant="rdp"), TrainConfig(batch_size=24, epochs=50), N_ROWS)
    unreachable = r"privacy.dp.epsilon: 0.0001 cannot be reached with 100 steps at sample rate 0.5: even noise mult"
    with pytest.raises(ConfigError, match=unreachable):
        _setup(hook)
    accum = DPHook(DPConfig(epsilon=1.0), TrainConfig(batch_size=4, grad_accum=2), N_ROWS)
    with pytest.raises(IncompatibleError, match=r"train.grad_accum: 2 is not supported"):
        _setup(accum)


class _ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.conv(x)).mean((2, 3)))


def test_batchnorm_is_named_unless_frozen_in_eval_mode() -> None:
    net = _ConvNet().train()
    problems = model_problems(net)
    assert len(problems) == 1 and problems[0].startswith("bn (BatchNorm2d): BatchNorm cannot support training")
    for p in [*net.conv.parameters(), *net.bn.parameters()]:
        p.requires_grad_(False)
    assert model_problems(net) == ["bn (BatchNorm2d): BatchNorm in training mode normalises each example with "
                                   "its batch mates"]
    net.bn.eval()  # what taskfit's image models do for a frozen backbone
    assert model_problems(net) == []
    hook = DPHook(DPConfig(epsilon=1.0), TrainConfig(batch_size=4), N_ROWS)
    with pytest.raises(IncompatibleError, match=r"per-example gradients for 1 layer\(s\) of this model: bn"):
        hook.setup(net.train(), net, torch.optim.SGD(net.parameters()), None, CPU)


def test_privacy_section_states_the_guarantee_and_escapes() -> None:
    title, body = privacy_section({"epsilon_target": 3.0, "epsilon_spent": 2.9871, "delta": 1e-5,
                                   "noise_multiplier": 0.71, "max_grad_norm": 1.0, "sample_rate": 0.01,
                                   "steps": 300, "accountant": "<prv>"})
    assert title == "Privacy (differential privacy)"
    assert "(2.987, 1e-05)-differentially private" in body and "&lt;prv&gt;" in body and "<prv>" not in body
