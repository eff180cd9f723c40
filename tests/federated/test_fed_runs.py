"""Federated runs on real rows with the packaged MiniLM: Flower simulation (Ray), loopback processes, the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch
import yaml

from taskfit.config import parse_recipe
from taskfit.errors import DataError, IncompatibleError
from taskfit.federated import run_federated
from taskfit.federated.client import local_train
from taskfit.federated.state import clear_cache, load_context, write_spec
from taskfit.train import Progress

os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")


class Lines(Progress):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def note(self, message: str) -> None:
        self.lines.append(message)


def fed_recipe(train: Path, model: Path | str, out: Path, name: str, **fed: Any) -> dict[str, Any]:
    """LoRA on MiniLM, 240 rows (192 train = 64 per client), length 64: a round takes seconds. One torch thread:
    on a busy shared machine more threads spin against each other (10x slower steps)."""
    block = {"clients": 3, "rounds": 2, "local_epochs": 2, **fed}
    return {"data": {"train": str(train), "max_length": 64, "limit": 240}, "model": {"name": str(model)},
            "method": {"name": "lora", "r": 8}, "train": {"lr": 5e-3, "batch_size": 16, "seed": 0, "threads": 1},
            "federated": block, "output": {"dir": str(out), "name": name}}


def _no_flower_left() -> list[str]:
    """Flower / Ray processes still running. Zombies (state Z) are left out: they have exited and hold nothing;
    they stay listed only where the container's init (their new parent once taskfit stopped theirs) never reaps."""
    out = subprocess.run(["ps", "-eo", "pid,stat,args"], capture_output=True, text=True).stdout
    running = [line for line in out.splitlines()[1:] if not line.split()[1].startswith("Z")]
    return [line for line in running if any(k in line for k in ("flower-super", "flwr-clientapp",
            "flwr-serverapp", "ray::", "raylet", "gcs_server"))]


@pytest.fixture(scope="module")
def sim_run(tmp_path_factory, bbc_csv, minilm_dir):
    """FedProx, 3 clients, 2 rounds in simulation; client 1 raises in round 1."""
    out = tmp_path_factory.mktemp("fed-runs")
    progress = Lines()
    recipe = parse_recipe(fed_recipe(bbc_csv, minilm_dir, out, "sim", strategy="fedprox", proximal_mu=0.01))
    summary = run_federated(recipe, progress, faults={1: {"round": 1, "how": "raise"}})
    return summary, progress.lines


def test_simulation_improves_the_global_model_despite_a_failed_client(sim_run):
    summary, lines = sim_run
    rounds = summary.rounds
    assert [r["round"] for r in rounds] == [0, 1, 2]
    assert rounds[1]["clients_ok"] == 2 and rounds[1]["clients_failed"] == 1
    assert "failed on purpose in round 1" in rounds[1]["failures"][0]["reason"]
    assert rounds[2]["clients_ok"] == 3 and rounds[2]["clients_failed"] == 0
    # the global model after round 2 beats the untrained one (5 topics: chance is 0.2)
    assert rounds[2]["valid_accuracy"] > rounds[0]["valid_accuracy"]
    assert rounds[2]["valid_loss"] < rounds[0]["valid_loss"]
    assert summary.valid_metrics["accuracy"] == pytest.approx(rounds[2]["valid_accuracy"])
    assert any(line.startswith("round 1/2  clients ok 2 failed 1") for line in lines)
    assert _no_flower_left() == []


def test_simulation_run_directory_is_a_normal_taskfit_run(sim_run):
    summary, _ = sim_run
    run = summary.run_dir
    results = json.loads((run / "results.json").read_text())
    fed = results["federated"]
    assert (fed["clients"], fed["rounds"], fed["strategy"], fed["failures"]) == (3, 2, "fedprox", 1)
    assert fed["client_rows"] == [64, 64, 64]
    # LoRA: only adapters + head travel, under 1% of the full model, every round and direction
    assert fed["bytes_per_client"] < 0.01 * fed["full_model_bytes"]
    assert rounds_bytes_ok(fed["per_round"])
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "Federated training" in html and "failed on purpose" in html and "data:image/png;base64," in html
    assert len(Path(run / "metrics.jsonl").read_text().splitlines()) == 3

    from taskfit.inference import Predictor

    predictor = Predictor.load(run)
    preds = predictor.predict(["Shares fell after the bank's profits slumped."])
    assert preds[0]["label"] in predictor.labels


def rounds_bytes_ok(per_round: list[dict[str, Any]]) -> bool:
    r1, r2 = per_round[1], per_round[2]
    # round 1: 3 clients asked, 2 answered; the upload of each answer is the same size as its download
    return r1["bytes_up"] * 3 == r1["bytes_down"] * 2 and r2["bytes_up"] == r2["bytes_down"]


