"""Regression / scoring (risk score, sentiment intensity): text (or text pair) → one number.

The head is transformers' ``AutoModelForSequenceClassification`` with ``num_labels=1`` and
``problem_type="regression"``, so the saved model is a plain Hugging Face checkpoint. With
``task.normalize`` the model learns standardised targets ((y − mean) / sd, train statistics kept in
taskfit.json) and every prediction is mapped back to the original scale: the MSE loss then has the
same size whatever the units of the score, so the classification learning rates work unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import ChecksConfig, DataConfig, RegressionOptions
from taskfit.data.checks import SOURCE, CheckResult
from taskfit.data.load import Splits, read_split
from taskfit.data.readers import ROW
from taskfit.data.split import stratified_split
from taskfit.errors import DataError
from taskfit.tasks.base import TASKS, Encoded, Task, new_modules, quiet_from_pretrained
from taskfit.tasks.text_classification import collate_texts, encode_texts, source_rows

_ACTION_SEVERITY = {"error": "error", "warn": "warning", "drop": "info"}


# ---- reading and checks (shared with multi_label) --------------------------------------------------
def flag_rows(res: CheckResult, split: str, mask: pd.Series, action: str, check: str, what: str) -> None:
    """Record a finding on rows ``mask`` of ``split`` and drop them when ``action`` is 'drop'."""
    df = res.frames[split]
    if not mask.any():
        return
    rows = [int(r) for r in df.loc[mask, ROW]]
    source = str(df[SOURCE].iloc[0]) if SOURCE in df else None
    res.add(_ACTION_SEVERITY[action], check, f"{split}: {len(rows)} {what}" + (" (dropped)" * (action == "drop")),
            source, rows)
    if action == "drop":
        res.frames[split] = df[~mask]


def common_text_checks(res: CheckResult, text: str, checks: ChecksConfig) -> None:
    """Empty texts (``checks.empty_text``) in every file, and valid/test texts also in train (leakage)."""
    for split in list(res.frames):
        empty = res.frames[split][text].map(lambda t: not str(t).strip())
        flag_rows(res, split, empty, checks.empty_text, "empty_text", "row(s) with empty text")
    if checks.leakage == "ignore" or "train" not in res.frames:
        return
    seen = set(res.frames["train"][text])
    for split in ("valid", "test"):
        if split in res.frames:
            leak = res.frames[split][text].isin(seen)
            flag_rows(res, split, leak, checks.leakage, "leakage",
                      "row(s) also appear in train; their scores overstate accuracy")


def raise_fatal(res: CheckResult) -> None:
    """One DataError listing every 'error' finding (file and rows of each)."""
    fatal = [i for i in res.issues if i["severity"] == "error"]
    if fatal:
        lines = [f"{i['message']} [file {i['file']}, rows {', '.join(map(str, i['rows'][:10]))}]" for i in fatal]
        raise DataError("The data failed checks (set data.checks.<name> to 'warn' or 'drop' to go on anyway):"
                        "\n  - " + "\n  - ".join(lines))


def random_split(df: pd.DataFrame, fraction: float, seed: int, strata: pd.Series | None = None
                 ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded (rest, held-out) split; stratified on ``strata`` (e.g. quantile bins) when given."""
    key = "_strata"
    tmp = df.assign(**{key: strata.to_numpy() if strata is not None else 0})
    rest, held = stratified_split(tmp, key, fraction, seed)
    return rest.drop(columns=key), held.drop(columns=key)


def parse_scores(frame: pd.DataFrame, column: str, source: Path) -> pd.Series:
    """The label column as finite floats.

    Raises:
        DataError: naming the file, the rows and the values that are not finite numbers.
    """
    values = pd.to_numeric(frame[column], errors="coerce").astype(float)
    bad = ~np.isfinite(values.to_numpy())
    if bad.any():
        seen = sorted(set(frame.loc[bad, column].astype(str)))[:5]
        raise DataError(f"{int(bad.sum())} value(s) of the target column are not finite numbers: {seen}; "
                        "regression needs a number (like 3 or -1.25) in every row. Fix or remove these rows.",
                        source=source, column=column, rows=[int(r) for r in frame.loc[bad, ROW]])
    return values


