"""Multi-label text classification: text (or text pair) → any number of labels (topics, risk flags...).

``data.label`` holds each row's labels joined by ``task.separator`` (``"billing|refund"``), a JSON list
string (``'["billing", "refund"]'``) or, in JSONL, a list. An empty value means "no label": allowed and
counted. The head is transformers' ``AutoModelForSequenceClassification`` with
``problem_type="multi_label_classification"`` (one logit per label, BCE-with-logits loss).

Decision thresholds: ``task.threshold: tune`` picks, per label, the threshold in 0.05..0.95 that
maximises that label's F1 on the validation split (each time the validation split is scored, so the
final model's thresholds are the ones stored in taskfit.json and used by predict and ``taskfit eval``).
A number uses that threshold for every label.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, MultiLabelOptions
from taskfit.data.checks import SOURCE, CheckResult
from taskfit.data.load import Splits, check_columns
from taskfit.data.readers import ROW, read_table
from taskfit.errors import DataError
from taskfit.tasks.base import TASKS, Encoded, Task, new_modules, quiet_from_pretrained
from taskfit.tasks.regression import common_text_checks, flag_rows, raise_fatal, random_split
from taskfit.tasks.text_classification import collate_texts, encode_texts, source_rows

THRESHOLD_GRID = np.round(np.arange(0.05, 0.951, 0.05), 2)
_SPLIT = "_split"  # column naming each frame's split, so evaluate() knows when it scores validation


def parse_labels(value: Any, separator: str) -> tuple[str, ...]:
    """One cell → its sorted, de-duplicated labels (``()`` for an empty cell).

    Raises:
        ValueError: a ``[...]`` string that is not a JSON list of strings.
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if isinstance(value, (list, tuple, np.ndarray)):
        items = [str(v).strip() for v in value]
    else:
        text = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value).strip()
        if text.startswith("["):
            items = json.loads(text)
            if not isinstance(items, list) or not all(isinstance(v, (str, int)) for v in items):
                raise ValueError("not a JSON list of strings")
            items = [str(v).strip() for v in items]
        else:
            items = [v.strip() for v in text.split(separator)]
    return tuple(sorted({v for v in items if v}))


def best_threshold(probs: np.ndarray, truth: np.ndarray) -> float:
    """The grid threshold maximising F1 of one label; ties go to the one nearest 0.5.

    Args:
        probs: float [N] probabilities of the label.
        truth: bool [N] whether each row has the label.

    A label with no positive row keeps 0.5 (every threshold has F1 0 there; nothing to tune on).
    """
    if not truth.any():
        return 0.5
    pred = probs[None, :] >= THRESHOLD_GRID[:, None]  # [T, N]
    tp = (pred & truth).sum(1)
    f1 = 2 * tp / np.maximum(pred.sum(1) + truth.sum(), 1)
    best = np.flatnonzero(np.isclose(f1, f1.max()))
    return float(THRESHOLD_GRID[best[np.argmin(np.abs(THRESHOLD_GRID[best] - 0.5))]])


