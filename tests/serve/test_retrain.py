"""Retraining on feedback with replay: the gate and the registry decision on constructed scores, the errors, and
real runs (a tiny model fine-tuned on real BBC rows) through the library (interrupted and resumed) and the CLI."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pandas as pd
import pytest

from conftest import interrupt_at, run_taskfit, tiny_recipe
from taskfit.errors import ConfigError, DataError
from taskfit.serve.db import Store
from taskfit.serve.records import PredictionRecord
from taskfit.serve.retrain import REPORT_FILE, decide, gate, replay_count, retrain_run


def test_gate_allows_a_drop_up_to_the_tolerance():
    assert gate(0.80, 0.80, 0.02)[0] and gate(0.80, 0.85, 0.0)[0]
    assert gate(0.80, 0.78, 0.02) == (True, "the old-task score moved by -0.0200 (tolerance 0.02)")
    ok, reason = gate(0.80, 0.70, 0.02)
    assert not ok and reason.startswith("the old-task score dropped by 0.1000 (0.8000 → 0.7000), more than the "
                                        "tolerance 0.02")
    assert "more replay (--replay)" in reason


def test_replay_is_a_fraction_or_a_count():
    assert [replay_count(r, 240) for r in (0, 0.5, 1, 100, 1000)] == [0, 120, 240, 100, 240]
    with pytest.raises(ConfigError, match=r"--replay must be 0 or more .* got -1"):
        replay_count(-1, 240)
    with pytest.raises(ConfigError, match=r"--replay above 1 is a row count and must be a whole number, got 2\.5"):
        replay_count(2.5, 240)


@pytest.fixture
def store(tmp_path: Path):
    s = Store(f"sqlite:///{tmp_path / 'serve.db'}")
    yield s
    s.close()


def test_failing_gate_leaves_the_registry_and_passing_one_promotes(store, tmp_path):
    """Without replay the old-task score fell 0.12 (refused, production stays v1); with replay it held within
    0.02 (v2 registered and promoted, v1 archived)."""
    store.register_model("news", "1", str(tmp_path / "run"), stage="production")
    forgot = {"old_test": {"before": 0.90, "after": 0.78}, "new_test": {"before": 0.40, "after": 0.95}}
    refused = decide(store, "news", tmp_path / "no-replay" / "model", forgot, "macro_f1", 0.02, promote=True)
    assert (refused["gate"], refused["decision"], refused["promoted"]) == ("fail", "refused", None)
    assert refused["scores"]["old_test"]["delta"] == pytest.approx(-0.12)
    assert [(v.version, v.stage) for v in store.model_versions("news")] == [("1", "production")]

    kept = {"old_test": {"before": 0.90, "after": 0.89}, "new_test": {"before": 0.40, "after": 0.85}}
    assert decide(store, "news", tmp_path / "x", kept, "macro_f1", 0.02, promote=False)["decision"] == (
        "gate passed; not promoted (no --promote)")
    assert len(store.model_versions("news")) == 1
    done = decide(store, "news", tmp_path / "replay" / "model", kept, "macro_f1", 0.02, promote=True)
    assert (done["gate"], done["decision"], done["promoted"]) == ("pass", "promoted", "2")
    assert [(v.version, v.stage) for v in store.model_versions("news")] == [("1", "archived"), ("2", "production")]
    prod = store.production("news")
    assert prod is not None and prod.path == str((tmp_path / "replay" / "model").resolve())
    assert prod.metrics == {"metric": "macro_f1", "old_test": 0.89, "new_test": 0.85}


@pytest.fixture(scope="module")
def news_run(tmp_path_factory, bbc_csv, tiny_model_dir) -> Path:
    from taskfit.config import parse_recipe
    from taskfit.pipeline import train_recipe

    out = tmp_path_factory.mktemp("runs")
    return train_recipe(parse_recipe(tiny_recipe(bbc_csv, tiny_model_dir, out, max_steps=3))).run_dir


@pytest.fixture(scope="module")
def new_rows(tmp_path_factory, bbc_csv) -> pd.DataFrame:
    """Real BBC rows the run never saw (the feedback users send about new traffic)."""
    from taskfit.data.packaged import write_dataset

    every = pd.read_csv(write_dataset("bbc_news", tmp_path_factory.mktemp("all") / "all.csv", n=None, seed=0))
    return every[~every["text"].isin(set(pd.read_csv(bbc_csv)["text"]))].reset_index(drop=True)


def _feedback(store: Store, rows: pd.DataFrame, model: str = "run") -> None:
    """Log each row as a prediction of ``model`` (answered 'tech') and send its true label as feedback."""
    records = [PredictionRecord(uuid.uuid4().hex, model, "1", t, "tech", 0.5, {"label": "tech"}, 1.0)
               for t in rows["text"]]
    store.log_predictions(records, mask=False)
    for rec, label in zip(records, rows["label"], strict=True):
        store.add_feedback(rec.request_id, label)


def _skewed(rows: pd.DataFrame, per_other: int) -> pd.DataFrame:
    """Mostly business news (users correct what they see most), a few rows of the other topics."""
    parts = [rows[rows["label"] == "business"].head(20)]
    parts += [rows[rows["label"] == c].head(per_other) for c in ("entertainment", "politics", "sports", "tech")]
    return pd.concat(parts)


def test_bad_feedback_fails_before_training(news_run, new_rows, store, tmp_path):
    with pytest.raises(DataError, match="no feedback for model 'run' in the database"):
        retrain_run(news_run, store, out=tmp_path / "a")
    _feedback(store, _skewed(new_rows, per_other=0))
    with pytest.raises(DataError, match=r"has no row of label\(s\) \['entertainment', 'politics', 'sports', 'tech'\]"):
        retrain_run(news_run, store, out=tmp_path / "b", replay=0)
    with pytest.raises(ConfigError, match="--holdout is the share of feedback"):
        retrain_run(news_run, store, out=tmp_path / "c", holdout=1.5)
    _feedback(store, new_rows.head(1).assign(label="weather"))
    with pytest.raises(DataError, match=r"label\(s\) \['weather'\] the model does not have"):
        retrain_run(news_run, store, out=tmp_path / "d")
    assert not any((tmp_path / d).exists() for d in "abcd")  # nothing written before the checks passed


def test_retrain_is_interrupted_and_resumed(news_run, new_rows, store, tmp_path):
    _feedback(store, _skewed(new_rows, per_other=3))
    out = tmp_path / "retrained"
    args = dict(out=out, replay=40, overrides={"max_steps": 4, "checkpoint_every": 2})
    with pytest.raises(KeyboardInterrupt):
        retrain_run(news_run, store, progress=interrupt_at(3), **args)  # type: ignore[arg-type]
    assert (out / "checkpoints").is_dir() and not (out / "model").exists()
    notes: list[str] = []
    result = retrain_run(news_run, store, note=notes.append, **args)  # type: ignore[arg-type]
    assert notes == [f"resuming the unfinished retrain in {out}"]
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    assert report == json.loads(json.dumps(result.report))
    assert report["rows"] == {"feedback": 32, "feedback_train": 22, "feedback_test": 10, "replay": 40, "train": 62,
                              "old_test": report["rows"]["old_test"]}
    train = pd.read_csv(out / "retrain_data" / "train.csv")
    assert len(train) == 62 and set(train["label"]) == {"business", "entertainment", "politics", "sports", "tech"}
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(h.get("step", 0) for h in history) == 4


def test_cli_retrain_report_and_registry(news_run, new_rows, tmp_path):
    """End to end through `taskfit retrain --promote`: the report's decision and the registry agree."""
    url = f"sqlite:///{tmp_path / 'serve.db'}"
    with Store(url) as store:
        store.register_model("run", "1", str(news_run), stage="production")
        _feedback(store, _skewed(new_rows, per_other=3))
    out = tmp_path / "cli-retrain"
    res = run_taskfit(["retrain", str(news_run), "--db", url, "--replay", "0.5", "--max-steps", "3", "--promote",
                       "--out", str(out)], ok=False, timeout=300)
    report = json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))
    old = report["scores"]["old_test"]
    assert report["gate"] == ("pass" if old["before"] - old["after"] <= 0.02 else "fail")
    assert res.returncode == (0 if report["gate"] == "pass" else 3), res.stdout[-2000:] + res.stderr[-2000:]
    assert "old task (run's test split)" in res.stdout and "new cases (held-out feedback)" in res.stdout
    assert f"decision: {report['decision']}" in res.stdout
    with Store(url) as store:
        prod = store.production("run")
        assert prod is not None
        if report["gate"] == "pass":
            assert (report["promoted"], prod.version, prod.path) == ("2", "2", str((out / "model").resolve()))
        else:
            assert (report["promoted"], prod.version) == (None, "1")
    again = run_taskfit(["retrain", str(news_run), "--db", url, "--out", str(out)], ok=False)
    assert again.returncode == 2 and "already holds a finished retrain" in again.stderr
