"""image_classification: readers (folders, tables), bad-image errors, augmentation, frozen BatchNorm, methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from taskfit.config import DataConfig, ImageClassificationOptions
from taskfit.data.packaged.images import mnist_digit_arrays
from taskfit.errors import DataError, IncompatibleError
from taskfit.methods import METHODS
from taskfit.methods.frozen import FrozenConfig
from taskfit.methods.full import FullConfig
from taskfit.methods.lora import LoraConfigBlock
from taskfit.models import resolve_model
from taskfit.tasks.image_classification import ImageClassification
from taskfit.tasks.image_data import augment_batch, resize_batch


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real MNIST digits 0, 1, 2 (12 each) as a folder per class of grayscale PNGs."""
    from PIL import Image

    root = tmp_path_factory.mktemp("digits")
    x, y = mnist_digit_arrays()
    for d in (0, 1, 2):
        (root / f"d{d}").mkdir()
        for i in np.flatnonzero(y == d)[:12]:
            Image.fromarray(x[i], mode="L").save(root / f"d{d}" / f"{i}.png")
    return root


def task(**opts: object) -> ImageClassification:
    return ImageClassification(ImageClassificationOptions(image_size=32, **opts))  # type: ignore[arg-type]


def test_folder_reader_decodes_grayscale_to_rgb_and_splits_stratified(digits_dir: Path) -> None:
    t, data = task(), DataConfig(train=digits_dir, valid_fraction=0.25, test_fraction=0.25)
    assert t.input_problems(data) == []
    splits = t.load_splits(data)
    assert splits.labels == ["d0", "d1", "d2"]
    assert sum(len(f) for f in splits.frames.values()) == 36
    for frame in splits.frames.values():  # every class in every split
        assert set(frame["label"]) == {"d0", "d1", "d2"}
    enc = t.encode(splits.frames["train"], None, splits.labels)
    assert enc["pixels"].shape == (len(enc), 3, 37, 37) and enc["pixels"].dtype == np.uint8  # 32 · 8/7 → 37
    assert (enc.lengths == 1).all()


def test_a_decoded_image_is_held_once(digits_dir: Path) -> None:
    """After encoding, the decode cache points into each split's array (no second copy of every image), and
    encoding a split again gives equal pixels from the same cache."""
    from taskfit.utils.memory import release_freed_memory

    t = task()
    splits = t.load_splits(DataConfig(train=str(digits_dir), valid_fraction=0.2, test_fraction=0.2))
    decoded = {p: a.copy() for p, a in t._pixels.items()}
    encs = {k: t.encode(f, None, splits.labels) for k, f in splits.frames.items()}
    for enc in encs.values():
        for i, p in enumerate(enc.extra["paths"]):
            assert np.shares_memory(t._pixels[p], enc["pixels"]) and np.array_equal(enc["pixels"][i], decoded[p])
    again = t.encode(splits.frames["train"], None, splits.labels)
    assert np.array_equal(again["pixels"], encs["train"]["pixels"])
    assert not np.shares_memory(again["pixels"], encs["train"]["pixels"])  # a new array, the cache unchanged
    assert release_freed_memory() is True  # glibc (Linux): freed pages can be handed back


def test_folder_needs_two_class_folders(tmp_path: Path, digits_dir: Path) -> None:
    (tmp_path / "only").mkdir()
    for f in list((digits_dir / "d0").iterdir())[:3]:
        (tmp_path / "only" / f.name).write_bytes(f.read_bytes())
    problems = task().input_problems(DataConfig(train=tmp_path))
    assert len(problems) == 1 and "at least 2 class sub-folders" in problems[0] and "only (3)" in problems[0]


def test_csv_and_jsonl_tables_resolve_relative_paths(tmp_path: Path, digits_dir: Path) -> None:
    rows = [{"file": str(p.relative_to(digits_dir)), "y": p.parent.name} for p in sorted(digits_dir.glob("*/*.png"))]
    pd.DataFrame(rows).to_csv(digits_dir / "train.csv", index=False)
    pd.DataFrame(rows).to_json(digits_dir / "train.jsonl", orient="records", lines=True)
    for name in ("train.csv", "train.jsonl"):
        data = DataConfig(train=digits_dir / name, label="y")
        t = ImageClassification.from_config(ImageClassificationOptions(image="file", image_size=32), data)
        assert t.input_problems(data) == []
        splits = t.load_splits(data)
        assert splits.labels == ["d0", "d1", "d2"] and len(splits.frames["train"]) > 20


def test_table_missing_column_is_reported(tmp_path: Path) -> None:
    pd.DataFrame({"path": ["a.png"], "label": ["x"]}).to_csv(tmp_path / "t.csv", index=False)
    problems = task().input_problems(DataConfig(train=tmp_path / "t.csv"))
    assert problems == [f"data.train: column 'image' not found in {tmp_path / 't.csv'}; available columns: path, "
                        "label. Set task.image / data.label to the right columns."]


