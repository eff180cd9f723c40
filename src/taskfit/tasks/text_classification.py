"""Text classification (sentiment, intent, topic, risk): encoder + classification head.

Rows are a text (optionally a text pair) and a label. The head is the transformers
``AutoModelForSequenceClassification`` head of the backbone, so the saved model is a plain
Hugging Face checkpoint with ``id2label`` filled in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, TextClassificationOptions
from taskfit.data.load import Splits, load_splits
from taskfit.data.readers import ROW
from taskfit.evaluate.metrics import classification_metrics
from taskfit.tasks.base import (
    TASKS,
    Encoded,
    Task,
    new_modules,
    pad_sequences,
    quiet_from_pretrained,
    softmax_rows,
    token_lengths,
    top_labels,
)


def encode_texts(frame: pd.DataFrame, tokenizer: Any, text: str, text_pair: str | None,
                 max_length: int) -> tuple[dict[str, Any], np.ndarray]:
    """Tokenise a text (and pair) column once: fields ``input_ids`` (and ``token_type_ids`` for pairs)."""
    texts = frame[text].tolist()
    pairs = frame[text_pair].tolist() if text_pair else None
    out = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
    fields: dict[str, Any] = {"input_ids": [np.asarray(x, dtype=np.int64) for x in out["input_ids"]]}
    tt = out.get("token_type_ids")
    if tt is not None and pairs:
        fields["token_type_ids"] = [np.asarray(x, dtype=np.int64) for x in tt]
    return fields, token_lengths(fields["input_ids"])


def collate_texts(enc: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
    """Padded ``input_ids`` / ``attention_mask`` (and ``token_type_ids``) of rows ``idx``."""
    ids, mask = pad_sequences([enc["input_ids"][i] for i in idx], pad_id)
    batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
    if "token_type_ids" in enc:
        tt, _ = pad_sequences([enc["token_type_ids"][i] for i in idx], 0, ids.shape[1])
        batch["token_type_ids"] = torch.from_numpy(tt)
    return batch


def source_rows(frame: pd.DataFrame) -> np.ndarray:
    return frame[ROW].to_numpy() if ROW in frame else np.arange(1, len(frame) + 1)


class TextClassification(Task):
    name = "text_classification"
    description = "text (or text pair) → one label; accuracy, macro-F1, confusion matrix, calibration"
    default_metric = "macro_f1"
    headline = ("accuracy", "macro_f1", "weighted_f1", "ece", "loss")

    def __init__(self, options: TextClassificationOptions | None = None, text: str = "text",
                 text_pair: str | None = None, label: str = "label", max_length: int = 128) -> None:
        super().__init__(options or TextClassificationOptions(), text, text_pair, label, max_length)

    def load_splits(self, data: DataConfig) -> Splits:
        return load_splits(data)

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        return splits.stats(self.text, self.label)

    def build_model(
        self, model_dir: Path, labels: list[str], attention: str = "sdpa"
    ) -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModelForSequenceClassification

        model, info = quiet_from_pretrained(
            AutoModelForSequenceClassification, model_dir, num_labels=len(labels),
            id2label=dict(enumerate(labels)), label2id={lab: i for i, lab in enumerate(labels)},
            output_loading_info=True, attn_implementation=attention,
        )
        return model, new_modules(info, "classifier")

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(model_dir)  # type: ignore[no-any-return]

    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        fields, lengths = encode_texts(frame, processor, self.text, self.text_pair, self.max_length)
        index = {lab: i for i, lab in enumerate(labels)}
        labelled = self.label in frame
        fields["targets"] = (np.array([index.get(v, -1) for v in frame[self.label]], dtype=np.int64)
                             if labelled else np.full(len(frame), -1, dtype=np.int64))
        return Encoded(fields, lengths, source_rows(frame), labelled=labelled and bool((fields["targets"] >= 0).all()))

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        batch = collate_texts(enc, idx, self.pad_id)
        batch["labels"] = torch.from_numpy(enc["targets"][idx])
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        targets = batch["labels"]
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return F.cross_entropy(logits.float(), targets)

    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        logits = torch.from_numpy(np.stack(outputs).astype(np.float32))
        targets = torch.from_numpy(enc["targets"])
        m = classification_metrics(enc["targets"], torch.softmax(logits, dim=-1).numpy(), labels)
        m["loss"] = float(F.cross_entropy(logits, targets))
        return m

    def probabilities(self, outputs: list[Any]) -> np.ndarray:
        """Softmax over the labels, shape [N, C]."""
        return softmax_rows(outputs)

    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        return top_labels(softmax_rows(outputs), labels, top_k)

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        from taskfit.evaluate import render_metrics

        render_metrics(console, metrics, title)


TASKS.register("text_classification")(TextClassification)
