"""taskfit from Python: train on a packaged dataset, then predict.

    python examples/quickstart.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from taskfit.config import parse_recipe
from taskfit.data.packaged import write_dataset
from taskfit.inference import Predictor
from taskfit.pipeline import train_recipe


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="taskfit-quickstart-"))
    csv = write_dataset("bbc_news", work / "bbc.csv", n=600)
    recipe = parse_recipe({
        "data": {"train": str(csv)},
        "method": {"name": "full"},
        "train": {"epochs": 2, "lr": 1e-4},
        "output": {"dir": str(work / "runs"), "name": "quickstart"},
    })
    summary = train_recipe(recipe)
    print(f"test accuracy {summary.test_metrics['accuracy']:.3f}; report: {summary.report}")
    predictor = Predictor.load(summary.run_dir)
    for p in predictor.predict(["The central bank raised interest rates again", "A new smartphone chip"]):
        print(p["label"], round(p["score"], 3))


if __name__ == "__main__":
    main()
