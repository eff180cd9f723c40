"""Generation (instruction / chat tuning): a causal LM learns to write the responses of its training rows.

Rows are prompt/response pairs or chat ``messages`` (see :mod:`taskfit.tasks.generation_data`). The model
is ``AutoModelForCausalLM`` with its pretrained LM head (``head_names = []``): LoRA adapts the attention
projections, full fine-tuning trains everything; ``frozen`` has no head to train and is refused.

The loss is the token-mean cross-entropy over response tokens only. Training batches are *packed*
(``task.packing``): the examples the batcher picked are laid end to end in rows of ``data.max_length``
tokens (first-fit decreasing), positions restart at 0 for each example and a block-diagonal causal mask
keeps examples from attending to each other, so a packed batch computes exactly the losses of the
separate examples with little padding. Logits are computed only where a target exists (answer tokens),
which skips most of the 49k-wide vocabulary projection.

Scores: ``loss`` and ``perplexity`` (exp of the token-mean NLL over answer tokens), and on up to
``task.eval_prompts`` held-out prompts a greedy reply (batched, left-padded, stopped at EOS / end of turn)
compared with the reference by ``exact_match`` and ``token_f1``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, GenerationOptions
from taskfit.data.checks import CheckResult
from taskfit.data.load import Splits
from taskfit.data.readers import FORMATS, ROW
from taskfit.data.split import stratified_split
from taskfit.errors import DataError
from taskfit.tasks.base import TASKS, Encoded, Task, pad_sequences, quiet_from_pretrained
from taskfit.tasks.generation_data import (
    IGNORE,
    MESSAGES,
    Formatter,
    last_turns,
    left_pad,
    pack,
    read_conversations,
    supervised_example,
)
from taskfit.tasks.generation_report import generation_scores, html_section, render_samples
from taskfit.tasks.regression import flag_rows, raise_fatal

GEN_BATCH = 16  # prompts generated together (left-padded)


def _parts_base(model: torch.nn.Module) -> Any:
    """The transformers model inside a PEFT wrapper (the model itself when there is none)."""
    unwrap = getattr(model, "get_base_model", None)
    return unwrap() if callable(unwrap) else model


def _parts(model: torch.nn.Module) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(decoder stack, LM head) of a causal LM, through a PEFT wrapper when there is one."""
    base = _parts_base(model)
    return base.get_decoder(), base.get_output_embeddings()


