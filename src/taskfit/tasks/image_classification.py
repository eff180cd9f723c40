"""Image classification: a pretrained CNN backbone (EfficientNet-Lite0, MobileNetV2) + a new linear head.

Data is a folder with one sub-folder per class (``data.train``, and optionally ``data.valid`` /
``data.test`` folders), or a CSV/TSV/JSONL/Parquet table with an image-path column
(``task.image``) and ``data.label``. Without valid/test, a stratified split of train makes them.

Methods: ``frozen`` trains the head only (the backbone's BatchNorm statistics stay frozen too) and
``full`` trains everything. ``lora`` is refused: taskfit's LoRA method adapts ``nn.Linear`` layers
through PEFT, and these CNNs have none outside the head (their 1×1 convolutions are ``Conv2d``).

The trained model is saved as ``config.json`` (architecture, labels, image size, normalisation) +
``model.safetensors``; see :mod:`taskfit.models.vision` for loading it with plain torch.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, ImageClassificationOptions
from taskfit.data.load import Splits
from taskfit.data.readers import ROW
from taskfit.data.split import stratified_split
from taskfit.errors import DataError, IncompatibleError
from taskfit.evaluate.metrics import classification_metrics
from taskfit.models.vision import ImageModel, is_image_model_dir, load_image_model, read_config, save_image_model
from taskfit.tasks.base import TASKS, Encoded, Task, softmax_rows, top_labels
from taskfit.tasks.image_data import (
    PATH,
    augment_batch,
    decode_all,
    folder_problems,
    read_folder,
    read_image_table,
    resize_batch,
    stored_size,
)
from taskfit.utils.memory import release_freed_memory

MAX_THUMBNAILS = 24


class ImageClassification(Task):
    name = "image_classification"
    description = "image → one label (CNN backbone + linear head); accuracy, macro-F1, confusion matrix"
    default_metric = "macro_f1"
    headline = ("accuracy", "macro_f1", "weighted_f1", "ece", "loss")
    text_input = False
    # Measured on the 2-core AVX-512-BF16 CPU, EfficientNet-Lite0 full fine-tuning at 64 px, 2,000 images:
    # bf16 autocast 177 images/s and test accuracy 0.735, fp32 229 images/s and 0.794 (depthwise
    # convolutions have no fast bf16 kernel here). So `auto` means fp32 for images on CPU.
    cpu_bf16 = False
    #: tuning methods that work with this task's models (see the module docstring for lora)
    supported_methods = ("full", "frozen")
    unsupported_reason = (
        "taskfit's LoRA adapts nn.Linear layers, and these CNNs (EfficientNet-Lite0, MobileNetV2) have none outside "
        "the new head (their 1×1 layers are convolutions). Use method.name: frozen (head only, fast) or full.")
    column_hint = "Set task.image / data.label to the right columns."

    def __init__(self, options: ImageClassificationOptions | None = None, text: str = "text",
                 text_pair: str | None = None, label: str = "label", max_length: int = 128) -> None:
        super().__init__(options or ImageClassificationOptions(), text, text_pair, label, max_length)
        self.opts: ImageClassificationOptions = self.options  # type: ignore[assignment]
        self.size = stored_size(self.opts.image_size)
        self._pixels: dict[str, np.ndarray] = {}  # decoded once in load_splits, reused by encode


    def required_columns(self, labelled: bool = True) -> list[str]:
        return [self.opts.image, self.label] if labelled else [self.opts.image]

    # ---- data ----------------------------------------------------------------------------------
    def file_problems(self, key: str, path: Path) -> list[str]:
        if not path.exists():
            return [f"data.{key}: {str(path)!r} does not exist (give a folder with one sub-folder per class, or a "
                    "CSV/JSONL/Parquet table of image paths)."]
        return folder_problems(path, key) if path.is_dir() else self.column_problems(key, path)

    def _read(self, path: Path, data: DataConfig) -> pd.DataFrame:
        if not path.is_dir():
            return read_image_table(path, self.label, self.opts.image, data.limit)
        df = read_folder(path, self.label, self.opts.image)
        if data.limit is not None and data.limit < len(df):  # a folder is sorted by class: sample, not head
            df = df.sample(n=data.limit, random_state=data.split_seed).sort_values(ROW)
        return df

    def load_splits(self, data: DataConfig) -> Splits:
        """Read the files, decode every image once (all bad images reported together), split, check labels.

        Raises:
            DataError: unreadable or missing images (each path, and table row), unknown labels in valid/test,
                fewer than 2 classes or too few images in a class.
        """
        files = {k: self._read(Path(getattr(data, k)), data) for k in ("train", "valid", "test")
                 if getattr(data, k) is not None}
        self._pixels, problems = decode_all(files.values(), self.size)
        if problems:
            shown = "\n  - ".join(problems[:50]) + (f"\n  (+{len(problems) - 50} more)" if len(problems) > 50 else "")
            raise DataError(f"{len(problems)} image(s) cannot be read; fix or remove them:\n  - {shown}")
        train = files["train"]
        frames: dict[str, pd.DataFrame] = {}
        if "test" in files:
            frames["test"] = files["test"]
        elif data.test_fraction > 0:
            train, frames["test"] = stratified_split(train, self.label, data.test_fraction, data.split_seed)
        if "valid" in files:
            frames["valid"] = files["valid"]
        else:
            frac = data.valid_fraction / (1 - (0 if "test" in files else data.test_fraction))
            train, frames["valid"] = stratified_split(train, self.label, frac, data.split_seed + 1)
        labels = list(data.labels) if data.labels else sorted(set(train[self.label]))
        self._check_labels({"train": train, **frames}, labels, data)
        return Splits({"train": train, **frames}, labels, [])

    def _check_labels(self, frames: Mapping[str, pd.DataFrame], labels: list[str], data: DataConfig) -> None:
        errors = []
        if len(labels) < 2:
            errors.append(f"only {len(labels)} class(es) found in train ({labels}); classification needs at least 2")
        for split, df in frames.items():
            unknown = ~df[self.label].isin(set(labels))
            if unknown.any():
                errors.append(f"{split}: {int(unknown.sum())} image(s) have label(s) "
                              f"{sorted(set(df.loc[unknown, self.label]))[:5]} not in {labels[:20]} "
                              f"(first: {df.loc[unknown, PATH].iloc[0]})")
        counts = frames["train"][self.label].value_counts().reindex(labels, fill_value=0)
        rare = {k: int(v) for k, v in counts.items() if v < data.checks.min_class_count}
        if rare and len(labels) >= 2:
            errors.append(f"train: class(es) {rare} have fewer than {data.checks.min_class_count} images; "
                          "add images or remove the class")
        if errors:
            raise DataError("The image data failed checks:\n  - " + "\n  - ".join(errors), source=data.train)

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        return {"rows": {s: len(df) for s, df in splits.frames.items()},
                "label_counts": {s: {lab: int((df[self.label] == lab).sum()) for lab in splits.labels}
                                 for s, df in splits.frames.items()},
                "images": {"stored_side_px": self.size, "image_size_px": self.opts.image_size,
                           "memory_mb_per_1000": round(3 * self.size**2 * 1000 / 1e6, 1)}}

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        frame = self._read(Path(data.train), data)
        self._pixels, problems = decode_all([frame], self.size)
        if problems:
            raise DataError(f"{len(problems)} image(s) cannot be read:\n  - " + "\n  - ".join(problems[:50]))
        unknown = ~frame[self.label].isin(set(labels))
        if unknown.any():
            raise DataError(f"label(s) {sorted(set(frame.loc[unknown, self.label]))[:5]} are not among the "
                            f"model's labels {labels}.", source=data.train, rows=frame.loc[unknown, ROW].tolist())
        return frame

    # ---- model ---------------------------------------------------------------------------------
    def load_processor(self, model_dir: Path) -> dict[str, Any]:
        """The image model's config (there is no tokenizer)."""
        if not is_image_model_dir(model_dir):
            raise IncompatibleError(f"model {str(model_dir)!r} is not an image model (its config.json names no "
                                    "known architecture). Use model.name: efficientnet-lite0 or mobilenet_v2, or "
                                    "a directory saved by an image_classification run.")
        return read_config(model_dir)

    def build_model(self, model_dir: Path, labels: list[str], attention: str = "sdpa") -> tuple[ImageModel, list[str]]:
        model = load_image_model(model_dir, num_classes=len(labels))
        return model, [model.head_name]

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        return load_image_model(model_dir)

    def save(self, model: torch.nn.Module, processor: Any, dest: Path, splits: Splits | None = None) -> None:
        labels = splits.labels if splits is not None else None
        save_image_model(model, dest, image_size=self.opts.image_size, labels=labels)  # type: ignore[arg-type]

    # ---- tensors -------------------------------------------------------------------------------
    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        paths = frame[PATH].tolist()
        missing = [p for p in dict.fromkeys(paths) if p not in self._pixels]
        if missing:  # prediction inputs, or a split not seen by load_splits
            extra, problems = decode_all([frame[frame[PATH].isin(set(missing))]], self.size)
            if problems:
                raise DataError(f"{len(problems)} image(s) cannot be read:\n  - " + "\n  - ".join(problems[:50]))
            self._pixels.update(extra)
        pixels = self._gather(paths)
        index = {lab: i for i, lab in enumerate(labels)}
        labelled = self.label in frame
        targets = (np.array([index.get(v, -1) for v in frame[self.label]], dtype=np.int64) if labelled
                   else np.full(len(frame), -1, dtype=np.int64))
        rows = frame[ROW].to_numpy() if ROW in frame else np.arange(1, len(frame) + 1)
        return Encoded({"pixels": pixels, "targets": targets}, np.ones(len(frame), dtype=np.int64), rows,
                       labelled=labelled and bool((targets >= 0).all()), extra={"paths": paths})

    def _gather(self, paths: list[str]) -> np.ndarray:
        """The decoded images of ``paths`` as one uint8 [N, 3, S, S] array. The cache then points into that array
        (each image a view of its row), so a decoded image is held once, not once in the cache and again in its
        split: 50,000 images at 224 px are 9.8 GB per copy. Each cached image is dropped as soon as its row is
        filled and the freed memory is handed back every 16 MB, so the gather adds about 16 MB on top (measured:
        500 images at 224 px, peak 117 MB over the 94 MB of pixels, 193 MB before)."""
        out = np.empty((len(paths), 3, self.size, self.size), np.uint8)
        freed = 0
        for i, path in enumerate(paths):
            src = self._pixels[path]
            out[i] = src
            if src.base is None:  # the decoder's own array, not a row of an earlier split's array
                self._pixels[path] = out[i]
                freed += src.nbytes
                if freed > 16 * 2**20:  # hand the freed images back to the OS as the copy grows
                    release_freed_memory()
                    freed = 0
        release_freed_memory()
        return out

    def input_frame(self, inputs: Sequence[str], pairs: Sequence[str] | None = None) -> pd.DataFrame:
        """Image paths to predict (relative paths: from the current directory)."""
        paths = [str(Path(p).expanduser().resolve()) for p in inputs]
        frame = pd.DataFrame({self.opts.image: list(inputs), PATH: paths, "_source": "input"})
        frame[ROW] = np.arange(1, len(frame) + 1)
        return frame

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        """``pixels`` float [B, 3, image_size, image_size] in [0, 1] (augmented when ``train``), ``labels`` [B]."""
        raw = torch.from_numpy(enc["pixels"][idx])
        o = self.opts
        x = (augment_batch(raw, o.image_size, o.crop, o.flip, o.rotation, o.color_jitter) if train
             else resize_batch(raw, o.image_size))
        return {"pixels": x, "labels": torch.from_numpy(enc["targets"][idx])}

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return F.cross_entropy(model(batch["pixels"]).float(), batch["labels"])

    def outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
        return model(batch["pixels"]).float().cpu().numpy()  # type: ignore[no-any-return]

    # ---- scoring -------------------------------------------------------------------------------
    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        logits = torch.from_numpy(np.stack(outputs).astype(np.float32))
        probs = torch.softmax(logits, dim=-1).numpy()
        m = classification_metrics(enc["targets"], probs, labels)
        m["loss"] = float(F.cross_entropy(logits, torch.from_numpy(enc["targets"])))
        pred = probs.argmax(1)
        wrong = np.flatnonzero(pred != enc["targets"])
        wrong = wrong[np.argsort(-probs[wrong, pred[wrong]], kind="stable")][:MAX_THUMBNAILS]  # most confident first
        m["misclassified"] = [{"path": enc.extra["paths"][i], "row": int(enc.rows[i]),
                               "true": labels[enc["targets"][i]], "pred": labels[pred[i]],
                               "score": round(float(probs[i, pred[i]]), 4)} for i in wrong]
        return m

    def probabilities(self, outputs: list[Any]) -> np.ndarray:
        """Softmax over the labels, shape [N, C]."""
        return softmax_rows(outputs)

    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        return top_labels(softmax_rows(outputs), labels, top_k)

    # ---- presentation --------------------------------------------------------------------------
    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        split = next((s for s in ("test", "valid") if s in scores), None)
        if split is None:
            return []
        items = list(scores[split].get("misclassified") or [])[:MAX_THUMBNAILS]
        if not items:
            return [(f"Misclassified images ({split})", "<p>None: every image was classified correctly.</p>")]
        cells = []
        for it in items:
            uri = _thumbnail(it["path"])
            img = f'<img src="{uri}" alt="" width="72" height="72">' if uri else "<div>(unreadable)</div>"
            cells.append(f'<figure style="margin:4px;width:96px;display:inline-block;text-align:center;'
                         f'font-size:11px">{img}<figcaption>true <b>{html.escape(it["true"])}</b><br>'
                         f'pred <b>{html.escape(it["pred"])}</b> ({it["score"]:.2f})<br>'
                         f'<span title="{html.escape(it["path"])}">row {it["row"]}</span></figcaption></figure>')
        note = (f"<p>The {len(items)} most confident mistakes of the {split} split "
                f"(at most {MAX_THUMBNAILS}).</p>")
        return [(f"Misclassified images ({split})", note + "<div>" + "".join(cells) + "</div>")]

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        from taskfit.evaluate import render_metrics

        render_metrics(console, metrics, title)


def _thumbnail(path: str, side: int = 72) -> str | None:
    """A small PNG data URI of an image file (None if it cannot be read any more)."""
    from PIL import Image

    try:
        with Image.open(path) as src:
            rgb = src.convert("RGB")
        rgb.thumbnail((side, side))
        buf = io.BytesIO()
        rgb.save(buf, format="PNG", optimize=True)
    except (OSError, ValueError):
        return None
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


TASKS.register("image_classification")(ImageClassification)