def multi_label_metrics(truth: np.ndarray, probs: np.ndarray, thresholds: np.ndarray,
                        labels: list[str]) -> dict[str, Any]:
    """Micro/macro P/R/F1, subset accuracy, Hamming loss and per-label scores.

    Args:
        truth: bool [N, L] true label sets.
        probs: float [N, L] predicted probabilities.
        thresholds: float [L] decision threshold per label.
    """
    pred = probs >= thresholds[None, :]
    tp, fp, fn = (pred & truth).sum(0), (pred & ~truth).sum(0), (~pred & truth).sum(0)  # [L]

    def prf(t: Any, p: Any, n: Any) -> tuple[float, float, float]:
        prec, rec = (t / (t + p) if t + p else 0.0), (t / (t + n) if t + n else 0.0)
        return float(prec), float(rec), float(2 * prec * rec / (prec + rec) if prec + rec else 0.0)

    per = {lab: dict(zip(("precision", "recall", "f1"), prf(tp[j], fp[j], fn[j]), strict=True))
           | {"support": int(truth[:, j].sum()), "threshold": float(thresholds[j])} for j, lab in enumerate(labels)}
    micro = prf(tp.sum(), fp.sum(), fn.sum())
    return {
        "micro_f1": micro[2], "macro_f1": float(np.mean([v["f1"] for v in per.values()])) if per else 0.0,
        "subset_accuracy": float((pred == truth).all(1).mean()) if len(truth) else 0.0,
        "hamming_loss": float((pred != truth).mean()) if truth.size else 0.0,
        "micro_precision": micro[0], "micro_recall": micro[1],
        "macro_precision": float(np.mean([v["precision"] for v in per.values()])) if per else 0.0,
        "macro_recall": float(np.mean([v["recall"] for v in per.values()])) if per else 0.0,
        "n": len(truth), "rows_without_label": int((~truth.any(1)).sum()),
        "label_cardinality": float(truth.sum(1).mean()) if len(truth) else 0.0, "per_label": per,
    }


