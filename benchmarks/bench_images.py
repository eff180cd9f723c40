"""Image classification: taskfit (frozen backbone, full fine-tuning) vs a hand-written plain PyTorch loop.

Both sides train the packaged EfficientNet-Lite0 (taskfit's own module, ImageNet weights) with a new
10-class head on the same Fashion-MNIST training images (a seeded sample of the 60k train set, as PNGs
in a folder per class), for the same epochs, batch size, peak learning rate and seed, and are scored on
the same images of the official test set. The plain side is what a user writes without taskfit: decode
every PNG once, then per epoch a shuffled ``randperm`` order, the same torch augmentation function,
``model.train()``, AdamW (defaults, constant lr), fp32. taskfit runs its recipe: bf16 autocast where the
CPU has it, fused AdamW, warm-up + linear decay, gradient clipping, a validation pass per epoch,
checkpoints. Throughput counts training steps only (decoding and evaluation are excluded on both sides).

    python benchmarks/bench_images.py                  # writes benchmarks/out/images.json (≤ 5 min here)
    python benchmarks/bench_images.py --train 320 --epochs 1 --image-size 64
    python benchmarks/bench_images.py --precision fp32 --plain benchmarks/out/images.json \
        --output benchmarks/out/images-fp32.json      # taskfit in fp32, plain figures reused
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, ImageClassificationOptions, parse_recipe
from taskfit.data.packaged.images import FASHION_CLASSES, fashion_mnist_arrays, write_image_folder
from taskfit.models import resolve_model
from taskfit.models.vision import load_image_model
from taskfit.pipeline import train_recipe
from taskfit.tasks.image_classification import ImageClassification
from taskfit.tasks.image_data import augment_batch, resize_batch
from taskfit.utils.io import atomic_write_json

OUT = Path(__file__).parent / "out"


def make_data(root: Path, n_train: int, n_valid: int, n_test: int, seed: int) -> dict[str, Path]:
    """Folders per class: train from the 60k train set; valid and test from the 10k test set (disjoint)."""
    x, y = fashion_mnist_arrays("train")
    xt, yt = fashion_mnist_arrays("t10k")
    order = np.random.default_rng(seed).permutation(len(xt))
    return {"train": write_image_folder(x, y, FASHION_CLASSES, root / "train", n_train, seed),
            "valid": write_image_folder(xt[order[:n_valid]], yt[order[:n_valid]], FASHION_CLASSES,
                                        root / "valid", None, seed),
            "test": write_image_folder(xt[order[n_valid:n_valid + n_test]], yt[order[n_valid:n_valid + n_test]],
                                       FASHION_CLASSES, root / "test", None, seed)}


def run_taskfit(data: dict[str, Path], method: str, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    recipe = parse_recipe({
        "task": {"name": "image_classification", "image_size": args.image_size},
        "data": {k: str(v) for k, v in data.items()},
        "model": {"name": "efficientnet-lite0"}, "method": {"name": method},
        "train": {"epochs": args.epochs, "lr": args.lr[method], "batch_size": args.batch, "seed": args.seed,
                  "checkpoint_every": 1000, "precision": args.precision},
        "output": {"dir": str(out), "name": f"taskfit-{method}", "overwrite": True},
    })
    t0 = time.perf_counter()
    summary = train_recipe(recipe)
    t = json.loads((summary.run_dir / "results.json").read_text())["timing"]
    return {"accuracy": summary.test_metrics["accuracy"], "macro_f1": summary.test_metrics["macro_f1"],
            "train_images_per_s": t["train_samples_per_s"], "train_s": t["train_s"], "steps": t["steps"],
            "precision": t["precision"], "wall_s": round(time.perf_counter() - t0, 1)}


def run_plain(data: dict[str, Path], method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The hand-written loop (reuses taskfit's readers only to decode the same pixels)."""
    task = ImageClassification(ImageClassificationOptions(image_size=args.image_size))
    splits = task.load_splits(DataConfig(train=data["train"], valid=data["valid"], test=data["test"]))
    train = task.encode(splits.frames["train"], None, splits.labels)
    test = task.encode(splits.frames["test"], None, splits.labels)
    torch.manual_seed(args.seed)
    model = load_image_model(resolve_model("efficientnet-lite0"), num_classes=len(splits.labels))
    for name, p in model.named_parameters():
        p.requires_grad_(method == "full" or name.startswith("_fc"))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr[method])
    x_all, y_all = torch.from_numpy(train["pixels"]), torch.from_numpy(train["targets"])
    o = task.opts
    seconds, seen = 0.0, 0
    for _ in range(int(args.epochs)):
        model.train()
        for idx in torch.randperm(len(y_all)).split(args.batch):
            t0 = time.perf_counter()
            x = augment_batch(x_all[idx], o.image_size, o.crop, o.flip, o.rotation, o.color_jitter)
            loss = F.cross_entropy(model(x), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            seconds += time.perf_counter() - t0
            seen += len(idx)
    model.eval()
    correct = 0
    with torch.no_grad():
        for idx in torch.arange(len(test)).split(64):
            pred = model(resize_batch(torch.from_numpy(test["pixels"][idx.numpy()]), o.image_size)).argmax(1)
            correct += int((pred.numpy() == test["targets"][idx.numpy()]).sum())
    return {"accuracy": correct / len(test), "train_images_per_s": round(seen / seconds, 1),
            "train_s": round(seconds, 2), "precision": "fp32"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--train", type=int, default=480, help="training images (seeded sample of the 60k)")
    ap.add_argument("--test", type=int, default=1000, help="test images (from the official 10k test set)")
    ap.add_argument("--valid", type=int, default=200, help="validation images for taskfit's per-epoch eval")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/taskfit-bench-images", help="scratch folder for data and runs")
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"], help="taskfit's train.precision")
    ap.add_argument("--plain", type=Path, default=None,
                    help="reuse the plain-PyTorch figures of an earlier images.json instead of rerunning them")
    ap.add_argument("--output", type=Path, default=OUT / "images.json")
    ap.add_argument("--methods", nargs="+", default=["frozen", "full"], choices=["frozen", "full"])
    args = ap.parse_args()
    args.lr = {"frozen": 3e-3, "full": 1e-3}
    work = Path(args.work)
    data = make_data(work / "data", args.train, args.valid, args.test, args.seed)
    results: dict[str, Any] = {}
    for method in args.methods:
        tf = run_taskfit(data, method, args, work / "runs")
        plain = (json.loads(args.plain.read_text())["results"][method]["plain_pytorch"] if args.plain
                 else run_plain(data, method, args))
        results[method] = {"taskfit": tf, "plain_pytorch": plain,
                           "speedup": round(tf["train_images_per_s"] / plain["train_images_per_s"], 2)}
        print(method, results[method], flush=True)
    report = {"benchmark": "image classification, EfficientNet-Lite0, Fashion-MNIST",
              "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "results": results,
              "hardware": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                           "torch": torch.__version__, "threads": torch.get_num_threads(),
                           "load_average_at_end": os.getloadavg()}}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.output, report)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