def test_missing_and_corrupt_images_are_all_named_with_rows(tmp_path: Path, digits_dir: Path) -> None:
    good = sorted(digits_dir.glob("*/*.png"))
    (tmp_path / "broken.jpg").write_bytes(b"not an image at all")
    rows = [{"image": str(p), "label": p.parent.name} for p in good]
    rows.insert(2, {"image": "missing.png", "label": "d0"})
    rows.insert(5, {"image": "broken.jpg", "label": "d1"})
    pd.DataFrame(rows).to_csv(tmp_path / "t.csv", index=False)
    with pytest.raises(DataError) as err:
        task().load_splits(DataConfig(train=tmp_path / "t.csv"))
    msg = str(err.value)
    assert "2 image(s) cannot be read" in msg
    assert f"row 3: {tmp_path / 'missing.png'}: file not found" in msg
    assert f"row 6: {tmp_path / 'broken.jpg'}: not a readable image" in msg


def test_augmentation_shapes_range_and_determinism() -> None:
    raw = torch.randint(0, 256, (4, 3, 37, 37), dtype=torch.uint8)

    def run(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return augment_batch(raw, 32, crop=0.6, flip=True, rotation=15, jitter=0.3)

    a, b, c = run(0), run(0), run(1)
    assert a.shape == (4, 3, 32, 32) and a.dtype == torch.float32
    assert a.min() >= 0 and a.max() <= 1
    assert torch.equal(a, b) and not torch.equal(a, c)
    ev = resize_batch(raw, 32)
    assert torch.equal(ev, resize_batch(raw, 32)) and ev.shape == (4, 3, 32, 32)


def test_identity_augmentation_is_a_plain_resize() -> None:
    """With every augmentation off, the affine path must sample the same image (no hidden shift or flip)."""
    raw = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = augment_batch(raw, 32, crop=1.0, flip=False, rotation=0.0, jitter=0.0)
    assert torch.allclose(out, raw.float() / 255, atol=1e-5)


def test_collate_train_uses_augmentation_and_eval_does_not(digits_dir: Path) -> None:
    t = task()
    splits = t.load_splits(DataConfig(train=digits_dir))
    enc = t.encode(splits.frames["train"], None, splits.labels)
    idx = np.arange(4)
    torch.manual_seed(0)
    tr = t.collate(enc, idx, train=True)
    assert tr["pixels"].shape == (4, 3, 32, 32) and tr["labels"].tolist() == enc["targets"][:4].tolist()
    assert torch.equal(t.collate(enc, idx)["pixels"], t.collate(enc, idx)["pixels"])


def _bn_modes(model: torch.nn.Module) -> set[bool]:
    return {m.training for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}


@pytest.mark.parametrize("arch", ["efficientnet-lite0", "mobilenet_v2"])
def test_frozen_backbone_keeps_batchnorm_statistics(arch: str) -> None:
    t = task()
    model, heads = t.build_model(resolve_model(arch), ["a", "b"])
    model = METHODS.get("frozen").apply(model, FrozenConfig(), heads)
    model.train()  # what the training loop calls
    assert _bn_modes(model) == {False} and model.training
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model(torch.rand(4, 3, 32, 32)).sum().backward()
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith(heads[0]) for n in trainable)


def test_full_fine_tuning_updates_batchnorm() -> None:
    model, heads = task().build_model(resolve_model("mobilenet_v2"), ["a", "b"])
    model = METHODS.get("full").apply(model, FullConfig(), heads)
    model.train()
    assert _bn_modes(model) == {True}


def test_lora_is_refused_with_an_incompatible_error() -> None:
    assert "lora" not in (ImageClassification.supported_methods or ())
    with pytest.raises(IncompatibleError, match=r"Use method\.name: frozen"):
        ImageClassification.check_method("lora")
    for ok in ("full", "frozen"):
        ImageClassification.check_method(ok)
    # Until the pipeline calls check_method, the LoRA method itself refuses these models.
    model, heads = task().build_model(resolve_model("mobilenet_v2"), ["a", "b"])
    with pytest.raises(IncompatibleError, match="matches no linear layer"):
        METHODS.get("lora").apply(model, LoraConfigBlock(), heads)


def test_text_model_is_refused(minilm_dir: Path) -> None:
    with pytest.raises(IncompatibleError, match="not an image model"):
        task().load_processor(minilm_dir)


def test_predict_missing_file_names_it(digits_dir: Path, tmp_path: Path) -> None:
    t = task()
    model, _ = t.build_model(resolve_model("mobilenet_v2"), ["a", "b"])
    good = str(next(digits_dir.glob("d1/*.png")))
    out = t.predict(model.eval(), None, [good], ["a", "b"], torch.device("cpu"), None, top_k=2)
    assert out[0]["label"] in ("a", "b") and len(out[0]["top"]) == 2
    assert abs(sum(x["score"] for x in out[0]["top"]) - 1) < 1e-5
    with pytest.raises(DataError, match=r"nope\.png: file not found"):
        t.predict(model, None, [str(tmp_path / "nope.png")], ["a", "b"], torch.device("cpu"), None)


def test_report_grid_shows_misclassified_thumbnails(digits_dir: Path) -> None:
    paths = [str(p) for p in sorted(digits_dir.glob("*/*.png"))[:30]]
    items = [{"path": p, "row": i + 1, "true": "<d0>", "pred": "d1", "score": 0.9} for i, p in enumerate(paths)]
    sections = task().report_sections({"test": {"misclassified": items}})
    (heading, body), = sections
    assert heading == "Misclassified images (test)"
    assert body.count("data:image/png;base64,") == 24  # capped to keep the report small
    assert "&lt;d0&gt;" in body and "<d0>" not in body  # labels are escaped