class MultiLabel(Task):
    name = "multi_label"
    description = "text (or text pair) → any number of labels; micro/macro-F1, subset accuracy, tuned thresholds"
    default_metric = "micro_f1"
    headline = ("micro_f1", "macro_f1", "subset_accuracy", "hamming_loss", "loss")

    def __init__(self, options: MultiLabelOptions | None = None, text: str = "text", text_pair: str | None = None,
                 label: str = "label", max_length: int = 128) -> None:
        super().__init__(options or MultiLabelOptions(), text, text_pair, label, max_length)
        opts = self.options
        assert isinstance(opts, MultiLabelOptions)
        self.opts = opts
        #: label -> decision threshold (tuned on validation, or the fixed option value)
        self.thresholds: dict[str, float] = {}
        #: label -> share of training rows with it (set by load_splits; initialises the head's bias)
        self.priors: dict[str, float] = {}

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "thresholds": self.thresholds}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Task:
        task = super().from_meta(meta)
        assert isinstance(task, MultiLabel)
        task.thresholds = {str(k): float(v) for k, v in (meta.get("thresholds") or {}).items()}
        return task

    def threshold_array(self, labels: list[str]) -> np.ndarray:
        fixed = 0.5 if self.opts.threshold == "tune" else float(self.opts.threshold)
        return np.array([self.thresholds.get(lab, fixed) for lab in labels], dtype=np.float64)

    # ---- data ----------------------------------------------------------------------------------
    def read_file(self, path: Path, data: DataConfig, key: str) -> pd.DataFrame:
        """Read one file: stripped text columns and the label column as sorted label tuples.

        Raises:
            DataError: missing columns, or label cells that cannot be parsed (naming rows and values).
        """
        df = read_table(Path(path), limit=data.limit, row_numbers=True)
        problems = check_columns(Path(path), [c for c in df.columns if c != ROW], key, self.required_columns())
        if problems:
            raise DataError(" ".join(problems), source=path)
        out = pd.DataFrame({c: df[c].map(lambda v: "" if v is None or v != v else str(v).strip())
                            for c in (self.text, self.text_pair) if c})
        parsed, bad = [], []
        for row, value in zip(df[ROW], df[self.label], strict=True):
            try:
                parsed.append(parse_labels(value, self.opts.separator))
            except (ValueError, json.JSONDecodeError):
                parsed.append(())
                bad.append((int(row), str(value)))
        if bad:
            raise DataError(f"{len(bad)} label cell(s) start with '[' but are not a JSON list of strings: "
                            f"{[v for _, v in bad[:3]]}; write them as a JSON list like [\"a\", \"b\"] or joined by "
                            f"{self.opts.separator!r} (a|b).", source=path, column=self.label,
                            rows=[r for r, _ in bad])
        out[self.label] = parsed
        out[ROW], out[SOURCE], out[_SPLIT] = df[ROW].to_numpy(), str(path), key
        return out

    def load_splits(self, data: DataConfig) -> Splits:
        files = {"train": self.read_file(data.train, data, "train")}
        for key in ("valid", "test"):
            if getattr(data, key) is not None:
                files[key] = self.read_file(getattr(data, key), data, key)
        labels = list(data.labels) if data.labels else sorted({v for t in files["train"][self.label] for v in t})
        if not labels:
            raise DataError("No row of train has a label, so there is nothing to learn; check data.label names "
                            f"the label column and task.separator ({self.opts.separator!r}) matches the file.",
                            source=data.train, column=self.label)
        self._check_unknown(files, labels)
        res = CheckResult(files)
        for split in list(res.frames):
            df = res.frames[split]
            flag_rows(res, split, df.duplicated(subset=[self.text, self.label]), data.checks.duplicates,
                      "duplicates", "duplicate row(s) (same text and labels)")
            df = res.frames[split]
            conflict = df.groupby(self.text)[self.label].transform("nunique") > 1
            flag_rows(res, split, conflict, data.checks.conflicting_labels, "conflicting_labels",
                      "row(s) whose text also appears with a different label set")
        train = res.frames["train"]
        frames: dict[str, pd.DataFrame] = {}
        if data.test is None and data.test_fraction > 0:
            train, frames["test"] = random_split(train, data.test_fraction, data.split_seed, self._strata(train))
        if data.valid is None:
            frac = data.valid_fraction / (1 - (0 if data.test is not None else data.test_fraction))
            train, frames["valid"] = random_split(train, frac, data.split_seed + 1, self._strata(train))
        res.frames = {"train": train, **{k: v for k, v in res.frames.items() if k != "train"}, **frames}
        for split, df in res.frames.items():
            res.frames[split] = df.assign(**{_SPLIT: split})
        common_text_checks(res, self.text, data.checks)
        raise_fatal(res)
        order = [s for s in ("train", "valid", "test") if s in res.frames]
        counts = Counter(v for t in res.frames["train"][self.label] for v in t)
        self.priors = {lab: counts[lab] / max(len(res.frames["train"]), 1) for lab in labels}
        return Splits(frames={s: res.frames[s] for s in order}, labels=labels, issues=res.issues)

    def _check_unknown(self, files: Mapping[str, pd.DataFrame], labels: list[str]) -> None:
        known = set(labels)
        for key, df in files.items():
            unknown = df[self.label].map(lambda t: bool(set(t) - known))
            if unknown.any():
                seen = sorted({v for t in df.loc[unknown, self.label] for v in t} - known)
                where = "the label set of train" if key != "train" else "data.labels"
                raise DataError(f"{key}: {int(unknown.sum())} row(s) have label(s) {seen[:10]} not in {where} "
                                f"{labels[:20]}; add them to data.labels or fix the rows.",
                                source=str(df[SOURCE].iloc[0]), column=self.label,
                                rows=[int(r) for r in df.loc[unknown, ROW]])

    def _strata(self, df: pd.DataFrame) -> pd.Series:
        # Stratify on each row's rarest label so rare labels land on both sides of the split.
        counts = Counter(v for t in df[self.label] for v in t)
        return df[self.label].map(lambda t: min(t, key=lambda v: (counts[v], v)) if t else "")

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        frame = self.read_file(Path(data.train), data, "data")
        self._check_unknown({"data": frame}, labels)
        return frame

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        stats: dict[str, Any] = {"rows": {}, "label_counts": {}, "rows_without_label": {}}
        for split, df in splits.frames.items():
            counts = Counter(v for t in df[self.label] for v in t)
            stats["rows"][split] = len(df)
            stats["label_counts"][split] = {lab: int(counts[lab]) for lab in splits.labels}
            stats["rows_without_label"][split] = int((df[self.label].map(len) == 0).sum())
        return stats

    # ---- model ---------------------------------------------------------------------------------
    def build_model(self, model_dir: Path, labels: list[str], attention: str = "sdpa"
                    ) -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModelForSequenceClassification

        model, info = quiet_from_pretrained(
            AutoModelForSequenceClassification, model_dir, num_labels=len(labels),
            problem_type="multi_label_classification", id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)}, output_loading_info=True,
            attn_implementation=attention)
        bias = getattr(getattr(model, "classifier", None), "bias", None)
        if self.priors and isinstance(bias, torch.nn.Parameter):
            # Start each logit at its label's log-odds in train: with sparse labels the first steps would
            # otherwise only learn "almost always 0" (the prior init of RetinaNet, Lin et al. 2017).
            p = np.clip([self.priors.get(lab, 0.5) for lab in labels], 1e-3, 1 - 1e-3)
            with torch.no_grad():
                bias.copy_(torch.from_numpy(np.log(p / (1 - p))).to(bias.dtype))
        return model, new_modules(info, "classifier")

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(model_dir)  # type: ignore[no-any-return]

    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        fields, lengths = encode_texts(frame, processor, self.text, self.text_pair, self.max_length)
        index = {lab: j for j, lab in enumerate(labels)}
        targets = np.zeros((len(frame), len(labels)), dtype=np.float32)  # [N, L] multi-hot
        labelled = self.label in frame
        if labelled:
            for i, t in enumerate(frame[self.label]):
                targets[i, [index[v] for v in t if v in index]] = 1.0
        fields["targets"] = targets
        split = str(frame[_SPLIT].iloc[0]) if _SPLIT in frame and len(frame) else None
        return Encoded(fields, lengths, source_rows(frame), labelled=labelled, extra={"split": split})

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        batch = collate_texts(enc, idx, self.pad_id)
        batch["labels"] = torch.from_numpy(enc["targets"][idx])
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float()  # [B, L]
        return F.binary_cross_entropy_with_logits(logits, batch["labels"].float())

    # ---- scoring -------------------------------------------------------------------------------
    def evaluate(self, model: torch.nn.Module, enc: Encoded, labels: list[str], device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        outputs = self.run_outputs(model, enc, device, dtype)
        if self.opts.threshold == "tune" and enc.extra.get("split") == "valid" and len(enc):
            probs = _sigmoid(np.stack(outputs))
            truth = enc["targets"] > 0.5
            self.thresholds = {lab: best_threshold(probs[:, j], truth[:, j]) for j, lab in enumerate(labels)}
        return self.metrics(enc, outputs, labels)

    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        logits = np.stack(outputs).astype(np.float64) if outputs else np.zeros((0, len(labels)))
        m = multi_label_metrics(enc["targets"] > 0.5, _sigmoid(logits), self.threshold_array(labels), labels)
        m["loss"] = float(F.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                             torch.from_numpy(enc["targets"]).double()))
        return m

    def probabilities(self, outputs: list[Any]) -> np.ndarray:
        """Independent per-label probabilities (sigmoid), shape [N, C]; rows need not sum to 1."""
        return _sigmoid(np.stack(outputs).astype(np.float64)).astype(np.float32)

    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        thr = self.threshold_array(labels)
        out = []
        for logits in outputs:
            probs = _sigmoid(np.asarray(logits, dtype=np.float64))
            order = np.argsort(-probs)
            out.append({"labels": [labels[j] for j in order if probs[j] >= thr[j]],
                        "scores": {lab: float(p) for lab, p in zip(labels, probs, strict=True)},
                        "top": [{"label": labels[j], "score": float(probs[j])} for j in order[:top_k]]})
        return out

    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        from taskfit.tasks.scoring_report import multi_label_sections

        return multi_label_sections(scores)

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        from taskfit.tasks.scoring_report import render_multi_label

        render_multi_label(console, metrics, title)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


TASKS.register("multi_label")(MultiLabel)