class Generation(Task):
    name = "generation"
    description = "prompt → response (instruction / chat tuning of a causal LM); loss, perplexity, exact match"
    default_metric = "loss"
    headline = ("loss", "perplexity", "exact_match", "token_f1")
    #: methods that can train this task (the LM head is pretrained, so a head-only method has nothing to train)
    supported_methods = ("full", "lora")
    unsupported_reason = ("it trains only a new task head, and a causal LM keeps its pretrained LM head, so nothing "
                          "would learn. Use method.name: lora (cheap) or full.")
    column_hint = "Set task.prompt / task.response, or task.messages for chat rows."

    def __init__(self, options: GenerationOptions | None = None, text: str = "text", text_pair: str | None = None,
                 label: str = "label", max_length: int = 128) -> None:
        opts = options or GenerationOptions()
        super().__init__(opts, text, None, label, max_length)
        self.opts: GenerationOptions = opts
        self.tokenizer: Any = None
        self.formatter: Formatter | None = None

    @classmethod
    def from_config(cls, options: Any, data: DataConfig) -> Task:
        return cls(options, text=data.text, label=data.label, max_length=data.max_length)


    # ---- data ----------------------------------------------------------------------------------
    def text_columns(self) -> dict[str, str]:
        return {MESSAGES: "messages"}  # prompt/response rows are read into messages too

    def required_columns(self, labelled: bool = True) -> list[str]:
        if self.opts.messages:
            return [self.opts.messages]
        return [self.opts.prompt, self.opts.response] if labelled else [self.opts.prompt]

    def file_problems(self, key: str, path: Path) -> list[str]:
        if not path.is_file():
            return [f"data.{key}: file {str(path)!r} does not exist."]
        if path.suffix.lower() not in FORMATS:
            return [f"data.{key}: unsupported file type {path.suffix!r}; expected one of {', '.join(sorted(FORMATS))}."]
        return self.column_problems(key, path)

    def load_splits(self, data: DataConfig) -> Splits:
        """Read every file, check it, split train randomly (seeded) into train/valid/test."""
        res = CheckResult({k: read_conversations(Path(getattr(data, k)), self.opts, data)
                           for k in ("train", "valid", "test") if getattr(data, k) is not None})
        for split in list(res.frames):
            df = res.frames[split]
            dup = df[MESSAGES].map(repr).duplicated(keep="first")
            flag_rows(res, split, dup, data.checks.duplicates, "duplicates", "duplicate conversation(s)")
        train, frames = res.frames["train"], {}
        if data.test is None and data.test_fraction > 0:
            train, frames["test"] = self._split(train, data.test_fraction, data.split_seed)
        if data.valid is None:
            frac = data.valid_fraction / (1 - (0 if data.test is not None else data.test_fraction))
            train, frames["valid"] = self._split(train, frac, data.split_seed + 1)
        res.frames = {"train": train, **{k: v for k, v in res.frames.items() if k != "train"}, **frames}
        if data.checks.leakage != "ignore":
            seen = set(res.frames["train"][MESSAGES].map(repr))
            for split in ("valid", "test"):
                if split in res.frames:
                    flag_rows(res, split, res.frames[split][MESSAGES].map(repr).isin(seen), data.checks.leakage,
                              "leakage", "conversation(s) also appear in train; their scores overstate quality")
        raise_fatal(res)
        if any(not len(res.frames[s]) for s in ("train", "valid")):
            raise DataError(f"Too few rows to split ({sum(len(f) for f in res.frames.values())}); give more rows or "
                            "a data.valid file.", source=data.train)
        order = [s for s in ("train", "valid", "test") if s in res.frames]
        return Splits(frames={s: res.frames[s] for s in order}, labels=[], issues=res.issues)

    @staticmethod
    def _split(df: pd.DataFrame, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
        rest, held = stratified_split(df.assign(_all=0), "_all", fraction, seed)
        return rest.drop(columns="_all"), held.drop(columns="_all")

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        return read_conversations(Path(data.train), self.opts, data)

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        stats: dict[str, Any] = {"rows": {}, "turns": {}, "response_chars": {}}
        for split, df in splits.frames.items():
            stats["rows"][split] = len(df)
            if len(df):
                stats["turns"][split] = round(float(df[MESSAGES].map(len).mean()), 2)
                chars = df[MESSAGES].map(lambda c: len(last_turns(c)[1]))
                stats["response_chars"][split] = {"mean": round(float(chars.mean()), 1), "max": int(chars.max())}
        return stats

    def describe_data(self, splits: Splits) -> str:
        return "conversations: " + ", ".join(f"{k} {len(v)}" for k, v in splits.frames.items())

    # ---- model ---------------------------------------------------------------------------------
    def load_processor(self, model_dir: Path) -> Any:
        tok = super().load_processor(model_dir)
        if tok.pad_token_id is None:  # many causal LMs have no pad token: padding is masked out anyway
            self.pad_id = tok.eos_token_id if tok.eos_token_id is not None else 0
        self.tokenizer, self.formatter = tok, Formatter(tok, self.opts)
        return tok

    def build_model(self, model_dir: Path, labels: list[str], attention: str = "sdpa"
                    ) -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModelForCausalLM

        model = quiet_from_pretrained(AutoModelForCausalLM, model_dir, attn_implementation=attention,
                                      dtype=torch.float32)
        return model, []

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)  # type: ignore[no-any-return]

    # ---- tensors -------------------------------------------------------------------------------
    def _fmt(self, processor: Any) -> Formatter:
        if self.formatter is None or self.formatter.tok is not processor:
            self.tokenizer, self.formatter = processor, Formatter(processor, self.opts)
        return self.formatter

    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        """Fields per row: ``input_ids`` [n], ``targets`` [n] (shifted, -100 off the answers), ``prompt_ids``
        [p] (the text to generate the last reply from), ``prompt`` and ``reference`` strings.

        Rows whose answer is cut off entirely by ``data.max_length`` are dropped with a warning."""
        fmt = self._fmt(processor)
        convs = list(frame[MESSAGES])
        rows = frame[ROW].to_numpy() if ROW in frame else np.arange(1, len(frame) + 1)
        labelled = bool(convs) and all(c and c[-1]["role"] == "assistant" for c in convs)
        fields: dict[str, list[Any]] = {k: [] for k in ("input_ids", "targets", "prompt_ids", "prompt", "reference")}
        keep, dropped = [], []
        for r, conv in enumerate(convs):
            prompt_ids = np.asarray(fmt.tokenize(fmt.prompt(conv))["input_ids"], dtype=np.int64)
            prompt_ids = prompt_ids[-self.max_length:]  # too long: keep the latest turns
            if labelled:
                ids, targets = supervised_example(fmt, conv, self.max_length)
                if not (targets != IGNORE).any():
                    dropped.append(int(rows[r]))
                    continue
            else:
                ids, targets = prompt_ids, np.full(len(prompt_ids), IGNORE, dtype=np.int64)
            user, reply = last_turns(conv)
            for k, v in (("input_ids", ids), ("targets", targets), ("prompt_ids", prompt_ids), ("prompt", user),
                         ("reference", reply)):
                fields[k].append(v)
            keep.append(r)
        if dropped:
            warnings.warn(f"{len(dropped)} of {len(convs)} row(s) were dropped: their prompt fills data.max_length="
                          f"{self.max_length} tokens, so no answer token is left to learn (rows "
                          f"{', '.join(map(str, dropped[:10]))}). Raise data.max_length or shorten the prompts.",
                          stacklevel=2)
        lengths = np.fromiter((len(x) for x in fields["input_ids"]), dtype=np.int64, count=len(keep))
        return Encoded(dict(fields), lengths, rows[keep], labelled=labelled,
                       extra={"dropped_truncated": len(dropped), "dropped_rows": dropped})

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        ids = [enc["input_ids"][i] for i in idx]
        targets = [enc["targets"][i] for i in idx]
        if train and self.opts.packing:
            return pack(ids, targets, self.max_length, self.pad_id)
        padded, mask = pad_sequences(ids, self.pad_id)
        labels, _ = pad_sequences(targets, IGNORE, padded.shape[1])
        return {"input_ids": torch.from_numpy(padded), "attention_mask": torch.from_numpy(mask),
                "labels": torch.from_numpy(labels)}

    def _answer_logits(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Logits [T, V] at the T positions that have a target, the targets [T] and the row of each [T]."""
        decoder, head = _parts(model)
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        hidden = decoder(**inputs).last_hidden_state  # [B, L, H]
        where = batch["labels"] != IGNORE
        logits = head(hidden[where]).float()  # only answer positions: most of [B, L, V] is never built
        return logits, batch["labels"][where], where.nonzero()[:, 0]

    def loss_units(self, enc: Encoded, idx: np.ndarray) -> np.ndarray:
        """Answer tokens per row: the loss is a mean over them."""
        return np.array([int((enc["targets"][i] != IGNORE).sum()) for i in idx], dtype=np.float64)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits, targets, _ = self._answer_logits(model, batch)
        if not len(targets):
            return logits.sum() * 0.0
        return F.cross_entropy(logits, targets)

    # ---- scoring -------------------------------------------------------------------------------
    def outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list[tuple[float, int]]:
        """Per row: (summed NLL of its answer tokens, number of answer tokens)."""
        logits, targets, row = self._answer_logits(model, batch)
        nll = F.cross_entropy(logits, targets, reduction="none")
        b = batch["labels"].shape[0]
        sums = torch.zeros(b).index_add_(0, row.cpu(), nll.detach().cpu())
        counts = torch.bincount(row.cpu(), minlength=b)
        return [(float(sums[j]), int(counts[j])) for j in range(b)]

    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        total = sum(o[0] for o in outputs)
        n_tok = sum(o[1] for o in outputs)
        loss = total / max(n_tok, 1)
        return {"loss": loss, "perplexity": math.exp(min(loss, 50.0)), "n": len(enc), "tokens": n_tok,
                "dropped_truncated": int(enc.extra.get("dropped_truncated", 0))}

    def evaluate(self, model: torch.nn.Module, enc: Encoded, labels: list[str], device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        m = self.metrics(enc, self.run_outputs(model, enc, device, dtype), labels)
        k = min(self.opts.eval_prompts, len(enc))
        if k and enc.labelled and self.tokenizer is not None:
            replies = self.generate(model, enc["prompt_ids"][:k], device, dtype)
            samples = [{"row": int(enc.rows[i]), "prompt": enc["prompt"][i], "reference": enc["reference"][i],
                        "generated": replies[i][0]} for i in range(k)]
            m.update(generation_scores(samples), samples=samples)
        return m

    @torch.no_grad()
    def generate(self, model: torch.nn.Module, prompts: Sequence[np.ndarray], device: torch.device,
                 dtype: torch.dtype | None, max_new_tokens: int | None = None) -> list[tuple[str, int]]:
        """Greedy replies ``(text, generated tokens)`` to tokenised prompts, in batches of left-padded rows."""
        assert self.formatter is not None, "load_processor() sets the tokenizer first"
        was_training = model.training
        model.eval()
        base = _parts_base(model)
        stop = self.formatter.stop_ids(getattr(base.generation_config, "eos_token_id", None))
        out: list[tuple[str, int]] = [("", 0)] * len(prompts)
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))  # similar lengths: little padding
        for s in range(0, len(order), GEN_BATCH):
            chunk = order[s:s + GEN_BATCH]
            ids, mask = left_pad([prompts[i] for i in chunk], self.pad_id)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                gen = model.generate(input_ids=ids.to(device), attention_mask=mask.to(device),  # type: ignore[operator]
                                     max_new_tokens=max_new_tokens or self.opts.max_new_tokens, do_sample=False,
                                     eos_token_id=stop, pad_token_id=self.pad_id, top_p=None, top_k=None,
                                     temperature=None)
            for j, i in enumerate(chunk):
                new = gen[j, ids.shape[1]:].tolist()
                ends = [t for t, tok in enumerate(new) if tok in stop]
                new = new[: ends[0]] if ends else new
                out[i] = (self.tokenizer.decode(new, skip_special_tokens=True).strip(), len(new))
        model.train(was_training)
        return out

    # ---- use -----------------------------------------------------------------------------------
    def input_frame(self, inputs: Sequence[str], pairs: Sequence[str] | None = None) -> pd.DataFrame:
        """Each input is one user turn (a new conversation)."""
        frame = pd.DataFrame({MESSAGES: [[{"role": "user", "content": str(t)}] for t in inputs]})
        frame[ROW] = np.arange(1, len(frame) + 1)
        return frame

    def predict(self, model: torch.nn.Module, processor: Any, inputs: Sequence[str], labels: list[str],
                device: torch.device, dtype: torch.dtype | None, top_k: int = 3,
                pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per prompt: ``{"response": greedy reply, "tokens": tokens generated}``."""
        if not inputs:
            return []
        enc = self.encode(self.input_frame(inputs), processor, labels)
        return self.format_predictions(self.generate(model, enc["prompt_ids"], device, dtype), labels, top_k)

    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        return [{"response": text, "tokens": n} for text, n in outputs]

    # ---- presentation --------------------------------------------------------------------------
    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        return [(f"Generated replies ({split})", html_section(split, m)) for split, m in scores.items() if m]

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        render_samples(console, metrics, title)


TASKS.register("generation")(Generation)