def quantile_bins(y: pd.Series, n_bins: int = 5) -> pd.Series:
    """Quantile bin of each target, so a held-out split covers the whole range of scores."""
    n = max(1, min(n_bins, len(y) // 10))
    return pd.Series(pd.qcut(y.rank(method="first"), q=n, labels=False), index=y.index)


# ---- the task ----------------------------------------------------------------------------------------
class Regression(Task):
    name = "regression"
    description = "text (or text pair) → a number; MAE, RMSE, R², Pearson, Spearman"
    default_metric = "rmse"
    headline = ("rmse", "mae", "spearman", "r2", "loss")

    def __init__(self, options: RegressionOptions | None = None, text: str = "text", text_pair: str | None = None,
                 label: str = "label", max_length: int = 128) -> None:
        super().__init__(options or RegressionOptions(), text, text_pair, label, max_length)
        #: train-set statistics the model's output is scaled by (0 and 1 without normalisation)
        self.target_mean, self.target_sd = 0.0, 1.0

    @property
    def normalize(self) -> bool:
        return bool(getattr(self.options, "normalize", True))

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "target_mean": self.target_mean, "target_sd": self.target_sd}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Task:
        task = super().from_meta(meta)
        assert isinstance(task, Regression)
        task.target_mean = float(meta.get("target_mean", 0.0))
        task.target_sd = float(meta.get("target_sd", 1.0))
        return task

    # ---- data ----------------------------------------------------------------------------------
    def read_scored(self, path: Path, data: DataConfig, key: str) -> pd.DataFrame:
        frame = read_split(Path(path), data, key)
        frame[self.label] = parse_scores(frame, self.label, Path(path))
        return frame

    def load_splits(self, data: DataConfig) -> Splits:
        files = {"train": self.read_scored(data.train, data, "train")}
        for key in ("valid", "test"):
            if getattr(data, key) is not None:
                files[key] = self.read_scored(getattr(data, key), data, key)
        res = CheckResult(files)
        self._score_checks(res, data.checks)
        train = res.frames["train"]
        frames: dict[str, pd.DataFrame] = {}
        if data.test is None and data.test_fraction > 0:
            train, frames["test"] = random_split(train, data.test_fraction, data.split_seed,
                                                 quantile_bins(train[self.label]))
        if data.valid is None:
            frac = data.valid_fraction / (1 - (0 if data.test is not None else data.test_fraction))
            train, frames["valid"] = random_split(train, frac, data.split_seed + 1, quantile_bins(train[self.label]))
        res.frames = {"train": train, **{k: v for k, v in res.frames.items() if k != "train"}, **frames}
        common_text_checks(res, self.text, data.checks)
        raise_fatal(res)
        self._fit_scaling(res.frames["train"][self.label], data.train)
        order = [s for s in ("train", "valid", "test") if s in res.frames]
        return Splits(frames={s: res.frames[s] for s in order}, labels=[], issues=res.issues)

    def _score_checks(self, res: CheckResult, checks: ChecksConfig) -> None:
        """Exact duplicates (``checks.duplicates``) and one text with different scores (a warning)."""
        for split in list(res.frames):
            df = res.frames[split]
            flag_rows(res, split, df.duplicated(subset=[self.text, self.label], keep="first"), checks.duplicates,
                      "duplicates", "duplicate row(s) (same text and score)")
            df = res.frames[split]
            spread = df.groupby(self.text)[self.label].transform("nunique") > 1
            flag_rows(res, split, spread, "warn", "conflicting_scores",
                      "row(s) whose text also appears with a different score (the model learns their mean)")

    def _fit_scaling(self, y: pd.Series, source: Path) -> None:
        sd = float(y.std(ddof=0)) if len(y) else 0.0
        if not len(y) or sd == 0.0 or not math.isfinite(sd):
            raise DataError(f"Every training target has the same value ({y.iloc[0] if len(y) else 'none'}); "
                            "there is nothing to learn. Check data.label names the score column.",
                            source=source, column=self.label)
        self.target_mean, self.target_sd = (float(y.mean()), sd) if self.normalize else (0.0, 1.0)

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        return self.read_scored(data.train, data, "data")

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        stats: dict[str, Any] = {"rows": {}, "target": {}}
        for split, df in splits.frames.items():
            stats["rows"][split] = len(df)
            y = df[self.label].astype(float)
            if len(y):
                stats["target"][split] = {"mean": round(float(y.mean()), 4), "sd": round(float(y.std(ddof=0)), 4),
                                          "min": float(y.min()), "max": float(y.max())}
        return stats

    def describe_data(self, splits: Splits) -> str:
        y = splits.frames["train"][self.label]
        rows = ", ".join(f"{k} {len(v)}" for k, v in splits.frames.items())
        return f"target {y.min():g}..{y.max():g} (train mean {y.mean():.3f}, sd {y.std(ddof=0):.3f}); rows: {rows}"

    # ---- model ---------------------------------------------------------------------------------
    def build_model(self, model_dir: Path, labels: list[str], attention: str = "sdpa"
                    ) -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModelForSequenceClassification

        model, info = quiet_from_pretrained(
            AutoModelForSequenceClassification, model_dir, num_labels=1, problem_type="regression",
            id2label={0: "score"}, label2id={"score": 0}, output_loading_info=True, attn_implementation=attention)
        return model, new_modules(info, "classifier")

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(model_dir)  # type: ignore[no-any-return]

    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        fields, lengths = encode_texts(frame, processor, self.text, self.text_pair, self.max_length)
        labelled = self.label in frame
        y = frame[self.label].astype(float).to_numpy() if labelled else np.full(len(frame), np.nan)
        fields["targets"] = ((y - self.target_mean) / self.target_sd).astype(np.float32)
        return Encoded(fields, lengths, source_rows(frame), labelled=labelled)

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        batch = collate_texts(enc, idx, self.pad_id)
        batch["labels"] = torch.from_numpy(enc["targets"][idx])
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        pred = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().squeeze(-1)  # [B]
        return F.mse_loss(pred, batch["labels"].float())

    def outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits.float()[:, 0].cpu().numpy()  # type: ignore[no-any-return]

    def to_scale(self, z: np.ndarray) -> np.ndarray:
        """Model outputs (normalised scale) → the target's own units."""
        return z * self.target_sd + self.target_mean

    # ---- scoring -------------------------------------------------------------------------------
    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        z = np.asarray(outputs, dtype=np.float64)
        m = regression_metrics(self.to_scale(enc["targets"].astype(np.float64)), self.to_scale(z))
        m["loss"] = float(np.mean((z - enc["targets"]) ** 2))  # the training loss: MSE on the normalised scale
        return m

    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        return [{"score": float(v)} for v in self.to_scale(np.asarray(outputs, dtype=np.float64))]

    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        from taskfit.tasks.scoring_report import regression_sections

        return regression_sections(scores)

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        from taskfit.tasks.scoring_report import render_regression

        render_regression(console, metrics, title)


def regression_metrics(y: np.ndarray, pred: np.ndarray, keep: int = 2000) -> dict[str, Any]:
    """MAE, RMSE, R², Pearson and Spearman of predictions ``pred`` [N] against targets ``y`` [N].

    Also keeps up to ``keep`` (true, predicted) pairs for the report's plots. Correlations are NaN when
    either side is constant (an untrained head can predict one value for everything).
    """
    from scipy import stats

    err = pred - y
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    constant = len(y) < 2 or np.ptp(y) == 0 or np.ptp(pred) == 0
    step = max(1, math.ceil(len(y) / keep))
    return {
        "rmse": float(np.sqrt(np.mean(err ** 2))), "mae": float(np.mean(np.abs(err))),
        "spearman": float("nan") if constant else float(stats.spearmanr(y, pred).statistic),
        "pearson": float("nan") if constant else float(stats.pearsonr(y, pred).statistic),
        "r2": float(1 - np.sum(err ** 2) / ss_tot) if ss_tot > 0 else float("nan"),
        "n": len(y), "target_mean": float(y.mean()), "pred_mean": float(pred.mean()),
        "pairs": {"true": np.round(y[::step], 4).tolist(), "pred": np.round(pred[::step], 4).tolist()},
    }


TASKS.register("regression")(Regression)
