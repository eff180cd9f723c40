"""The recipe schema: validation messages, overrides, YAML round-trips and the generated reference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from taskfit.config import apply_overrides, json_schema, load_recipe, parse_recipe, read_yaml
from taskfit.docs import recipe_reference
from taskfit.errors import ConfigError, TaskfitError
from taskfit.methods import METHODS


def _base(**extra: Any) -> dict[str, Any]:
    tree: dict[str, Any] = {"data": {"train": "train.csv"}}
    tree.update(extra)
    return tree


def _problems(tree: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        parse_recipe(tree)
    return info.value


# ---------------------------------------------------------------------------------------------
# valid recipes


def test_config_error_is_value_error_and_taskfit_error() -> None:
    err = ConfigError("bad", ["a.b: x", "c: y"])
    assert isinstance(err, ValueError)
    assert isinstance(err, TaskfitError)
    assert err.problems == ["a.b: x", "c: y"]
    # Every problem is listed in the message, one per line.
    assert str(err).splitlines() == ["bad", "  - a.b: x", "  - c: y"]


@pytest.mark.parametrize(
    "tree",
    [
        _base(),
        {
            "task": "text_classification",
            "data": {"train": "d/train.csv", "valid": "d/valid.jsonl", "test": "d/test.parquet", "text": "body",
                     "text_pair": "body2", "label": "y", "labels": ["正面", "负面"], "max_length": 64, "limit": 100,
                     "checks": {"duplicates": "drop", "leakage": "error", "imbalance_ratio": 3.5}},
            "model": {"name": "minilm"},
            "method": {"name": "lora", "r": 4, "alpha": 8, "target_modules": ["query", "value"]},
            "train": {"epochs": 0.5, "lr": 3e-5, "head_lr": 1e-3, "batch_tokens": 4096, "schedule": "cosine",
                      "early_stopping": {"metric": "loss", "patience": 2}},
            "output": {"dir": "out", "name": "运行", "overwrite": True},
        },
        _base(method={"name": "frozen", "train_layer_norm": True}),
    ],
    ids=["minimal", "everything", "frozen"],
)
def test_recipe_round_trips_through_yaml(tree: dict[str, Any]) -> None:
    recipe = parse_recipe(tree)
    text = recipe.to_yaml()
    again = parse_recipe(yaml.safe_load(text))
    assert again == recipe
    # The dump is fully resolved: defaults appear, so the file alone reproduces the run.
    dumped = yaml.safe_load(text)
    assert set(dumped) == {"task", "data", "model", "method", "train", "output", "privacy", "adversarial",
                           "fairness", "federated", "monitor"}
    assert "checks" in dumped["data"] and "early_stopping" in dumped["train"]


def test_to_yaml_keeps_chinese_readable() -> None:
    recipe = parse_recipe(_base(data={"train": "t.csv", "labels": ["正面", "负面"]}))
    assert "正面" in recipe.to_yaml()


def test_method_given_as_bare_string() -> None:
    recipe = parse_recipe(_base(method="lora"))
    assert recipe.method.name == "lora"
    # Defaults of the lora block are filled in.
    assert recipe.method == METHODS.get("lora").config_cls()


def test_default_method_is_full() -> None:
    assert parse_recipe(_base()).method.name == "full"


# ---------------------------------------------------------------------------------------------
# invalid recipes


def test_unknown_key_names_dotted_path_and_suggests() -> None:
    err = _problems(_base(train={"lrr": 1e-4}))
    assert len(err.problems) == 1
    problem = err.problems[0]
    assert problem.startswith("train.lrr:")
    assert "Did you mean 'lr'?" in problem
    assert "train.lrr" in str(err)


def test_unknown_nested_key_suggests_from_the_right_model() -> None:
    err = _problems(_base(data={"train": "t.csv", "checks": {"duplicate": "drop"}}))
    assert err.problems[0].startswith("data.checks.duplicate:")
    assert "Did you mean 'duplicates'?" in err.problems[0]


def test_unknown_top_level_key() -> None:
    err = _problems(_base(trian={"lr": 1e-4}))
    assert err.problems[0].startswith("trian:")
    assert "Did you mean 'train'?" in err.problems[0]


def test_unknown_method_key_suggests_from_that_method() -> None:
    err = _problems(_base(method={"name": "lora", "rr": 4}))
    assert err.problems[0].startswith("method.rr:")
    assert "Did you mean 'r'?" in err.problems[0]


@pytest.mark.parametrize(
    ("tree", "path", "fragment"),
    [
        (_base(train={"lr": "fast"}), "train.lr", "number"),
        (_base(train={"lr": 2.0}), "train.lr", "less than 1"),
        (_base(train={"batch_size": 0}), "train.batch_size", "greater than or equal to 1"),
        (_base(train={"schedule": "exponential"}), "train.schedule", "linear"),
        (_base(train={"epochs": 0}), "train.epochs", "greater than 0"),
        (_base(data={"train": "t.csv", "max_length": 4}), "data.max_length", "greater than or equal to 8"),
        (_base(data={"train": "t.csv", "checks": {"leakage": "drop"}}), "data.checks.leakage", "ignore"),
        (_base(output={"overwrite": "perhaps"}), "output.overwrite", "bool"),
        ({"model": {"name": "x"}}, "data", "required"),
    ],
)
def test_wrong_types_and_ranges(tree: dict[str, Any], path: str, fragment: str) -> None:
    err = _problems(tree)
    assert len(err.problems) == 1, err.problems
    assert err.problems[0].startswith(f"{path}:"), err.problems
    assert fragment in err.problems[0]


def test_all_problems_reported_at_once() -> None:
    tree = {
        "data": {"train": "t.csv", "max_length": 1},
        "train": {"lr": -1, "batch_size": "many", "lrr": 1},
        "output": {"nme": "x"},
    }
    err = _problems(tree)
    assert len(err.problems) == 5, err.problems
    paths = sorted(p.split(":")[0] for p in err.problems)
    assert paths == ["data.max_length", "output.nme", "train.batch_size", "train.lr", "train.lrr"]
    assert "5 problem(s)" in str(err)


def test_unknown_method_lists_available_names() -> None:
    err = _problems(_base(method={"name": "qlora"}))
    assert err.problems[0].startswith("method:")
    for name in METHODS.names():
        assert name in err.problems[0]
    assert "'qlora'" in err.problems[0]


def test_unknown_method_as_bare_string() -> None:
    err = _problems(_base(method="adapters"))
    assert all(name in str(err) for name in METHODS.names())


def test_fractions_leaving_too_little_training_data() -> None:
    err = _problems(_base(data={"train": "t.csv", "valid_fraction": 0.5, "test_fraction": 0.45}))
    assert err.problems[0].startswith("data:")
    assert "valid_fraction + test_fraction" in err.problems[0]


def test_fraction_limit_ignores_test_fraction_when_test_file_given() -> None:
    recipe = parse_recipe(_base(data={"train": "t.csv", "test": "x.csv", "valid_fraction": 0.5,
                                      "test_fraction": 0.45}))
    assert recipe.data.valid_fraction == 0.5


def test_no_validation_data_at_all() -> None:
    err = _problems(_base(data={"train": "t.csv", "valid_fraction": 0}))
    assert "data.valid" in err.problems[0]


# ---------------------------------------------------------------------------------------------
# overrides and files


def test_dotted_overrides() -> None:
    tree = apply_overrides(_base(method="lora"), ["train.lr=3e-5", "method.r=4", "data.labels=[a, b]",
                                                  "train.early_stopping.patience=3", "output.overwrite=true"])
    recipe = parse_recipe(tree)
    assert recipe.train.lr == pytest.approx(3e-5)
    assert recipe.method.name == "lora" and recipe.method.r == 4
    assert recipe.data.labels == ["a", "b"]
    assert recipe.train.early_stopping.patience == 3
    assert recipe.output.overwrite is True


def test_override_creates_missing_blocks() -> None:
    recipe = parse_recipe(apply_overrides({}, ["data.train=x.csv", "method.name=frozen"]))
    assert recipe.data.train == Path("x.csv")
    assert recipe.method.name == "frozen"


def test_override_with_equals_in_value() -> None:
    tree = apply_overrides(_base(), ["output.name=a=b"])
    assert tree["output"]["name"] == "a=b"


@pytest.mark.parametrize("item", ["no_equals", "=3", "  =x"])
def test_malformed_override(item: str) -> None:
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        apply_overrides(_base(), [item])


def test_overridden_value_is_still_validated(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(_base()))
    with pytest.raises(ConfigError) as info:
        load_recipe(path, ["train.lr=abc"])
    assert info.value.problems[0].startswith("train.lr:")


def test_load_recipe_resolves_data_paths_against_recipe_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_text("text,label\na,b\n")
    (tmp_path / "r.yaml").write_text("data:\n  train: d/train.csv\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    recipe = load_recipe(tmp_path / "r.yaml")
    assert recipe.data.train == tmp_path / "d" / "train.csv"
    assert recipe.data.train.is_file()


@pytest.mark.parametrize(
    ("content", "fragment"),
    [("- a\n- b\n", "mapping"), ("just a string\n", "mapping"), ("data: [unclosed\n", "not valid YAML"),
     ("a: b\n  c: d\n", "not valid YAML")],
)
def test_recipe_file_must_be_yaml_mapping(tmp_path: Path, content: str, fragment: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=fragment) as info:
        read_yaml(path)
    assert str(path) in str(info.value)


def test_missing_recipe_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_recipe(tmp_path / "nope.yaml")


def test_empty_recipe_file_reports_missing_data(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("")
    with pytest.raises(ConfigError) as info:
        load_recipe(path)
    assert info.value.problems == ["data: required key is missing."]


# ---------------------------------------------------------------------------------------------
# schema and docs


def _all_property_owners(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    owners = {"Recipe": schema}
    owners.update(schema.get("$defs", {}))
    return owners


def test_json_schema_has_every_sub_model() -> None:
    defs = json_schema()["$defs"]
    for name in ("DataConfig", "ChecksConfig", "ModelConfig", "TrainConfig", "EarlyStopping", "OutputConfig"):
        assert name in defs
    for name in METHODS.names():
        cls = METHODS.get(name).config_cls
        assert cls.__name__ in defs, f"method {name!r} config missing from the schema"


def test_json_schema_describes_every_option() -> None:
    missing = []
    for owner, node in _all_property_owners(json_schema()).items():
        for key, prop in node.get("properties", {}).items():
            if key == "name" and prop.get("const") in METHODS:
                continue  # the method discriminator; see test_json_schema_describes_method_name
            if not prop.get("description"):
                missing.append(f"{owner}.{key}")
    assert missing == []


def test_json_schema_describes_method_name() -> None:
    missing = []
    for owner, node in _all_property_owners(json_schema()).items():
        for key, prop in node.get("properties", {}).items():
            if not prop.get("description"):
                missing.append(f"{owner}.{key}")
    assert missing == []


def test_recipe_reference_lists_every_key_and_method() -> None:
    md = recipe_reference()
    schema = json_schema()
    for key in schema["properties"]:
        if key == "method":
            assert "## method" in md
        else:
            assert f"`{key}`" in md or f"`{key}." in md, key
    # Every option appears with its dotted path (nested blocks are flattened to their leaves).
    for key in schema["$defs"]["TrainConfig"]["properties"]:
        assert f"`train.{key}`" in md or f"`train.{key}." in md, key
    for key in schema["$defs"]["EarlyStopping"]["properties"]:
        assert f"`train.early_stopping.{key}`" in md
    for name in METHODS.names():
        assert f"### `{name}`" in md
        for opt in METHODS.get(name).config_cls.model_fields:
            assert f"`method.{opt}`" in md


# ---------------------------------------------------------------------------------------------
# task blocks


def test_task_given_as_bare_string_or_block() -> None:
    from taskfit.config import NerOptions, TextClassificationOptions

    assert isinstance(parse_recipe(_base()).task, TextClassificationOptions)  # the default task
    short = parse_recipe(_base(task="ner")).task
    assert isinstance(short, NerOptions) and short.tokens == "tokens"
    block = parse_recipe(_base(task={"name": "ner", "tokens": "words", "scheme": "BIOES"})).task
    assert isinstance(block, NerOptions) and (block.tokens, block.scheme) == ("words", "BIOES")
    # The resolved recipe writes the whole block, and reads back the same.
    again = parse_recipe(yaml.safe_load(parse_recipe(_base(task="retrieval")).to_yaml()))
    assert again.task.model_dump() == parse_recipe(_base(task="retrieval")).task.model_dump()


def test_unknown_task_lists_available_names() -> None:
    err = _problems(_base(task="summarization"))
    text = str(err)
    assert "task" in text and "'summarization'" in text
    for name in ("text_classification", "ner", "retrieval", "generation", "image_classification"):
        assert name in text


def test_unknown_task_option_names_dotted_path_and_suggests() -> None:
    err = _problems(_base(task={"name": "retrieval", "temprature": 0.1}))
    assert len(err.problems) == 1
    line = err.problems[0]
    assert line.startswith("task.temprature: unknown key.") and "Did you mean 'temperature'?" in line


def test_task_option_out_of_range_is_reported_with_its_path() -> None:
    err = _problems(_base(task={"name": "image_classification", "image_size": 4}))
    assert any(p.startswith("task.image_size:") and "16" in p for p in err.problems)


def test_task_options_from_meta_round_trip() -> None:
    from taskfit.config import TASK_OPTIONS, task_options

    for name, cls in TASK_OPTIONS.items():
        opts = cls()
        assert task_options(opts.model_dump(mode="json")) == opts
        assert task_options(name) == opts
    with pytest.raises(ConfigError, match="unknown task 'nope'; available: text_classification"):
        task_options("nope")


def test_reference_documents_every_task_block() -> None:
    from taskfit.config import TASK_OPTIONS

    ref = recipe_reference()
    for name in TASK_OPTIONS:
        assert f"### `{name}`" in ref
    assert "| `task.temperature` |" in ref and "| `task.tokens` |" in ref
