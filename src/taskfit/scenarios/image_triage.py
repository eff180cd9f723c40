"""image-triage: image classification with a review threshold (confident images automated, the rest reviewed).

Data (real, MIT): Fashion-MNIST clothing photos (Zalando Research; Debian ``dataset-fashion-mnist``), 10
classes, 28×28 grayscale. They stand in for the categories of an inspection line (defect types, product
kinds, scan findings): the README says so plainly. Replace the folders with your own photos.

Written files:
    data/train/<class>/*.png: :data:`TRAIN_IMAGES` images of the Fashion-MNIST train split (seeded sample).
    data/incoming/<class>/*.png: :data:`INCOMING_IMAGES` images of the separate t10k split: the "new parts"
        that ``triage.py`` sorts into automated and review; their folder names are the true classes, used
        only to measure the error rate of the automated share.
"""

from __future__ import annotations

from pathlib import Path

from taskfit.data.packaged.images import FASHION_CLASSES, fashion_mnist_arrays, write_image_folder
from taskfit.scenarios import Scenario, register_scenario

TRAIN_IMAGES = 1200
INCOMING_IMAGES = 300


def build(folder: Path, seed: int) -> list[Path]:
    """Write the train and incoming image folders (disjoint: different Fashion-MNIST splits)."""
    x, y = fashion_mnist_arrays("train")
    train = write_image_folder(x, y, FASHION_CLASSES, folder / "data" / "train", TRAIN_IMAGES, seed)
    x, y = fashion_mnist_arrays("t10k")
    incoming = write_image_folder(x, y, FASHION_CLASSES, folder / "data" / "incoming", INCOMING_IMAGES, seed)
    return [train, incoming]


SCENARIO = register_scenario(Scenario(
    name="image-triage",
    summary="Image classification with a review threshold: automation rate vs error rate, low-confidence "
            "images to a review list (Fashion-MNIST as a stand-in for defect classes)",
    template="image_triage",
    build=build,
    next_steps=("taskfit train {dir}/recipe.yaml", "python {dir}/triage.py --images {dir}/data/incoming"),
    data_note="real: Fashion-MNIST (MIT, Debian dataset-fashion-mnist) as a stand-in for inspection classes",
))
