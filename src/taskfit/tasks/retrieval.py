"""Retrieval / FAQ matching: a query → the best answers from a fixed set of answers.

The model is a bi-encoder: the pretrained encoder (``AutoModel``, no new head) embeds queries and
answers separately; a vector is the mean (or [CLS]) of the token vectors, L2-normalised, so a dot product
is a cosine. Training minimises InfoNCE with in-batch negatives: each query must pick its own answer
among the batch's answers (plus any hard negatives), and each answer its own query. Rows of the batch
that share the answer or the query are not negatives of each other (they are masked), because pushing
a query away from its own correct answer would teach the wrong thing.

The answer corpus is every distinct answer of all splits, so a held-out query is scored against answers
seen in training too, as a deployed FAQ bot is. ``save`` writes the encoder, the tokenizer and an index
(``index/answers.jsonl`` + ``index/embeddings.npy``, float32 [N, D] normalised); ``predict`` searches it
with FAISS (``IndexFlatIP``) when ``faiss`` is installed, else with numpy.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from taskfit.config import DataConfig, RetrievalOptions
from taskfit.data.batching import BucketBatcher
from taskfit.data.load import Splits
from taskfit.data.readers import ROW
from taskfit.tasks.base import TASKS, Encoded, Task, pad_sequences, quiet_from_pretrained, token_lengths
from taskfit.tasks.retrieval_data import load_pair_splits, read_pairs
from taskfit.tasks.retrieval_report import failures, ranking_metrics, render_retrieval, retrieval_sections

E5_PREFIXES = ("query: ", "passage: ")
_E5 = re.compile(r"(^|[^a-z0-9])e5([^a-z0-9]|$)")


def detect_prefixes(model_dir: Path) -> tuple[str, str]:
    """("query: ", "passage: ") for E5 models, else ("", "").

    Looks, in order, at taskfit's model meta (``taskfit_model.json`` "prefixes"), the directory name, and
    ``_name_or_path`` / ``name_or_path`` in config.json.
    """
    meta = model_dir / "taskfit_model.json"
    if meta.is_file():
        prefixes = json.loads(meta.read_text(encoding="utf-8")).get("prefixes") or {}
        if prefixes:
            return str(prefixes.get("query", "")), str(prefixes.get("passage", ""))
    names = [model_dir.name]
    cfg = model_dir / "config.json"
    if cfg.is_file():
        conf = json.loads(cfg.read_text(encoding="utf-8"))
        names += [str(conf.get(k, "")) for k in ("_name_or_path", "name_or_path")]
    return E5_PREFIXES if any(_E5.search(Path(n).name.lower()) for n in names if n) else ("", "")


def pool(hidden: torch.Tensor, mask: torch.Tensor, how: str) -> torch.Tensor:
    """Token vectors [B, L, D] + attention mask [B, L] → L2-normalised float32 vectors [B, D]."""
    hidden = hidden.float()
    if how == "cls":
        vec = hidden[:, 0]
    else:
        m = mask.unsqueeze(-1).to(hidden.dtype)
        vec = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)
    return F.normalize(vec, dim=-1)


def info_nce(q: torch.Tensor, a: torch.Tensor, aid: torch.Tensor, qid: torch.Tensor, temperature: float,
             negs: torch.Tensor | None = None, nid: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric InfoNCE with in-batch negatives.

    Args:
        q, a: normalised query / answer vectors [B, D]; row i of ``a`` is the answer of query i.
        aid, qid: int [B] ids of each row's answer text and query text; rows sharing either are not
            negatives of each other (masked out of the softmax).
        temperature: softmax temperature.
        negs: optional normalised hard-negative vectors [N, D], extra candidates for every query.
        nid: int [N] answer-text ids of ``negs`` (a negative equal to a query's own answer is masked).

    Returns:
        scalar: mean of the query→answer and answer→query cross-entropies.
    """
    same = (aid[:, None] == aid[None, :]) | (qid[:, None] == qid[None, :])
    false_neg = same & ~torch.eye(len(aid), dtype=torch.bool, device=aid.device)
    logits = (q @ a.T).float() / temperature
    mask = false_neg
    if negs is not None and len(negs):
        logits = torch.cat([logits, (q @ negs.T).float() / temperature], dim=1)
        assert nid is not None
        mask = torch.cat([false_neg, aid[:, None] == nid[None, :]], dim=1)
    target = torch.arange(len(aid), device=q.device)
    forward = F.cross_entropy(logits.masked_fill(mask, float("-inf")), target)
    backward = F.cross_entropy(((a @ q.T).float() / temperature).masked_fill(false_neg, float("-inf")), target)
    return (forward + backward) / 2


