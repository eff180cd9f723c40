"""Text classification (sentiment, intent, topic, risk): encoder + classification head.

Rows are a text (optionally a text pair) and a label. The head is the transformers
``AutoModelForSequenceClassification`` head of the backbone, so the saved model is a plain
Hugging Face checkpoint with ``id2label`` filled in.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from taskfit.data.checks import ROW
from taskfit.evaluate.metrics import classification_metrics
from taskfit.tasks.base import TASKS, Encoded, Task


class TextClassification(Task):
    name = "text_classification"
    description = "text (or text pair) → one label; accuracy, macro-F1, confusion matrix, calibration"

    def __init__(self, text: str = "text", text_pair: str | None = None, label: str = "label") -> None:
        self.text, self.text_pair, self.label = text, text_pair, label

    def build_model(
        self, model_dir: Path, labels: list[str], attention: str = "sdpa"
    ) -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModelForSequenceClassification
        from transformers.utils import logging as hf_logging

        # The "newly initialised classifier weights" warning is expected here: we add the head.
        level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        try:
            model, info = AutoModelForSequenceClassification.from_pretrained(
                model_dir,
                num_labels=len(labels),
                id2label=dict(enumerate(labels)),
                label2id={lab: i for i, lab in enumerate(labels)},
                output_loading_info=True,
                attn_implementation=attention,
            )
        finally:
            hf_logging.set_verbosity(level)
        # Head modules = the top-level children whose weights were newly initialised.
        heads = sorted({k.split(".")[0] for k in info["missing_keys"]}) or ["classifier"]
        logging.getLogger(__name__).debug("new head modules: %s", heads)
        return model, heads

    def encode(self, frame: pd.DataFrame, tokenizer: Any, labels: list[str], max_length: int) -> Encoded:
        texts = frame[self.text].tolist()
        pairs = frame[self.text_pair].tolist() if self.text_pair else None
        out = tokenizer(texts, pairs, truncation=True, max_length=max_length, padding=False)
        ids = [np.asarray(x, dtype=np.int64) for x in out["input_ids"]]
        tt = out.get("token_type_ids")
        types = [np.asarray(x, dtype=np.int64) for x in tt] if tt is not None and pairs else None
        index = {lab: i for i, lab in enumerate(labels)}
        targets = np.array([index.get(v, -1) for v in frame[self.label]], dtype=np.int64) \
            if self.label in frame else np.full(len(frame), -1, dtype=np.int64)
        rows = frame[ROW].to_numpy() if ROW in frame else np.arange(1, len(frame) + 1)
        return Encoded(ids, types, targets, rows)

    def collate(self, enc: Encoded, idx: np.ndarray, pad_id: int) -> dict[str, torch.Tensor]:
        seqs = [enc.input_ids[i] for i in idx]
        width = max(len(s) for s in seqs)
        ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for r, s in enumerate(seqs):
            ids[r, : len(s)] = s
            mask[r, : len(s)] = 1
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if enc.token_type_ids is not None:
            tt = np.zeros_like(ids)
            for r, i in enumerate(idx):
                tt[r, : len(enc.token_type_ids[i])] = enc.token_type_ids[i]
            batch["token_type_ids"] = torch.from_numpy(tt)
        batch["labels"] = torch.from_numpy(enc.targets[idx])
        return batch

    def metrics(self, targets: np.ndarray, logits: np.ndarray, labels: list[str]) -> dict[str, Any]:
        probs = torch.softmax(torch.from_numpy(logits).float(), dim=-1).numpy()
        return classification_metrics(targets, probs, labels)


TASKS.register("text_classification")(TextClassification)