def test_fedprox_term_pulls_local_weights_towards_the_global_ones(tmp_path, bbc_csv, tiny_model_dir):
    recipe = parse_recipe(fed_recipe(bbc_csv, tiny_model_dir, tmp_path, "prox", local_epochs=3))
    ctx = load_context(write_spec(tmp_path / "prox", recipe))
    try:
        start = ctx.global_state()

        def drift(mu: float) -> float:
            new, metrics = local_train(ctx, 0, start, epochs=3, mu=mu, server_round=1)
            assert metrics["num-examples"] == 64 and metrics["steps"] == 12
            return float(sum(((new[k] - start[k]) ** 2).sum() for k in start))

        free, held = drift(0.0), drift(50.0)
        assert held < 0.5 * free
        assert drift(0.0) == pytest.approx(free)  # same round and client: same data order, same result
    finally:
        clear_cache()


def test_client_dp_spends_the_budget_over_all_rounds(tmp_path, bbc_csv, tiny_model_dir):
    tree = fed_recipe(bbc_csv, tiny_model_dir, tmp_path, "dp", rounds=2)
    tree["privacy"] = {"dp": {"epsilon": 4}}
    ctx = load_context(write_spec(tmp_path / "dp", parse_recipe(tree)))
    try:
        state, kept, spent = ctx.global_state(), None, []
        for server_round in (1, 2):
            new, metrics = local_train(ctx, 2, state, epochs=1, mu=0.0, server_round=server_round, dp_state=kept)
            kept = json.loads(json.dumps(ctx.dp_states.pop(2)))  # as Flower's node state stores it
            spent.append(metrics["epsilon"])
            assert any(not torch.equal(new[k], state[k]) for k in state)
            state = new
        # the noise is planned for both rounds: round 1 spends part of ε, round 2 reaches it without passing it
        assert 0 < spent[0] < spent[1] <= 4.0 + 0.05
        assert kept["accountant"]["history"][-1][2] == 8  # 2 rounds × 4 Poisson draws of 16 from 64 rows
        assert not any(type(m).__name__ == "GradSampleModule" for m in ctx.model.modules())
    finally:
        clear_cache()


def test_bad_inputs_fail_before_any_flower_process(tmp_path, bbc_csv, minilm_dir):
    tree = fed_recipe(bbc_csv, minilm_dir, tmp_path, "bad", partition="column", partition_column="branch")
    with pytest.raises(IncompatibleError, match=r"federated.partition_column: column 'branch' not found in .*"
                       r"available columns: text, label"):
        run_federated(parse_recipe(tree))
    tree = fed_recipe(bbc_csv, minilm_dir, tmp_path, "bad", clients=30)
    tree["data"]["limit"] = 30
    with pytest.raises(DataError, match=r"federated.clients is 30 but the training split has only 2\d row"):
        run_federated(parse_recipe(tree))
    tree = fed_recipe(bbc_csv, minilm_dir, tmp_path, "bad", strategy="fedprox")
    tree["privacy"] = {"dp": {"epsilon": 8}}
    with pytest.raises(IncompatibleError, match=r"federated\.strategy: fedprox cannot be combined with privacy\.dp"):
        run_federated(parse_recipe(tree))
    assert not (tmp_path / "bad").exists()  # failed checks leave no half run directory


def test_cli_partition_by_a_column_with_too_few_values(tmp_path, bbc_csv):
    df = pd.read_csv(bbc_csv).head(60)
    df["branch"] = ["north", "south"] * 30
    df.to_csv(tmp_path / "train.csv", index=False)
    recipe = fed_recipe(Path("train.csv"), "all-MiniLM-L6-v2", tmp_path / "runs", "cli", partition="column",
                        partition_column="branch")
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "taskfit", "federate", str(tmp_path / "recipe.yaml"),
                          "federated.clients=3"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "federated.partition_column 'branch' has 2 distinct value(s) ('north', 'south')" in res.stderr
    assert "Traceback" not in res.stderr


@pytest.mark.slow
def test_processes_on_loopback_survive_a_killed_client(tmp_path, bbc_csv, minilm_dir):
    """A real SuperLink and 2 SuperNodes; client 1's process exits mid-round; the round still completes."""
    recipe = parse_recipe(fed_recipe(bbc_csv, minilm_dir, tmp_path, "proc", clients=2, rounds=1, local_epochs=1,
                                     mode="processes", round_timeout=240))
    summary = run_federated(recipe, faults={1: {"round": 1, "how": "exit"}})
    r1 = summary.rounds[1]
    assert (r1["clients_ok"], r1["clients_failed"]) == (1, 1)
    assert summary.rounds[1]["valid_loss"] < summary.rounds[0]["valid_loss"]
    assert (summary.run_dir / "federated" / "flower-superlink.log").is_file()
    assert torch.load(summary.run_dir / "federated" / "global.pt", weights_only=True)
    assert _no_flower_left() == []