class Retrieval(Task):
    name = "retrieval"
    description = "query → top-k answers from a fixed set (FAQ matching); bi-encoder; recall@k, MRR, nDCG@10"
    default_metric = "mrr"
    headline = ("recall@1", "recall@5", "mrr", "ndcg@10", "loss")
    supported_methods = ("full", "lora")
    unsupported_reason = ("the bi-encoder adds no new head, so a head-only method would train nothing. "
                          "Use method.name: full, or lora (cheaper).")

    def __init__(self, options: RetrievalOptions | None = None, text: str = "text", text_pair: str | None = None,
                 label: str = "label", max_length: int = 128) -> None:
        opts = options or RetrievalOptions()
        # The columns are task.query / task.answer; data.text / data.label are kept only for the meta round trip.
        super().__init__(opts, text, None, label, max_length)
        self.opts: RetrievalOptions = opts
        self.prefixes: tuple[str, str] | None = None  # resolved (query, passage) prefixes
        self.corpus: list[str] = []  # distinct answers; targets index into it
        self._corpus_pos: dict[str, int] = {}
        self._text_ids: dict[str, int] = {}  # every answer-side text (answers and negatives) → id
        self._query_ids: dict[str, int] = {}
        self._relevant: dict[str, set[int]] = {}  # query text → corpus positions of its answers
        self._corpus_tokens: list[np.ndarray] = []
        self.index: Any = None  # (answers, embeddings [N, D], faiss index | None) after load_trained

    @classmethod
    def from_config(cls, options: Any, data: DataConfig) -> Task:
        return cls(options, text=data.text, label=data.label, max_length=data.max_length)


    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "prefixes": list(self.prefixes or ("", ""))}

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Task:
        task = super().from_meta(meta)
        assert isinstance(task, Retrieval)
        if meta.get("prefixes") is not None:
            q, p = meta["prefixes"]
            task.prefixes = (str(q), str(p))
        return task

    # ---- data ----------------------------------------------------------------------------------
    def required_columns(self, labelled: bool = True) -> list[str]:
        if not labelled:
            return [self.opts.query]
        return [c for c in (self.opts.query, self.opts.answer, self.opts.negatives) if c]

    def load_splits(self, data: DataConfig) -> Splits:
        frames, issues = load_pair_splits(data, self.opts.query, self.opts.answer, self.opts.negatives)
        for df in frames.values():
            self._register_pairs(df)
        return Splits(frames=frames, labels=[], issues=issues)

    def text_columns(self) -> dict[str, str]:
        cols = {self.opts.query: "text", self.opts.answer: "text"}
        return cols | ({self.opts.negatives: "texts"} if self.opts.negatives else {})

    def texts_changed(self, splits: Splits) -> None:
        """Rebuild the answer corpus and relevance sets from the (masked) texts."""
        self.corpus, self._corpus_pos, self._relevant = [], {}, {}
        self._corpus_tokens, self._text_ids, self._query_ids = [], {}, {}
        for df in splits.frames.values():
            self._register_pairs(df)

    def _register_pairs(self, df: pd.DataFrame) -> None:
        """Add a frame's answers to the corpus and its pairs to the relevance sets."""
        for qtext, atext in zip(df[self.opts.query], df[self.opts.answer], strict=True):
            pos = self._corpus_pos.setdefault(atext, len(self._corpus_pos))
            if pos == len(self.corpus):
                self.corpus.append(atext)
            self._relevant.setdefault(qtext, set()).add(pos)

    def read_eval_file(self, data: DataConfig, labels: list[str]) -> pd.DataFrame:
        frame = read_pairs(data.train, "data", self.opts.query, self.opts.answer, None)
        self._register_pairs(frame)  # answers not in the saved index join the corpus
        return frame

    def input_frame(self, inputs: Sequence[str], pairs: Sequence[str] | None = None) -> pd.DataFrame:
        frame = pd.DataFrame({self.opts.query: [str(t) for t in inputs]})
        frame[ROW] = np.arange(1, len(frame) + 1)
        return frame

    def data_stats(self, splits: Splits) -> dict[str, Any]:
        return {"rows": {s: len(df) for s, df in splits.frames.items()},
                "queries": {s: int(df[self.opts.query].nunique()) for s, df in splits.frames.items()},
                "corpus_size": len(self.corpus)}

    def describe_data(self, splits: Splits) -> str:
        rows = ", ".join(f"{k} {len(v)}" for k, v in splits.frames.items())
        return f"{len(self.corpus)} distinct answers; rows: {rows}"

    # ---- model ---------------------------------------------------------------------------------
    def load_processor(self, model_dir: Path) -> Any:
        tok = super().load_processor(model_dir)
        if self.prefixes is None:
            auto = detect_prefixes(Path(model_dir))
            q, p = self.opts.query_prefix, self.opts.passage_prefix
            self.prefixes = (auto[0] if q == "auto" else q, auto[1] if p == "auto" else p)
        return tok

    def build_model(self, model_dir: Path, labels: list[str], attention: str = "sdpa"
                    ) -> tuple[torch.nn.Module, list[str]]:
        from transformers import AutoModel

        # No head: the embedding is pooled from the last hidden states (the pooler, random in some
        # checkpoints such as E5, is left unused).
        model = quiet_from_pretrained(AutoModel, model_dir, attn_implementation=attention)
        return model, []

    def load_trained(self, model_dir: Path, meta: Mapping[str, Any]) -> torch.nn.Module:
        from transformers import AutoModel

        self.index = load_index(Path(model_dir) / "index")
        for answer in self.index[0]:
            self._corpus_pos.setdefault(answer, len(self._corpus_pos))
            if len(self.corpus) < len(self._corpus_pos):
                self.corpus.append(answer)
        return AutoModel.from_pretrained(model_dir)  # type: ignore[no-any-return]

    def save(self, model: torch.nn.Module, processor: Any, dest: Path, splits: Splits | None = None) -> None:
        super().save(model, processor, dest, splits)
        device = next(model.parameters()).device
        emb = self.embed(model, self._corpus_ids(processor), device, None)
        save_index(dest / "index", self.corpus, emb)

    # ---- tensors -------------------------------------------------------------------------------
    def _tokens(self, texts: Sequence[str], processor: Any, prefix: str) -> list[np.ndarray]:
        out = processor([prefix + t for t in texts], truncation=True, max_length=self.max_length, padding=False)
        return [np.asarray(x, dtype=np.int64) for x in out["input_ids"]]

    def _corpus_ids(self, processor: Any) -> list[np.ndarray]:
        """Token ids of every corpus answer (tokenised once; new answers appended)."""
        if len(self._corpus_tokens) < len(self.corpus):
            self._corpus_tokens += self._tokens(self.corpus[len(self._corpus_tokens):], processor,
                                                (self.prefixes or ("", ""))[1])
        return self._corpus_tokens

    def _id(self, table: dict[str, int], text: str) -> int:
        return table.setdefault(text, len(table))

    def encode(self, frame: pd.DataFrame, processor: Any, labels: list[str]) -> Encoded:
        qp, pp = self.prefixes or ("", "")
        queries = frame[self.opts.query].tolist()
        fields: dict[str, Any] = {"q_ids": self._tokens(queries, processor, qp),
                                  "qid": np.array([self._id(self._query_ids, q) for q in queries], dtype=np.int64)}
        lengths = token_lengths(fields["q_ids"])
        labelled = self.opts.answer in frame
        if labelled:
            answers = frame[self.opts.answer].tolist()
            fields["a_ids"] = self._tokens(answers, processor, pp)
            fields["aid"] = np.array([self._id(self._text_ids, a) for a in answers], dtype=np.int64)
            fields["target"] = np.array([self._corpus_pos[a] for a in answers], dtype=np.int64)
            fields["relevant"] = [sorted(self._relevant.get(q, {t})) for q, t in zip(queries, fields["target"],
                                                                                   strict=True)]
            lengths = lengths + token_lengths(fields["a_ids"])
            neg_col = self.opts.negatives
            if neg_col and neg_col in frame:
                negs = frame[neg_col].tolist()
                fields["n_ids"] = [self._tokens(n, processor, pp) if n else [] for n in negs]
                fields["nid"] = [[self._id(self._text_ids, t) for t in n] for n in negs]
                lengths = lengths + np.array([sum(len(x) for x in n) for n in fields["n_ids"]], dtype=np.int64)
        rows = frame[ROW].to_numpy() if ROW in frame else np.arange(1, len(frame) + 1)
        extra = {"queries": queries, "corpus_ids": self._corpus_ids(processor) if labelled else []}
        return Encoded(fields, lengths, rows, labelled=labelled, extra=extra)

    def _pad(self, seqs: Sequence[np.ndarray], prefix: str) -> dict[str, torch.Tensor]:
        ids, mask = pad_sequences(seqs, self.pad_id)
        return {f"{prefix}input_ids": torch.from_numpy(ids), f"{prefix}attention_mask": torch.from_numpy(mask)}

    def collate(self, enc: Encoded, idx: np.ndarray, train: bool = False) -> dict[str, torch.Tensor]:
        batch = {**self._pad([enc["q_ids"][i] for i in idx], "q_"), "qid": torch.from_numpy(enc["qid"][idx])}
        if "a_ids" in enc:
            batch.update(self._pad([enc["a_ids"][i] for i in idx], "a_"))
            batch["aid"] = torch.from_numpy(enc["aid"][idx])
        if "n_ids" in enc:
            negs = [x for i in idx for x in enc["n_ids"][i]]
            if negs:
                batch.update(self._pad(negs, "n_"))
                batch["nid"] = torch.tensor([x for i in idx for x in enc["nid"][i]], dtype=torch.int64)
        return batch

    def _vectors(self, model: torch.nn.Module, batch: Mapping[str, torch.Tensor], prefix: str) -> torch.Tensor:
        mask = batch[f"{prefix}attention_mask"]
        hidden = model(input_ids=batch[f"{prefix}input_ids"], attention_mask=mask).last_hidden_state
        return pool(hidden, mask, self.opts.pooling)

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        q, a = self._vectors(model, batch, "q_"), self._vectors(model, batch, "a_")
        negs = self._vectors(model, batch, "n_") if "n_input_ids" in batch else None
        return info_nce(q, a, batch["aid"], batch["qid"], self.opts.temperature, negs, batch.get("nid"))

    # ---- scoring -------------------------------------------------------------------------------
    @torch.no_grad()
    def embed(self, model: torch.nn.Module, seqs: Sequence[np.ndarray], device: torch.device,
              dtype: torch.dtype | None, batch_tokens: int = 16384) -> np.ndarray:
        """Normalised vectors float32 [N, D] of token-id sequences, in their order."""
        was_training = model.training
        model.eval()
        chunks: list[tuple[np.ndarray, np.ndarray]] = []
        batcher = BucketBatcher(token_lengths(seqs), batch_size=64, batch_tokens=batch_tokens, shuffle=False)
        for idx in batcher.epoch(0):
            batch = {k: v.to(device) for k, v in self._pad([seqs[i] for i in idx], "").items()}
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                chunks.append((idx, self._vectors(model, batch, "").cpu().numpy()))
        model.train(was_training)
        dim = chunks[0][1].shape[1] if chunks else 0
        out = np.zeros((len(seqs), dim), dtype=np.float32)
        for idx, vec in chunks:
            out[idx] = vec
        return out

    def evaluate(self, model: torch.nn.Module, enc: Encoded, labels: list[str], device: torch.device,
                 dtype: torch.dtype | None) -> dict[str, Any]:
        """Rank the whole corpus for every query of the split (cosine similarity)."""
        corpus = self.embed(model, enc.extra["corpus_ids"], device, dtype)
        queries = self.embed(model, enc["q_ids"], device, dtype)
        scores = queries @ corpus.T
        m = ranking_metrics(scores, enc["relevant"], self.opts.recall_at)
        # Loss as in training with the whole split as one batch (no hard negatives): comparable across steps.
        t = torch.from_numpy
        m["loss"] = float(info_nce(t(queries), t(corpus[enc["target"]]), t(enc["aid"]), t(enc["qid"]),
                                   self.opts.temperature)) if len(enc) > 1 else float("nan")
        m["n"] = len(enc)
        m["corpus_size"] = len(corpus)
        m["failures"] = failures(scores, enc["relevant"], enc.extra["queries"], self.corpus[: len(corpus)])
        return m

    def metrics(self, enc: Encoded, outputs: list[Any], labels: list[str]) -> dict[str, Any]:
        raise NotImplementedError("retrieval scores in evaluate(): it needs the whole corpus, not per-row outputs")

    # ---- use -----------------------------------------------------------------------------------
    def format_predictions(self, outputs: list[Any], labels: list[str], top_k: int) -> list[dict[str, Any]]:
        answers, emb, faiss_index = self.index
        queries = np.stack(outputs).astype(np.float32) if outputs else np.zeros((0, emb.shape[1]), np.float32)
        scores, idx = search(queries, emb, faiss_index, min(top_k, len(answers)))
        out = []
        for s_row, i_row in zip(scores, idx, strict=True):
            top = [{"rank": r + 1, "answer": answers[int(i)], "score": round(float(s), 6)}
                   for r, (s, i) in enumerate(zip(s_row, i_row, strict=True))]
            out.append({"answer": top[0]["answer"], "score": top[0]["score"], "top": top})
        return out

    def predict(self, model: torch.nn.Module, processor: Any, inputs: Sequence[str], labels: list[str],
                device: torch.device, dtype: torch.dtype | None, top_k: int = 3,
                pairs: Sequence[str] | None = None) -> list[dict[str, Any]]:
        if not inputs:
            return []
        ids = self._tokens([str(t) for t in inputs], processor, (self.prefixes or ("", ""))[0])
        return self.format_predictions(list(self.embed(model, ids, device, dtype)), labels, top_k)

    def report_sections(self, scores: Mapping[str, Mapping[str, Any]]) -> list[tuple[str, str]]:
        return retrieval_sections(scores)

    def render(self, console: Any, metrics: Mapping[str, Any], title: str) -> None:
        render_retrieval(console, metrics, title)


