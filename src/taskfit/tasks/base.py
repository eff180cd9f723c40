"""What a task is: how its rows are read and checked, how they become tensors, which model and loss
it trains, how it is scored, how it predicts and what its report shows.

Adding a task = one module that subclasses :class:`Task`, declares its options block in
``taskfit.config`` (``TaskOptions`` subclass, discriminated on ``name``) and registers itself in
:data:`TASKS`. The pipeline, the training loop, inference and the CLI only call the methods below.

Defaults here fit "text in, tokenizer, Hugging Face model with ``.logits``"; tasks override what differs
(image tasks read pixels, retrieval scores against a corpus, generation generates).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import torch

from taskfit.config import DataConfig, TaskOptions
from taskfit.data.batching import BucketBatcher
from taskfit.data.load import Splits, check_columns, read_split
from taskfit.data.readers import ROW, read_columns
from taskfit.errors import DataError
from taskfit.registry import Registry


@dataclass
class Encoded:
    """A pre-processed split: per-row fields (token id arrays, targets, pixel tensors...), the cost of each
    row for batching, and the source row numbers.

    Attributes:
        fields: name -> per-row values (a list of arrays, or an array whose first axis is the row).
        lengths: int array [N]: tokens per row (1 for fixed-size inputs such as images).
        rows: int array [N]: 1-based source row numbers, for reports.
        labelled: whether every row carries a target (False when predicting).
    """

    fields: dict[str, Any]
    lengths: np.ndarray
    rows: np.ndarray
    labelled: bool = True
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def __contains__(self, key: str) -> bool:
        return key in self.fields


def token_lengths(seqs: Sequence[np.ndarray]) -> np.ndarray:
    return np.fromiter((len(x) for x in seqs), dtype=np.int64, count=len(seqs))


def pad_sequences(seqs: Sequence[np.ndarray], pad: int, width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad int arrays into [B, width]; returns (values, attention mask)."""
    width = width or max((len(s) for s in seqs), default=1)
    out = np.full((len(seqs), width), pad, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        n = min(len(s), width)
        out[r, :n] = s[:n]
        mask[r, :n] = 1
    return out, mask


def quiet_from_pretrained(loader: Any, *args: Any, **kwargs: Any) -> Any:
    """``loader.from_pretrained`` without the "newly initialised weights" warning (we add the head on purpose)."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        return loader.from_pretrained(*args, **kwargs)
    finally:
        hf_logging.set_verbosity(level)


def new_modules(info: Mapping[str, Any], default: str) -> list[str]:
    """Top-level children whose weights were newly initialised (the head) from ``output_loading_info``."""
    return sorted({k.split(".")[0] for k in info.get("missing_keys", [])}) or [default]


def softmax_rows(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """Per-row logits → softmax probabilities, shape [N, C]."""
    if not len(outputs):
        return np.zeros((0, 0), dtype=np.float32)
    logits = torch.from_numpy(np.stack(outputs).astype(np.float32))
    return torch.softmax(logits, dim=-1).numpy()  # type: ignore[no-any-return]


def top_labels(probs: np.ndarray, labels: list[str], top_k: int) -> list[dict[str, Any]]:
    """For each row of probabilities [N, C]: the best ``label`` and ``score`` and the ``top`` k of them."""
    out = []
    for row in probs:
        order = np.argsort(-row)[:top_k]
        out.append({"label": labels[order[0]], "score": float(row[order[0]]),
                    "top": [{"label": labels[i], "score": float(row[i])} for i in order]})
    return out


class Task(ABC):
    """The contract between a task module and the pipeline, the loop and inference.

    An instance knows its column names and options (not file paths): the same object trains, scores
    and predicts, and is rebuilt at inference time from ``taskfit.json`` by :meth:`from_meta`.
    """

    name: ClassVar[str]
    description: ClassVar[str]
    #: validation metric early stopping watches unless the recipe names another
    default_metric: ClassVar[str] = "loss"
    #: metrics shown in progress lines, results.json, the model card and the console summary
    headline: ClassVar[tuple[str, ...]] = ("loss",)
    #: does the model take token ids (sequence length drives batching and ``data.max_length`` applies)?
    text_input: ClassVar[bool] = True
    #: may ``train.precision: auto`` use bf16 autocast on CPU? (False where it measured slower or worse)
    cpu_bf16: ClassVar[bool] = True
    #: tuning methods (registry names) that work with this task's models; None = every method
    supported_methods: ClassVar[tuple[str, ...] | None] = None
    #: why other methods cannot work and what to use instead (the end of check_method's message)
    unsupported_reason: ClassVar[str] = ""

    def __init__(self, options: TaskOptions, text: str = "text", text_pair: str | None = None,
                 label: str = "label", max_length: int = 128) -> None:
        self.options = options
        self.text, self.text_pair, self.label = text, text_pair, label
        self.max_length = max_length
        self.pad_id = 0

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, options: TaskOptions, data: DataConfig) -> Task:
        return cls(options, text=data.text, text_pair=data.text_pair, label=data.label, max_length=data.max_length)

    @classmethod
    def check_method(cls, method: str) -> None:
        """Raise IncompatibleError when tuning method ``method`` is not in :attr:`supported_methods`."""
        if cls.supported_methods is not None and method not in cls.supported_methods:
            from taskfit.errors import IncompatibleError

            raise IncompatibleError(f"method {method!r} cannot train task {cls.name!r}: {cls.unsupported_reason}")

    def meta(self) -> dict[str, Any]:
        """What :meth:`from_meta` needs to rebuild this task (stored in taskfit.json)."""
        return {"task": self.name, "task_options": self.options.model_dump(mode="json"), "text": self.text,
                "text_pair": self.text_pair, "label": self.label, "max_length": self.max_length}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Task:
        from taskfit.config import task_options

        opts = task_options(meta.get("task_options") or {"name": meta["task"]})
        return cls(opts, text=meta.get("text", "text"), text_pair=meta.get("text_pair"),
                   label=meta.get("label", "label"), max_length=int(meta.get("max_length", 128)))

    # ---- data ----------------------------------------------------------------------------------
    def required_columns(self, labelled: bool = True) -> list[str]:
        """Columns every data file must have (``labelled=False``: those needed to predict)."""
        cols = [self.text, self.text_pair]
        if labelled:
            cols.append(self.label)
        return [c for c in cols if c]

    #: appended to a missing-column message: which task options name the columns
    column_hint: ClassVar[str] = ""

    def text_columns(self) -> dict[str, str]:
        """Split-frame columns holding free text, each with its shape: ``"text"`` (a string), ``"texts"`` (a
        list of strings), ``"tokens"`` (a token list whose length must not change) or ``"messages"`` (chat
        messages with a ``content``). PII masking (``data.pii_mask``) rewrites exactly these."""
        if not self.text_input:
            return {}
        return {c: "text" for c in (self.text, self.text_pair) if c}

    def texts_changed(self, splits: Splits) -> None:
        """Called after the texts of ``splits`` were rewritten in place (PII masking): rebuild anything
        :meth:`load_splits` derived from them. Default: nothing to rebuild."""
        return None

    def input_problems(self, data: DataConfig) -> list[str]:
        """Cheap checks of the data files (exist, readable, columns), one line per problem, all files at once."""
        problems: list[str] = []
        for key in ("train", "valid", "test"):
            path = getattr(data, key)
            if path is not None:
                problems += self.file_problems(key, Path(path))
        return problems

    def file_problems(self, key: str, path: Path) -> list[str]:
        """Problems of one data file (``key`` is train / valid / test); tasks with other formats override."""
        if not path.exists():
            return [f"data.{key}: file {str(path)!r} does not exist."]
        return self.column_problems(key, path)

    def column_problems(self, key: str, path: Path) -> list[str]:
        """An unreadable header, or each required column the table lacks (with :attr:`column_hint`)."""
        try:
            cols = read_columns(path)
        except DataError as e:
            return [f"data.{key}: {e}"]
        hint = f" {self.column_hint}" if self.column_hint else ""
        return [p + hint for p in check_columns(path, cols, key, self.required_columns())]

    @abstractmethod
    def load_splits(self, data: DataConfig) -> Splits:
        """Read, check and split the data. ``Splits.labels`` is the label set ([] when there is none)."""

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        """Read a labelled file to score with a trained model (``data.train`` is the file).

        Raises:
            DataError: missing columns, or labels the model does not know (naming the rows).
        """
        frame = read_split(Path(data.train), data, "data")
        if labels:
            unknown = ~frame[self.label].isin(set(labels))
            if unknown.any():
                raise DataError(f"label(s) {sorted(set(frame.loc[unknown, self.label]))[:5]} are not among the "
                                f"model's labels {labels}.", source=data.train, column=self.label,
                                rows=[int(r) for r in frame.loc[unknown, ROW]])
        return frame

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        """Statistics for the report (rows per split at least)."""
        return {"rows": {s: len(df) for s, df in splits.frames.items()}}

    def describe_data(self, splits: Splits) -> str:
        rows = ", ".join(f"{k} {len(v)}" for k, v in splits.frames.items())
        return (f"{len(splits.labels)} labels; " if splits.labels else "") + f"rows: {rows}"

    # ---- model ---------------------------------------------------------------------------------
    def load_processor(self, model_dir: Path) -> Any:
        """The tokenizer (or image processor) of a model directory; sets :attr:`pad_id`."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(model_dir)
        self.pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        return tok

    @abstractmethod
    def build_model(
        self, model_dir: Path, labels: list[str], attention: str = "sdpa"
    ) -> tuple[torch.nn.Module, list[str]]:
        """The pretrained backbone with a new head; returns (model, names of the head's top-level modules)."""

    @abstractmethod
    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        """Load a model saved by :meth:`save` (for inference)."""

    def save(self, model: torch.nn.Module, processor: Any, dest: Path, splits: Splits | None = None) -> None:
        """Write the trained model into ``dest`` (a fresh temp directory the pipeline renames)."""
        model.save_pretrained(dest)  # type: ignore[operator]
        if processor is not None and hasattr(processor, "save_pretrained"):
            processor.save_pretrained(dest)

    # ---- tensors -------------------------------------------------------------------------------
    @abstractmethod
    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        """Pre-process one split once, before training (``frame`` may lack the target column)."""

    @abstractmethod
    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        """A batch of rows ``idx`` as tensors (targets included when the split is labelled)."""

    def loss_units(self, enc: Encoded, idx: np.ndarray) -> np.ndarray:
        """How many items each row of ``idx`` adds to the mean the training loss takes: 1 per row here;
        token-mean losses (NER, generation) count target tokens. Data-parallel training weights each
        process's slice of a batch by its share of these, so N processes compute the one-process gradient."""
        return np.ones(len(idx))

    @abstractmethod
    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Mean training loss of one batch (called under autocast)."""

    # ---- scoring -------------------------------------------------------------------------------
    def outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> np.ndarray | list[Any]:
        """Per-row raw outputs of one batch for :meth:`metrics` / :meth:`format_predictions` (default: logits)."""
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        return model(**inputs).logits.float().cpu().numpy()  # type: ignore[no-any-return]

    @torch.no_grad()
    def run_outputs(self, model: torch.nn.Module, enc: Encoded, device: torch.device,
                    dtype: torch.dtype | None, batch_tokens: int = 16384) -> list[Any]:
        """:meth:`outputs` for every row, in the split's row order."""
        was_training = model.training
        if was_training:  # a served model is in eval mode already: walking its modules cost ~0.4 ms per call
            model.eval()
        out: list[Any] = [None] * len(enc)
        cap = batch_tokens if self.text_input else None
        batcher = BucketBatcher(enc.lengths, batch_size=64, batch_tokens=cap, shuffle=False)
        for idx in batcher.epoch(0):
            batch = {k: v.to(device) for k, v in self.collate(enc, idx, train=False).items()}
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                res = self.outputs(model, batch)
            for j, i in enumerate(idx):
                out[i] = res[j]
        if was_training:
            model.train()
        return out

    def evaluate(self, model: torch.nn.Module, enc: Encoded, labels: list[str], device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """Score a labelled split; the dict has ``loss`` plus the task's metrics."""
        return self.metrics(enc, self.run_outputs(model, enc, device, dtype), labels)

    @abstractmethod
    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        """Score a whole split from its per-row outputs; must include ``loss`` and ``n``."""

    # ---- use -----------------------------------------------------------------------------------
    def input_frame(self, inputs: Sequence[str], pairs: Sequence[str] | None = None) -> pd.DataFrame:
        """Raw prediction inputs as a frame with this task's input columns."""
        cols: dict[str, list[str]] = {self.text: [str(t) for t in inputs]}
        if self.text_pair:
            if pairs is None or len(pairs) != len(inputs):
                raise DataError(f"This model reads text pairs: give one {self.text_pair!r} per text.")
            cols[self.text_pair] = [str(p) for p in pairs]
        frame = pd.DataFrame(cols)
        frame[ROW] = np.arange(1, len(frame) + 1)
        return frame

    def probabilities(self, outputs: list[Any]) -> np.ndarray:
        """Per-label probabilities [N, C] from :meth:`outputs` (classification tasks override this)."""
        from taskfit.errors import IncompatibleError

        raise IncompatibleError(f"Task {self.name!r} gives no label probabilities; use predict() instead.")

    @abstractmethod
    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        """One JSON-able dict per input."""

    def predict(self, model: torch.nn.Module, processor: Any, inputs: Sequence[str], labels: list[str],
                device: torch.device, dtype: torch.dtype | None, top_k: int = 3,
                pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        if not inputs:
            return []
        enc = self.encode(self.input_frame(inputs, pairs), processor, labels)
        return self.format_predictions(self.run_outputs(model, enc, device, dtype), labels, top_k)

    # ---- presentation --------------------------------------------------------------------------
    def summary(self, metrics: Mapping[str, Any]) -> str:
        """One line of headline metrics."""
        return "  ".join(f"{k} {metrics[k]:.4f}" for k in self.headline if isinstance(metrics.get(k), float))

    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        """Extra ``(heading, trusted html)`` sections for report.html (per-type tables, image grids...)."""
        return []

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        """Print a split's scores in the terminal."""
        from rich.markup import escape

        console.print(f"[bold]{escape(title)}[/bold]  {escape(self.summary(metrics))}  n {metrics.get('n', '')}")


TASKS: Registry[type[Task]] = Registry("task")
