"""Every scenario materialises into a folder whose recipes validate, whose data are what the README says, and
whose scripts import; bad targets and names fail with messages that say what to do."""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from taskfit.cli import app
from taskfit.config import load_recipe
from taskfit.errors import ConfigError, DataError
from taskfit.scenarios import SCENARIOS, Scenario, create_scenario
from taskfit.scenarios import recommendation as rec
from taskfit.scenarios.financial_news import PHASES
from taskfit.validate import validate_recipe

NAMES = ["customer-service", "financial-news-monitor", "image-triage", "recommendation", "risk-scoring"]
SCRIPTS = {"customer-service": "assistant.py", "financial-news-monitor": "stream_scorer.py",
           "image-triage": "triage.py", "recommendation": "rank_metrics.py"}


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("scenarios")
    return {name: (create_scenario(name, root / name, seed=0), root / name)[1] for name in NAMES}


def load_script(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module  # dataclasses look their module up while the class is being built
    spec.loader.exec_module(module)
    return module


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_the_registry_lists_the_five_scenarios_and_new_list_shows_them() -> None:
    assert SCENARIOS.names() == NAMES
    res = CliRunner().invoke(app, ["new", "--list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0, res.output
    for name in NAMES:
        assert name in res.output and SCENARIOS.get(name).summary[:40] in res.output


@pytest.mark.parametrize("name", NAMES)
def test_each_scenario_folder_validates_and_documents_itself(name: str, folders: dict[str, Path]) -> None:
    folder, spec = folders[name], SCENARIOS.get(name)
    for recipe_file in spec.recipes:
        # the recipe's relative data paths resolve against the recipe's folder, from any working directory
        report = validate_recipe(folder / recipe_file, [])
        assert report["summary"].startswith(load_recipe(folder / recipe_file).task.name)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "## 中文说明" in readme and "## Run it" in readme and "## What to look at" in readme
    assert "licen" in readme.lower() or "MIT" in readme or "BSD" in readme
    if name in SCRIPTS:
        module = load_script(folder / SCRIPTS[name])
        assert callable(module.main)
        with pytest.raises(SystemExit) as e:  # argparse answers --help without loading a model
            module.main(["--help"])
        assert e.value.code == 0


def test_risk_scoring_has_the_fairness_group_and_balanced_domains(folders: dict[str, Path]) -> None:
    from taskfit.data.packaged.groups import _tsv_rows

    recipe = load_recipe(folders["risk-scoring"] / "recipe.yaml")
    assert recipe.fairness is not None and recipe.fairness.group_column == "domain"
    assert "domain" in recipe.data.keep_columns
    rows = read_csv(folders["risk-scoring"] / "data" / "risk.csv")
    assert Counter(r["domain"] for r in rows) == dict.fromkeys(
        ["movie_review", "news_editorial", "product_review", "tweet"], 500)
    ratings = {" ".join(t.split()): float(s) for _, s, t in _tsv_rows("vader_tweets.tsv.gz", 3)}
    tweet = next(r for r in rows if r["domain"] == "tweet")
    assert float(tweet["risk"]) == pytest.approx(-ratings[tweet["text"]], abs=1e-3)  # risk = -rating


def test_recommendation_users_are_synthetic_deterministic_and_rankable(folders: dict[str, Path],
                                                                         tmp_path: Path) -> None:
    folder = folders["recommendation"]
    train = read_csv(folder / "data" / "interactions.csv")
    test = read_csv(folder / "data" / "test_impressions.csv")
    assert not {r["user"] for r in train} & {r["user"] for r in test}
    by_user: dict[str, list[dict[str, str]]] = defaultdict(list)
    for r in test:
        by_user[r["user"]].append(r)
    for rows in by_user.values():
        assert len(rows) == rec.IMPRESSIONS and {r["label"] for r in rows} == {"click", "skip"}
        history = rows[0]["history"].split(" | ")
        assert len(history) == rec.HISTORY and not set(history) & {r["item"] for r in rows}
    assert len(by_user) == rec.TEST_USERS and len(train) == rec.TRAIN_USERS * rec.IMPRESSIONS
    # same seed, same bytes; another seed, other users
    again = create_scenario("recommendation", tmp_path / "again", seed=0)
    assert {p.name: p.read_bytes() for p in again if p.suffix == ".csv"} == {
        p.name: p.read_bytes() for p in (folder / "data").iterdir()}
    other = create_scenario("recommendation", tmp_path / "other", seed=1)
    assert next(p for p in other if p.name == "interactions.csv").read_bytes() != (
        folder / "data" / "interactions.csv").read_bytes()


def test_rank_metrics_agree_with_sklearn_and_an_oracle_ranks_perfectly(folders: dict[str, Path]) -> None:
    import numpy as np
    from sklearn.metrics import ndcg_score, roc_auc_score

    rm = load_script(folders["recommendation"] / "rank_metrics.py")
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200).tolist()
    s = np.round(rng.random(200), 1).tolist()  # rounded: many ties
    assert rm.auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    rel = [0, 1, 0, 0, 1, 1, 0, 0]
    scores = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2]
    assert rm.ndcg_at_k(rel, 5) == pytest.approx(ndcg_score([rel], [scores], k=5), abs=1e-12)
    users = defaultdict(list)
    for r in read_csv(folders["recommendation"] / "data" / "test_impressions.csv"):
        clicked = int(r["label"] == "click")
        users[r["user"]].append((float(clicked), clicked))  # an oracle scores clicks 1, skips 0
    report = rm.rank_report(users, [5, 10])
    assert report["auc"] == 1.0 and report["ndcg@5"] == 1.0 and report["ndcg@10"] == 1.0
    assert 0 < report["random_ndcg@5"] < 0.8 and report["users"] == rec.TEST_USERS
    assert report["impressions"] == rec.TEST_USERS * rec.IMPRESSIONS


def test_news_stream_has_the_planted_surge_and_the_rule_fires_on_it(folders: dict[str, Path]) -> None:
    from datetime import datetime

    folder = folders["financial-news-monitor"]
    truth = read_csv(folder / "data" / "stream_truth.csv")
    lines = (folder / "data" / "stream.tsv").read_text(encoding="utf-8").splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [r["time"] for r in truth]
    start = 0
    for n, share in PHASES:
        assert sum(r["label"] == "neg" for r in truth[start:start + n]) == round(n * share)
        start += n
    training = {r["text"] for r in read_csv(folder / "data" / "sentiment.csv")}
    assert not training & {r["text"] for r in truth}  # stream items are held out of training
    scorer = load_script(folder / "stream_scorer.py")
    rule = scorer.load_rules(folder / "recipe.yaml", {})[0]  # the recipe's monitor: block, as the service reads it
    assert (rule.name, rule.label, rule.above, rule.window_minutes, rule.min_count) == ("negative_surge", "neg",
                                                                                         0.6, 30.0, 10)
    events = []
    for i, r in enumerate(truth):  # the human labels as a perfect model would predict them
        share, n, event = rule.update(datetime.fromisoformat(r["time"]), r["label"])
        if event:
            events.append((event, i))
    assert [e for e, _ in events][:2] == ["ALERT", "resolved"]
    alert_at, resolved_at = events[0][1], events[1][1]
    assert 60 <= alert_at < 90 < resolved_at  # fires inside the surge (items 60-89), resolves after it


def test_new_refuses_unknown_names_non_empty_folders_and_files(tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["new", "helpdesk", str(tmp_path / "x")])
    assert res.exit_code == 2
    assert "Unknown scenario 'helpdesk'. Available: customer-service, financial-news-monitor" in res.output
    assert not (tmp_path / "x").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["new", "risk-scoring", str(busy)])
    assert res.exit_code == 2 and "is not empty (1 entries: notes.txt); nothing was written" in res.output
    assert "--force" in res.output and sorted(p.name for p in busy.iterdir()) == ["notes.txt"]
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ConfigError, match="is a file, not a folder"):
        create_scenario("risk-scoring", tmp_path / "afile")
    old = Path.cwd()
    os.chdir(busy)
    try:
        with pytest.raises(ConfigError, match="current folder"):
            create_scenario("risk-scoring", ".", force=True)
    finally:
        os.chdir(old)


def test_force_replaces_and_a_failed_build_leaves_the_old_folder_intact(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "risk"
    target.mkdir()
    (target / "old.txt").write_text("old")
    res = CliRunner().invoke(app, ["new", "risk-scoring", str(target), "--force"])
    assert res.exit_code == 0, res.output
    assert not (target / "old.txt").exists() and (target / "data" / "risk.csv").is_file()
    assert "taskfit train " + str(target / "recipe.yaml") in res.output.replace("\n", "")

    def broken(folder: Path, seed: int) -> list[Path]:
        (folder / "data").mkdir()
        (folder / "data" / "half.csv").write_text("text\n")
        raise DataError("source package missing")

    monkeypatch.setitem(SCENARIOS._entries, "broken", Scenario("broken", "x", "risk_scoring", broken))
    with pytest.raises(DataError, match="source package missing"):
        create_scenario("broken", target, force=True)
    assert (target / "data" / "risk.csv").is_file() and not (target / "data" / "half.csv").exists()
    with pytest.raises(DataError):
        create_scenario("broken", tmp_path / "fresh")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["risk"]  # no temp folder or half-built folder left
