"""Token classification (NER): tokens in, one BIO/BIOES tag per token out; entity-level P/R/F1.

Data: CoNLL files or token-list tables (see :mod:`taskfit.tasks.ner_data`). Words are split into
sub-word pieces by the model's fast tokenizer (``is_split_into_words=True``); each word is labelled on
its first piece and the other pieces are ignored by the loss (-100), or, with
``task.label_all_subtokens``, trained as ``I-<type>`` (``O`` for ``O`` words). A word's predicted tag is
the tag of its first piece. For SentencePiece tokenizers (XLM-R, used by multilingual-e5) a word often
starts with a bare "▁" piece that carries no text; then the next piece of the word stands for it.

Raw-string prediction splits text into words by one rule, used for English and Chinese alike:
every Han / kana character is a word of its own (People's Daily data is tagged per character), runs of
other letters and digits form a word (``@name``/``#tag`` keep their sign, ``it's``/``U.S``/``e-mail``
stay whole), and every other non-space character (punctuation, symbols) is a word of its own.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, NerOptions
from taskfit.data.load import Splits
from taskfit.data.readers import FORMATS, ROW
from taskfit.errors import ConfigError, DataError, IncompatibleError
from taskfit.tasks.base import TASKS, Encoded, Task, new_modules, pad_sequences, quiet_from_pretrained, token_lengths
from taskfit.tasks.ner_data import (
    CONLL_SUFFIXES,
    PREFIXES,
    TAGS,
    TOKENS,
    check_tags,
    detect_scheme,
    entity_types,
    is_conll,
    label_set,
    read_sentences,
    split_sentences,
    split_tag,
)
from taskfit.tasks.ner_report import entity_scores, html_section, render_table, spans

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff"
WORD_RE = re.compile(rf"[{_CJK}]|[@#]?[^\W{_CJK}]+(?:['’.\-][^\W{_CJK}]+)*|\S")
TEXT, OFFSETS = "_text", "_offsets"


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words of a raw string and their ``(start, end)`` character offsets (see the module docstring)."""
    found = list(WORD_RE.finditer(text))
    return [m.group() for m in found], [m.span() for m in found]


