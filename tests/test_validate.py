"""`taskfit validate`: every problem of a recipe, its files, columns and model, reported at once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import tiny_recipe
from taskfit.data.readers import read_table
from taskfit.errors import ConfigError, DataError
from taskfit.validate import validate_recipe


def _write(tmp_path: Path, tree: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(tree, allow_unicode=True), encoding="utf-8")
    return path


def _rows(summary: str) -> dict[str, int]:
    return {k: int(v) for k, v in re.findall(r"(train|valid|test) (\d+)", summary)}


def test_all_input_problems_in_one_error(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path) -> None:
    tree = tiny_recipe(bbc_csv, tiny_model_dir, tmp_path / "runs")
    tree["data"].update(text="body", label="category", valid=str(tmp_path / "missing_valid.csv"))
    with pytest.raises(ConfigError) as info:
        validate_recipe(_write(tmp_path, tree), [])
    problems = info.value.problems
    assert len(problems) == 3, problems
    train_problems = sorted(p for p in problems if p.startswith("data.train:"))
    assert len(train_problems) == 2
    assert "'body'" in train_problems[0] + train_problems[1] and "'category'" in train_problems[0] + train_problems[1]
    assert all("available columns: text, label" in p for p in train_problems)
    valid_problem = next(p for p in problems if p.startswith("data.valid:"))
    assert "missing_valid.csv" in valid_problem and "does not exist" in valid_problem


def test_unresolvable_model_is_one_more_problem(tmp_path: Path, bbc_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)
    tree = tiny_recipe(bbc_csv, tmp_path / "no_model_here", tmp_path / "runs")
    tree["data"]["text"] = "body"
    with pytest.raises(ConfigError) as info:
        validate_recipe(_write(tmp_path, tree), [])
    paths = sorted(p.split(":")[0] for p in info.value.problems)
    assert paths == ["data.train", "model.name"]


def test_schema_problems_come_first(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path) -> None:
    tree = tiny_recipe(bbc_csv, tiny_model_dir, tmp_path / "runs", lrr=1e-3)
    with pytest.raises(ConfigError) as info:
        validate_recipe(_write(tmp_path, tree), [])
    assert info.value.problems[0].startswith("train.lrr:")


def test_good_recipe_summary(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path) -> None:
    tree = tiny_recipe(bbc_csv, tiny_model_dir, tmp_path / "runs")
    out = validate_recipe(_write(tmp_path, tree), ["method.name=lora"])
    summary = out["summary"]
    assert "text_classification" in summary and "(lora)" in summary
    assert "5 labels" in summary
    rows = _rows(summary)
    assert set(rows) == {"train", "valid", "test"}
    dropped = sum(len(i["rows"]) for i in out["issues"] if "dropped" in i["message"])
    assert sum(rows.values()) == len(read_table(bbc_csv)) - dropped
    # Default fractions: 10% valid, 10% test (stratified, so within a row per class of 5 classes).
    assert abs(rows["valid"] - 30) <= 5 and abs(rows["test"] - 30) <= 5
    assert isinstance(out["issues"], list)
    assert all({"severity", "check", "message", "file", "rows"} <= set(i) for i in out["issues"])


def test_good_recipe_reports_data_issues(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = tmp_path / "train.csv"
    lines = ["text,label"] + [f"good review {i},pos" for i in range(10)] + [f"差评 {i},neg" for i in range(10)]
    lines += ["good review 3,pos", '"",neg']  # a duplicate (row 21) and an empty text (row 22)
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    valid = tmp_path / "valid.csv"
    valid.write_text("text,label\nnew good one,pos\n新的差评,neg\n", encoding="utf-8")
    tree = tiny_recipe(train, tiny_model_dir, tmp_path / "runs")
    tree["data"].update(valid=str(valid), test_fraction=0)
    out = validate_recipe(_write(tmp_path, tree), [])
    by_check = {i["check"]: i for i in out["issues"]}
    assert by_check["duplicates"]["rows"] == [21]
    assert by_check["empty_text"]["rows"] == [22]
    assert _rows(out["summary"]) == {"train": 21, "valid": 2}


def test_fatal_data_findings_raise(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = tmp_path / "train.csv"
    train.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(20)) + "t0,b\n",
                     encoding="utf-8")
    valid = tmp_path / "valid.csv"
    valid.write_text("text,label\nv1,a\nv2,b\n", encoding="utf-8")
    tree = tiny_recipe(train, tiny_model_dir, tmp_path / "runs")
    with pytest.raises(DataError, match="different label") as info:
        validate_recipe(_write(tmp_path, tree), [f"data.valid={valid}", "data.test_fraction=0"])
    assert "rows 1, 21" in str(info.value)


def test_relative_paths_resolve_against_recipe(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "train.csv").write_bytes(bbc_csv.read_bytes())
    tree = tiny_recipe(Path("train.csv"), tiny_model_dir, tmp_path / "runs")
    monkeypatch.chdir(tmp_path)
    out = validate_recipe(_write(folder, tree), [])
    assert sum(_rows(out["summary"]).values()) > 0
