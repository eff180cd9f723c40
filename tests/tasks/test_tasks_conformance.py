"""One contract for every registered task (in the spirit of scikit-learn's ``test_common``).

Each task must: be declared in the recipe schema, rebuild itself from taskfit.json, name a default metric
it actually reports, ship a packaged real dataset its own reader accepts without errors, and have an
example recipe under examples/ that validates. Training, saving and predicting are tested per task in
their own modules (they need task-specific models); this suite keeps the common surface honest.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from taskfit.config import TASK_OPTIONS, DataConfig, parse_recipe
from taskfit.data.packaged import DATASETS, write_dataset
from taskfit.tasks import TASKS

ROOT = Path(__file__).resolve().parents[2]
NAMES = TASKS.names()


def _examples() -> dict[str, list[Path]]:
    found: dict[str, list[Path]] = {}
    for path in sorted((ROOT / "examples").glob("*/recipe.yaml")):
        task = yaml.safe_load(path.read_text(encoding="utf-8")).get("task", "text_classification")
        name = task if isinstance(task, str) else task["name"]
        found.setdefault(name, []).append(path)
    return found


def test_every_task_option_block_has_a_registered_task() -> None:
    assert set(NAMES) == set(TASK_OPTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_task_declares_its_contract(name: str) -> None:
    cls = TASKS.get(name)
    assert cls.name == name and cls.description.strip()
    assert "loss" in cls.headline, "every task reports its loss"
    assert cls.default_metric in cls.headline, "early stopping watches a metric the task reports"


@pytest.mark.parametrize("name", NAMES)
def test_task_rebuilds_from_its_meta(name: str) -> None:
    cls = TASKS.get(name)
    task = cls.from_config(TASK_OPTIONS[name](), DataConfig(train=Path("x.csv"), text="body", label="y",
                                                             max_length=48))
    again = cls.from_meta(task.meta())
    assert type(again) is cls
    assert again.options == task.options
    assert (again.text, again.label, again.max_length) == ("body", "y", 48)


@pytest.mark.parametrize("name", NAMES)
def test_task_has_a_validating_example_recipe(name: str) -> None:
    examples = _examples().get(name)
    assert examples, f"no examples/*/recipe.yaml for task {name!r}"
    for path in examples:
        recipe = parse_recipe(yaml.safe_load(path.read_text(encoding="utf-8")), base_dir=path.parent)
        assert recipe.task.name == name


@pytest.mark.parametrize("name", NAMES)
def test_task_has_a_packaged_real_dataset(name: str) -> None:
    assert any(DATASETS.get(d).task == name for d in DATASETS.names()), f"no packaged dataset for {name!r}"


@pytest.mark.parametrize("dataset", DATASETS.names())
def test_packaged_dataset_reads_cleanly_with_its_task(dataset: str, tmp_path: Path) -> None:
    """A sample of each packaged dataset passes its task's input checks and reader, and its demo recipe
    validates: the demo cannot fail on its own data."""
    from taskfit.cli import demo_recipe

    ds = DATASETS.get(dataset)
    path = write_dataset(dataset, tmp_path / f"{dataset}{ds.suffix}", n=120, seed=0)
    recipe = parse_recipe(demo_recipe(dataset, path, None, None, tmp_path / "runs"))
    assert recipe.task.name == ds.task
    task = TASKS.get(ds.task).from_config(recipe.task, recipe.data)
    assert task.input_problems(recipe.data) == []
    splits = task.load_splits(recipe.data)
    assert {"train", "valid"} <= set(splits.frames)
    assert all(len(f) > 0 for f in splits.frames.values())
    assert not [i for i in splits.issues if i["severity"] == "error"]


@pytest.mark.parametrize("name", NAMES)
def test_label_probabilities_are_right_for_the_task_or_refused(name: str) -> None:
    """``Predictor.predict_proba`` relies on ``Task.probabilities``: softmax rows for single-label tasks,
    independent sigmoids for multi-label, and a clear IncompatibleError for tasks without labels."""
    import numpy as np

    from taskfit.errors import IncompatibleError

    task = TASKS.get(name).from_config(TASK_OPTIONS[name](), DataConfig(train=Path("x.csv")))
    logits = [np.array([2.0, -1.0, 0.5], dtype=np.float32), np.array([0.0, 0.0, 9.0], dtype=np.float32)]
    if name in ("text_classification", "image_classification"):
        probs = task.probabilities(logits)
        assert probs.shape == (2, 3) and np.allclose(probs.sum(1), 1.0, atol=1e-6)
        assert probs[0].argmax() == 0 and probs[1].argmax() == 2
    elif name == "multi_label":
        probs = task.probabilities(logits)
        assert np.allclose(probs, 1 / (1 + np.exp(-np.stack(logits))), atol=1e-6)
    else:
        with pytest.raises(IncompatibleError, match="use predict"):
            task.probabilities(logits)