class Ner(Task):
    name = "ner"
    description = "tokens → BIO/BIOES tags; entity-level precision/recall/F1 per type (seqeval)"
    default_metric = "f1"
    headline = ("f1", "precision", "recall", "token_accuracy", "loss")

    def __init__(self, options: NerOptions | None = None, text: str = "text", text_pair: str | None = None,
                 label: str = "label", max_length: int = 128, scheme: str | None = None) -> None:
        opts = options or NerOptions()
        super().__init__(opts, text, None, label, max_length)
        self.opts: NerOptions = opts
        #: the tag scheme in use: the option, or what load_splits detected (stored in taskfit.json)
        self.scheme = scheme or (opts.scheme if opts.scheme != "auto" else "BIO")

    # ---- construction --------------------------------------------------------------------------
    @classmethod
    def from_config(cls, options: Any, data: DataConfig) -> Task:
        return cls(options, text=data.text, label=data.label, max_length=data.max_length)

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "scheme": self.scheme}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Task:
        from taskfit.config import task_options

        opts = task_options(meta.get("task_options") or {"name": "ner"})
        return cls(opts, text=meta.get("text", "text"), label=meta.get("label", "label"),  # type: ignore[arg-type]
                   max_length=int(meta.get("max_length", 128)), scheme=meta.get("scheme"))

    # ---- data ----------------------------------------------------------------------------------
    column_hint = "Set task.tokens / task.tags."

    def required_columns(self, labelled: bool = True) -> list[str]:
        return [self.opts.tokens, self.opts.tags] if labelled else [self.opts.tokens]

    def text_columns(self) -> dict[str, str]:
        return {TOKENS: "tokens"}  # the frame's token lists (masking keeps one tag per token)

    def file_problems(self, key: str, path: Path) -> list[str]:
        if not path.is_file():
            return [f"data.{key}: file {str(path)!r} does not exist."]
        if is_conll(path):
            return []  # read fully (and checked line by line) by load_splits
        if path.suffix.lower() not in FORMATS:
            return [f"data.{key}: unsupported file type {path.suffix!r} for ner; expected CoNLL "
                    f"({', '.join(CONLL_SUFFIXES)}) or a table (.jsonl, .json, .csv, .parquet)."]
        return self.column_problems(key, path)

    def _read(self, path: Path, limit: int | None) -> pd.DataFrame:
        return read_sentences(Path(path), self.opts.tokens, self.opts.tags, self.opts.tag_column, limit)

    def load_splits(self, data: DataConfig) -> Splits:
        """Read every file, detect the scheme on train, check tags, split by sentence, build the label set.

        Raises:
            DataError: malformed lines, length mismatches, empty sentences, tags outside the scheme, or
                valid/test tags that train does not have (each naming file, sentence and line).
            ConfigError: ``data.labels`` that do not fit the scheme or miss train's tags.
        """
        files = {"train": self._read(data.train, data.limit)}
        files |= {k: self._read(getattr(data, k), data.limit) for k in ("valid", "test") if getattr(data, k)}
        self.scheme = self.opts.scheme if self.opts.scheme != "auto" else detect_scheme(files["train"])
        issues: list[dict[str, Any]] = [{"severity": "info", "check": "tag_scheme", "rows": [], "file": str(data.train),
                                         "message": f"tag scheme {self.scheme}" +
                                         (" (detected)" if self.opts.scheme == "auto" else "")}]
        labels = self._labels(data, files["train"])
        for key, frame in files.items():
            path = Path(getattr(data, key))
            report = check_tags(frame, self.scheme, labels if key != "train" or data.labels else None, key, path)
            if report.broken:
                issues.append({"severity": "warning", "check": "tag_sequence", "file": str(path), "rows": [],
                               "message": f"{key}: {report.broken} tag(s) break the {self.scheme} sequence rules "
                               "(e.g. an I- tag that continues no entity); they are read as entity starts"})
        train, frames = files["train"], {}
        if "test" in files:
            frames["test"] = files["test"]
        elif data.test_fraction > 0:
            train, frames["test"] = split_sentences(train, data.test_fraction, data.split_seed)
        if "valid" in files:
            frames["valid"] = files["valid"]
        else:
            frac = data.valid_fraction / (1 - (0 if "test" in files else data.test_fraction))
            train, frames["valid"] = split_sentences(train, frac, data.split_seed + 1)
        return Splits(frames={"train": train, **frames}, labels=labels, issues=issues)

    def _labels(self, data: DataConfig, train: pd.DataFrame) -> list[str]:
        types = entity_types(train[TAGS])
        if not data.labels:
            if not types:
                raise DataError("train has no entity tags at all (only O); NER needs tagged entities.",
                                source=data.train)
            return label_set(types, self.scheme)
        labels = list(data.labels)
        bad = [t for t in labels if split_tag(t)[0] not in ("O", *PREFIXES[self.scheme])]
        if bad or "O" not in labels:
            raise ConfigError(f"data.labels: {bad or labels} do not fit the {self.scheme} scheme; expected 'O' plus "
                              f"tags like {label_set(types[:1] or ['PER'], self.scheme)[1:]}.")
        return labels

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        frame = self._read(Path(data.train), data.limit)
        check_tags(frame, self.scheme, labels or None, "eval", Path(data.train))
        return frame

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        out: dict[str, Any] = {"rows": {}, "label_counts": {}, "sentence_tokens": {}}
        for split, df in splits.frames.items():
            out["rows"][split] = len(df)
            counts: dict[str, int] = {k: 0 for k in entity_types([splits.labels])}
            for tags in df[TAGS]:
                for kind, _, _ in spans(tags):
                    counts[kind] = counts.get(kind, 0) + 1
            out["label_counts"][split] = counts
            n = df[TOKENS].map(len)
            if len(n):
                out["sentence_tokens"][split] = {"mean": round(float(n.mean()), 1), "p50": int(n.median()),
                                                 "p95": int(n.quantile(0.95)), "max": int(n.max())}
        return out

    def describe_data(self, splits: Splits) -> str:
        rows = ", ".join(f"{k} {len(v)}" for k, v in splits.frames.items())
        return f"{len(entity_types([splits.labels]))} entity types ({self.scheme}, {len(splits.labels)} tags); " \
               f"sentences: {rows}"

    # ---- model ---------------------------------------------------------------------------------
    def load_processor(self, model_dir: Path) -> Any:
        tok = super().load_processor(model_dir)
        if not getattr(tok, "is_fast", False):
            raise IncompatibleError(f"ner needs a fast (Rust) tokenizer to align words and pieces; the tokenizer of "
                                    f"{model_dir} is a slow one. Add a tokenizer.json to the model directory.")
        return tok

    def build_model(self, model_dir: Path, labels: list[str],
                    attention: str = "sdpa") -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModelForTokenClassification

        model, info = quiet_from_pretrained(
            AutoModelForTokenClassification, model_dir, num_labels=len(labels), id2label=dict(enumerate(labels)),
            label2id={lab: i for i, lab in enumerate(labels)}, output_loading_info=True, attn_implementation=attention)
        return model, new_modules(info, "classifier")

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification.from_pretrained(model_dir)  # type: ignore[no-any-return]

    # ---- tensors -------------------------------------------------------------------------------
    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        """Tokenise words once. Fields (per row): ``input_ids`` [P], ``labels`` [P] (-100 = not trained),
        ``first`` [W] (piece of each word, -1 when truncated away or empty) and ``word_tags`` [W] (-1 unknown)."""
        words = [list(t) for t in frame[TOKENS]]
        out = processor(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
        index = {lab: i for i, lab in enumerate(labels)}
        inside = {i: index.get(f"I-{split_tag(lab)[1]}", i) if split_tag(lab)[1] else i for lab, i in index.items()}
        # A bare word-start marker ("▁" in SentencePiece) holds no text: let the word's next piece speak for it.
        unk = processor.unk_token_id
        bare = {i for t in ("▁", "Ġ") if (i := processor.convert_tokens_to_ids(t)) not in (None, unk)}
        tagged = TAGS in frame
        fields: dict[str, list[np.ndarray]] = {"input_ids": [], "labels": [], "first": [], "word_tags": []}
        truncated = 0
        for r, ws in enumerate(words):
            ids = np.asarray(out["input_ids"][r], dtype=np.int64)
            wid = out.word_ids(r)
            first = np.full(len(ws), -1, dtype=np.int64)
            for pos, w in enumerate(wid):
                if w is None:
                    continue
                if first[w] < 0 or (ids[first[w]] in bare and pos == first[w] + 1):
                    first[w] = pos
            truncated += int(first[-1] < 0 and len(ids) >= self.max_length)
            tags = np.array([index.get(t, -1) for t in frame[TAGS].iloc[r]] if tagged else [-1] * len(ws),
                            dtype=np.int64)
            piece = np.full(len(ids), -100, dtype=np.int64)
            if self.opts.label_all_subtokens:
                for pos, w in enumerate(wid):
                    if w is not None and tags[w] >= 0:
                        piece[pos] = inside[int(tags[w])]
            ok = first >= 0
            piece[first[ok]] = tags[ok]
            piece[piece < 0] = -100
            for k, v in (("input_ids", ids), ("labels", piece), ("first", first), ("word_tags", tags)):
                fields[k].append(v)
        if truncated:
            warnings.warn(f"{truncated} of {len(words)} sentence(s) are longer than data.max_length="
                          f"{self.max_length} pieces; their last words are cut off (predicted O). Raise "
                          "data.max_length to keep them.", stacklevel=2)
        labelled = tagged and all((t >= 0).all() for t in fields["word_tags"])
        rows = frame[ROW].to_numpy() if ROW in frame else np.arange(1, len(frame) + 1)
        return Encoded(dict(fields), token_lengths(fields["input_ids"]), rows, labelled=labelled,
                       extra={"truncated": truncated})

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        ids, mask = pad_sequences([enc["input_ids"][i] for i in idx], self.pad_id)
        batch = {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}
        if enc.labelled:
            labels, _ = pad_sequences([enc["labels"][i] for i in idx], -100, ids.shape[1])
            batch["labels"] = torch.from_numpy(labels)
        return batch

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        if not bool((batch["labels"] != -100).any()):  # a data-parallel slice with no labelled piece
            return logits.sum() * 0.0
        return F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    def loss_units(self, enc: Encoded, idx: np.ndarray) -> np.ndarray:
        """Labelled pieces per row: the loss is a mean over them."""
        return np.array([int((enc["labels"][i] != -100).sum()) for i in idx], dtype=np.float64)

    # ---- scoring -------------------------------------------------------------------------------
    def outputs(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> list[np.ndarray]:
        """Per row: logits [P_i, C] of its real pieces (padding cut off)."""
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().cpu().numpy()
        n = batch["attention_mask"].sum(1).tolist()
        return [logits[j, : n[j]] for j in range(len(n))]

    @staticmethod
    def word_predictions(logits: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Tag ids [W] and their probabilities [W] of each word's first piece (O with p=1 when it has none)."""
        probs = torch.softmax(torch.from_numpy(np.asarray(logits, dtype=np.float32)), dim=-1).numpy()
        ok = first >= 0
        ids = np.zeros(len(first), dtype=np.int64)
        p = np.ones(len(first), dtype=np.float32)
        ids[ok] = probs[first[ok]].argmax(-1)
        p[ok] = probs[first[ok]].max(-1)
        return ids, p

    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        logits = torch.from_numpy(np.concatenate(outputs).astype(np.float32))
        targets = torch.from_numpy(np.concatenate(enc["labels"]))
        gold, pred = [], []
        correct = total = 0
        for r, out in enumerate(outputs):
            ids, _ = self.word_predictions(out, enc["first"][r])
            tags = enc["word_tags"][r]
            correct += int((ids == tags).sum())
            total += len(tags)
            gold.append([labels[t] for t in tags])
            pred.append([labels[t] for t in ids])
        m = entity_scores(gold, pred, self.scheme)
        m.update(loss=float(F.cross_entropy(logits, targets, ignore_index=-100)),
                 token_accuracy=correct / max(total, 1), n=len(enc), n_words=total,
                 truncated=int(enc.extra.get("truncated", 0)))
        return m

    # ---- use -----------------------------------------------------------------------------------
    def input_frame(self, inputs: Sequence[Any], pairs: Sequence[str] | None = None) -> pd.DataFrame:
        """Raw strings are split into words (offsets kept); token lists are used as they are."""
        toks: list[list[str]] = []
        offs: list[list[tuple[int, int]] | None] = []
        texts: list[str | None] = []
        for i, item in enumerate(inputs):
            if isinstance(item, str):
                words, spans_ = split_words(item)
                toks.append(words)
                offs.append(spans_)
                texts.append(item)
            elif isinstance(item, (list, tuple)) and all(isinstance(t, str) for t in item):
                toks.append([str(t) for t in item])
                offs.append(None)
                texts.append(None)
            else:
                raise DataError(f"input {i + 1}: expected a text or a list of tokens, got {type(item).__name__}.")
        frame = pd.DataFrame({TOKENS: toks, OFFSETS: offs, TEXT: texts})
        frame[ROW] = np.arange(1, len(frame) + 1)
        return frame

    def predict(self, model: torch.nn.Module, processor: Any, inputs: Sequence[Any], labels: list[str],
                device: torch.device, dtype: torch.dtype | None, top_k: int = 3,
                pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        """Per input: ``tokens``, ``tags`` and ``entities`` [{type, text, start, end (word index, end exclusive),
        score, and start_char/end_char for raw strings}]. Empty texts give no entities."""
        if not inputs:
            return []
        frame = self.input_frame(inputs)
        keep = [i for i, t in enumerate(frame[TOKENS]) if t]
        sub = frame.iloc[keep].reset_index(drop=True)
        outs: list[Any] = []
        if len(sub):
            enc = self.encode(sub, processor, labels)
            logits = self.run_outputs(model, enc, device, dtype)
            outs = [(lg, enc["first"][r], sub.iloc[r]) for r, lg in enumerate(logits)]
        results = {i: res for i, res in zip(keep, self.format_predictions(outs, labels, top_k), strict=True)}
        return [results.get(i, {"tokens": [], "tags": [], "entities": []}) for i in range(len(frame))]

    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        """``outputs``: per input ``(logits [P, C], first-piece index per word [W], its input_frame row)``."""
        res = []
        for logits, first, row in outputs:
            ids, probs = self.word_predictions(logits, first)
            tags = [labels[i] for i in ids]
            words, offsets, text = list(row[TOKENS]), row[OFFSETS], row[TEXT]
            ents = []
            for kind, s, e in spans(tags):
                ent: dict[str, Any] = {"type": kind, "start": s, "end": e, "score": round(float(probs[s:e].mean()), 4)}
                if text is not None:
                    ent.update(start_char=offsets[s][0], end_char=offsets[e - 1][1],
                               text=text[offsets[s][0]:offsets[e - 1][1]])
                else:
                    cjk = all(len(w) == 1 and re.fullmatch(f"[{_CJK}]", w) for w in words[s:e])
                    ent["text"] = ("" if cjk else " ").join(words[s:e])
                ents.append(ent)
            res.append({"tokens": words, "tags": tags, "entities": ents})
        return res

    # ---- presentation --------------------------------------------------------------------------
    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        return [(f"Entities per type ({split})", html_section(split, m)) for split, m in scores.items() if m]

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        render_table(console, metrics, title)


TASKS.register("ner")(Ner)
