"""Image data for image_classification: readers, one-time decoding, and on-the-fly augmentation.

Reading: a folder with one sub-folder per class, or a table (CSV/TSV/JSONL/Parquet) with an image-path
column (relative paths resolve against the table's folder) and a label column. Every image is decoded
once, before training; all unreadable or missing images are reported together, by path and table row.

Memory: images are kept as uint8 [3, S, S] with S = ceil(image_size × 8 / 7) (the usual 224 → 256 margin
for crops): 3·S² bytes each, e.g. 110² × 3 ≈ 36 KB at image_size 96 → 36 MB per 1000 images, and
256² × 3 ≈ 197 KB at 224 → 197 MB per 1000 images.

Augmentation runs per batch with torch ops on the default torch RNG, which the training loop seeds and
checkpoints, so an augmented run is reproducible and resumes exactly.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.data.checks import SOURCE
from taskfit.data.readers import ROW, read_table
from taskfit.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
PATH = "_path"  # column with each image's absolute path


def stored_size(image_size: int) -> int:
    """Side of the square uint8 copy kept in memory: a margin above ``image_size`` for random crops."""
    return math.ceil(image_size * 8 / 7)


def class_folders(root: Path) -> dict[str, list[Path]]:
    """Sub-folder name → its image files (sorted), for a folder-per-class dataset."""
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            out[sub.name] = files
    return out


def folder_problems(root: Path, key: str) -> list[str]:
    """Why ``root`` cannot be read as a folder-per-class dataset (empty list when it can)."""
    classes = class_folders(root)
    if len(classes) < 2:
        found = ", ".join(f"{k} ({len(v)})" for k, v in classes.items()) or "none"
        return [f"data.{key}: folder {str(root)!r} needs at least 2 class sub-folders holding images "
                f"({', '.join(sorted(IMAGE_SUFFIXES))}); found: {found}. Put each class's images in a "
                "sub-folder named after the class."]
    return []


def read_folder(root: Path, label: str, image: str) -> pd.DataFrame:
    """Rows (image path, label) of a folder-per-class dataset; ``_row`` numbers the files in listing order."""
    paths, labels = [], []
    for cls, files in class_folders(root).items():
        paths += [str(f.resolve()) for f in files]
        labels += [cls] * len(files)
    df = pd.DataFrame({image: paths, label: labels, PATH: paths})
    df[ROW] = np.arange(1, len(df) + 1)
    df[SOURCE] = str(root)
    return df


def read_image_table(path: Path, label: str | None, image: str, limit: int | None) -> pd.DataFrame:
    """Rows of a table with an image-path column; relative paths resolve against the table's folder."""
    df = read_table(path, limit=limit, row_numbers=True)
    need = [c for c in (image, label) if c]
    missing = [c for c in need if c not in df.columns]
    if missing:
        cols = ", ".join(str(c) for c in df.columns if c != ROW)
        raise DataError(f"column(s) {missing} not found; available columns: {cols}.", source=path)
    empty = df[image].isna() | df[image].map(lambda v: not str(v).strip())
    if label:
        empty |= df[label].isna() | df[label].map(lambda v: not str(v).strip())
    if empty.any():
        raise DataError("Empty image path or label; every row needs both.", source=path,
                        rows=[int(r) for r in df.loc[empty, ROW]])
    base = path.parent
    df[PATH] = [str(p if (p := Path(str(v).strip()).expanduser()).is_absolute() else (base / p).resolve())
                for v in df[image]]
    if label:
        df[label] = df[label].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer() else str(v).strip())
    df[SOURCE] = str(path)
    return df


def decode(path: str, size: int) -> np.ndarray:
    """Decode one image to uint8 [3, size, size]: RGB (grayscale and palettes converted), shorter side
    resized to ``size``, centre-cropped to a square.

    Raises:
        OSError / ValueError (from PIL) when the file is missing or not a readable image.
    """
    from PIL import Image

    with Image.open(path) as src:
        rgb = src.convert("RGB")
    w, h = rgb.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    rgb = rgb.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    rgb = rgb.crop((left, top, left + size, top + size))
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1).copy()


def decode_all(frames: Iterable[pd.DataFrame], size: int) -> tuple[dict[str, np.ndarray], list[str]]:
    """Decode every image of ``frames`` once; returns (path → pixels, one problem line per bad image)."""
    cache: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for df in frames:
        tabular = not Path(str(df[SOURCE].iloc[0])).is_dir() if len(df) else False
        for path, row, src in zip(df[PATH], df[ROW], df[SOURCE], strict=True):
            if path in cache:
                continue
            try:
                cache[path] = decode(path, size)
            except (OSError, ValueError, SyntaxError) as e:
                where = f"{src}, row {int(row)}: " if tabular else ""
                why = "file not found" if not Path(path).exists() else f"not a readable image ({e})"
                problems.append(f"{where}{path}: {why}")
    return cache, problems


# ---- batches --------------------------------------------------------------------------------------


def resize_batch(pixels: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [B, 3, S, S] → float [B, 3, size, size] in [0, 1] (evaluation: the whole stored image)."""
    x = pixels.float().div_(255)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return x


def augment_batch(pixels: torch.Tensor, size: int, crop: float, flip: bool, rotation: float,
                  jitter: float) -> torch.Tensor:
    """Random resized crop + horizontal flip + rotation in one affine resampling, then colour jitter.

    Args:
        pixels: uint8 [B, 3, S, S].
        size: output side.
        crop: smallest share of the image area a crop keeps (1 = no cropping); aspect ratio in [3/4, 4/3].
        flip: mirror half of the images.
        rotation: rotate by a uniform angle in ±``rotation`` degrees.
        jitter: brightness, contrast and saturation factors uniform in [1 − jitter, 1 + jitter].

    Returns:
        float [B, 3, size, size] in [0, 1]. Draws only from the default torch RNG.
    """
    b = pixels.shape[0]
    x = pixels.float().div_(255)
    area = crop + (1 - crop) * torch.rand(b)
    log_ratio = (torch.rand(b) * 2 - 1) * math.log(4 / 3) * (crop < 1)  # crop = 1: no crop, no stretch
    sx = (area * log_ratio.exp()).sqrt().clamp(max=1.0)  # half-widths in normalised [-1, 1] coordinates
    sy = (area / log_ratio.exp()).sqrt().clamp(max=1.0)
    tx, ty = (torch.rand(b) * 2 - 1) * (1 - sx), (torch.rand(b) * 2 - 1) * (1 - sy)  # crop stays inside
    angle = (torch.rand(b) * 2 - 1) * math.radians(rotation)
    mirror = torch.where(torch.rand(b) < 0.5, -1.0, 1.0) if flip else torch.ones(b)
    cos, sin = angle.cos(), angle.sin()
    # theta maps output coordinates to input coordinates: scale (crop), rotate, mirror x, translate.
    theta = torch.stack([torch.stack([sx * cos * mirror, -sx * sin, tx], 1),
                         torch.stack([sy * sin * mirror, sy * cos, ty], 1)], 1)
    grid = F.affine_grid(theta, [b, 3, size, size], align_corners=False)
    # Shrink first when the crop is much larger than the output (bilinear sampling would alias).
    if x.shape[-1] > 2 * size:
        x = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    if jitter > 0:
        factors = 1 + (torch.rand(3, b, 1, 1, 1) * 2 - 1) * jitter
        x = x * factors[0]  # brightness
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * factors[1] + mean  # contrast
        gray = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
        x = (x - gray) * factors[2] + gray  # saturation
        x = x.clamp_(0, 1)
    return x