# ---- the saved index ----------------------------------------------------------------------------
def save_index(dest: Path, answers: Sequence[str], embeddings: np.ndarray) -> None:
    """Write ``answers.jsonl`` (one {"answer": text} per line) and ``embeddings.npy`` (float32 [N, D])."""
    dest.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"answer": a}, ensure_ascii=False) for a in answers]
    (dest / "answers.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    np.save(dest / "embeddings.npy", np.ascontiguousarray(embeddings, dtype=np.float32))


def load_index(src: Path) -> tuple[list[str], np.ndarray, Any]:
    """(answers, embeddings [N, D], a FAISS ``IndexFlatIP`` or None when faiss is not installed)."""
    from taskfit.errors import NotFittedError

    if not (src / "answers.jsonl").is_file() or not (src / "embeddings.npy").is_file():
        raise NotFittedError(f"{str(src)!r} has no answer index (answers.jsonl + embeddings.npy); retrain or "
                             "save the model again with taskfit.")
    answers = [json.loads(ln)["answer"] for ln in (src / "answers.jsonl").read_text(encoding="utf-8").splitlines()
               if ln.strip()]
    emb = np.load(src / "embeddings.npy").astype(np.float32)
    try:
        import faiss  # optional: exact inner-product search, faster on large corpora
    except ImportError:
        return answers, emb, None
    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    return answers, emb, index


def search(queries: np.ndarray, emb: np.ndarray, index: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` (scores [Q, k], indices [Q, k]) by inner product (cosine for normalised vectors)."""
    if index is not None:
        scores, idx = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return scores, idx
    sims = queries @ emb.T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, idx, axis=1), idx


TASKS.register("retrieval")(Retrieval)
