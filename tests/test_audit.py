"""`taskfit audit`: one trust report over a real trained run (MiniLM on real BBC rows), in English and Chinese."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import run_taskfit
from taskfit.audit_text import MESSAGES

PLANTED_EMAIL = "jane.doe.audit@example.com"
PLANTED_PHONE = "13812345678"


@pytest.fixture(scope="module")
def audited_run(tmp_path_factory: pytest.TempPathFactory, minilm_dir: Path, bbc_csv: Path) -> Path:
    """A short MiniLM run on 240 real BBC rows with a group column (text length bucket: a grouping made for
    the test, not a demographic) and two planted personal-data items, trained without PII masking."""
    tmp = tmp_path_factory.mktemp("audit")
    df = pd.read_csv(bbc_csv).head(240)
    df["region"] = ["north" if len(t) % 2 else "south" for t in df["text"]]
    df.loc[0, "text"] = f"Contact {PLANTED_EMAIL} or call {PLANTED_PHONE}. " + df.loc[0, "text"]
    data = tmp / "bbc_groups.csv"
    df.to_csv(data, index=False)
    recipe = {"data": {"train": str(data), "max_length": 64}, "model": {"name": str(minilm_dir)},
              "method": {"name": "full"}, "fairness": {"group_column": "region"},
              "train": {"max_steps": 12, "batch_size": 16, "lr": 1e-4, "head_lr": 3e-3, "seed": 0},
              "output": {"dir": str(tmp / "runs"), "name": "run"}}
    (tmp / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    run_taskfit(["train", str(tmp / "recipe.yaml")])
    return tmp / "runs" / "run"


def test_both_languages_have_every_message() -> None:
    assert MESSAGES["en"].keys() == MESSAGES["zh"].keys()


@pytest.mark.slow
def test_audit_writes_one_report_with_a_verdict_per_section(audited_run: Path) -> None:
    res = run_taskfit(["audit", str(audited_run), "--rows", "24", "--explain", "2", "--attacks", "typo,word_delete"])
    doc = json.loads((audited_run / "audit.json").read_text())
    s = doc["sections"]
    assert set(s) == {"provenance", "pii", "privacy", "robustness", "fairness", "explanations"}
    # The data files are unchanged since training.
    assert s["provenance"]["status"] == "pass"
    # Personal data was planted and not masked: the audit warns and counts it, without the values.
    assert s["pii"]["status"] == "warn"
    found = s["pii"]["data"]["found_in_training_file"]["by_type"]
    assert found.get("EMAIL", 0) >= 1 and found.get("PHONE", 0) >= 1
    # No DP in this run: a warning that says so.
    assert s["privacy"]["status"] == "warn" and "differential privacy" in s["privacy"]["verdict"]
    # Robustness was measured now on held-out rows with the two attacks asked for.
    attacks = s["robustness"]["data"]["attacks"]
    assert {a["name"] for a in attacks["attacks"]} == {"typo", "word_delete"}
    assert 0.0 <= attacks["clean_accuracy"] <= 1.0
    # Fairness per group from the recipe's group column, consistent with the group sizes of the test split.
    fair = s["fairness"]["data"]
    assert {g["group"] for g in fair["groups"]} == {"north", "south"}
    assert sum(g["n"] for g in fair["groups"]) == json.loads(
        (audited_run / "results.json").read_text())["test"]["n"]
    assert s["explanations"]["status"] == "pass" and len(s["explanations"]["data"]["examples"]) == 2
    html = (audited_run / "audit.html").read_text()
    for heading in ("Data provenance", "Personal data", "Differential privacy", "Robustness", "Fairness",
                    "Explanations", "Model card"):
        assert heading in html
    for raw in (PLANTED_EMAIL, PLANTED_PHONE):
        assert raw not in html and raw not in json.dumps(doc) and raw not in res.stdout
    card = (audited_run / "model_card.md").read_text()
    assert "## Metrics per group" in card and "No differential privacy." in card
    assert "pii" in res.stdout and "warn" in res.stdout


@pytest.mark.slow
def test_audit_in_chinese(audited_run: Path) -> None:
    run_taskfit(["audit", str(audited_run), "--lang", "zh", "--skip", "robustness,explanations,pii"])
    doc = json.loads((audited_run / "audit.json").read_text())
    assert doc["language"] == "zh"
    assert doc["sections"]["robustness"]["status"] == "not assessed"
    html = (audited_run / "audit.html").read_text()
    assert '<html lang="zh-CN">' in html and "数据来源" in html and "公平性" in html and "模型卡" in html
    assert "未使用差分隐私" in (audited_run / "model_card.md").read_text()


def test_audit_bad_input_is_named(tmp_path: Path) -> None:
    res = run_taskfit(["audit", str(tmp_path)], ok=False)
    assert res.returncode == 2 and "not a taskfit run or model directory" in res.stderr


@pytest.mark.slow
def test_audit_bad_options_fail_before_measuring(audited_run: Path, tmp_path: Path) -> None:
    res = run_taskfit(["audit", str(audited_run), "--lang", "fr"], ok=False)
    assert res.returncode == 2 and "--lang must be 'en' or 'zh', got 'fr'" in res.stderr
    res = run_taskfit(["audit", str(audited_run), "--skip", "fairnes"], ok=False)
    assert res.returncode == 2 and "fairnes" in res.stderr and "fairness" in res.stderr
    bad = tmp_path / "rows.csv"
    pd.DataFrame({"text": ["a"], "label": ["sports"]}).to_csv(bad, index=False)
    res = run_taskfit(["audit", str(audited_run), "--data", str(bad), "--group-column", "gender"], ok=False)
    assert res.returncode == 2 and "'gender'" in res.stderr and "text" in res.stderr


@pytest.mark.parametrize(("maes", "expected"), [((0.50, 0.55), "pass"), ((0.40, 0.70), "warn")])
def test_regression_fairness_is_judged_by_the_error_spread_between_groups(maes: tuple[float, float],
                                                                         expected: str) -> None:
    """A regression has no selection rate; its verdict comes from the MAE spread relative to the overall MAE."""
    import numpy as np

    from taskfit.audit import AuditOptions, _Auditor
    from taskfit.audit_text import MESSAGES
    from taskfit.trust.fairness import regression_fairness

    rng = np.random.default_rng(0)
    y = rng.normal(size=400)
    groups = np.array(["a"] * 200 + ["b"] * 200)
    err = np.concatenate([np.full(200, maes[0]), np.full(200, maes[1])]) * rng.choice([-1.0, 1.0], size=400)
    result = regression_fairness(y, y + err, groups)
    result["group_column"] = "domain"
    for lang in ("en", "zh"):
        auditor = object.__new__(_Auditor)
        auditor.opts, auditor.t, auditor.recipe = AuditOptions(lang=lang), MESSAGES[lang], None
        auditor.results = {"fairness": result}
        finding = auditor.fairness()
        assert finding.status == expected
        assert "domain" in finding.verdict and f"{maes[1] - maes[0]:.3f}" in finding.verdict
        assert "b" in finding.verdict  # the worst group is named
