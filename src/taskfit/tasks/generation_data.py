"""Generation data: reading conversations, formatting them for a causal LM, response-only targets, packing.

A row is either a ``prompt`` / ``response`` pair or a ``messages`` list (``[{"role": "user", "content": ...},
{"role": "assistant", "content": ...}, ...]``; a JSON string in CSV/TSV, a list in JSONL/JSON/Parquet).
Every row becomes a conversation (a list of messages) in the frame column :data:`MESSAGES`.

Formatting uses the tokenizer's chat template when it has one (``task.chat_template``), else a plain
``### Instruction: / ### Response:`` layout that ends each answer with the EOS token. Only assistant turns
are trained: a token is supervised when it lies in an assistant message's content or its end-of-turn /
EOS token; the system prompt, user turns and template markup get the target -100.

Targets are stored already shifted (``targets[t]`` is the token the model must predict *after* position
``t``, -100 after the last position), so examples can be concatenated (packed) without one example's
last token learning to predict the next example's first.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from taskfit.config import DataConfig, GenerationOptions
from taskfit.data.checks import SOURCE
from taskfit.data.readers import ROW, read_table
from taskfit.errors import DataError

MESSAGES = "_messages"
ROLES = ("system", "user", "assistant")
IGNORE = -100


# ---- reading ---------------------------------------------------------------------------------------
def _bad_messages(value: Any) -> str | None:
    """Why ``value`` is not a usable message list (None when it is fine)."""
    if not isinstance(value, list) or not value:
        return "not a non-empty list"
    for m in value:
        if not isinstance(m, dict) or set(m) - {"role", "content"} or "role" not in m or "content" not in m:
            return 'an item is not {"role": ..., "content": ...}'
        if m["role"] not in ROLES:
            return f"unknown role {m['role']!r} (expected one of {', '.join(ROLES)})"
        if not isinstance(m["content"], str) or not m["content"].strip():
            return f"a {m['role']} message has empty content"
    if value[-1]["role"] != "assistant":
        return "the last message is not from the assistant (nothing to learn)"
    return None


def parse_messages(frame: pd.DataFrame, column: str, source: Path) -> list[list[dict[str, str]]]:
    """The ``column`` of every row as a message list.

    Raises:
        DataError: naming the rows that are not valid JSON or not a list of {role, content} messages.
    """
    out: list[list[dict[str, str]]] = []
    bad: dict[int, str] = {}
    for value, row in zip(frame[column], frame[ROW], strict=True):
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as e:
                bad[int(row)] = f"not valid JSON ({e.msg} at character {e.pos})"
                continue
        if isinstance(value, np.ndarray):  # Parquet list columns
            value = value.tolist()
        why = _bad_messages(value)
        if why:
            bad[int(row)] = why
            continue
        out.append([{"role": m["role"], "content": m["content"].strip()} for m in value])
    if bad:
        first = next(iter(bad.items()))
        raise DataError(f"{len(bad)} row(s) have unusable chat messages (row {first[0]}: {first[1]}). Each value must "
                        'be a JSON list like [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": '
                        '"Hello!"}] ending with an assistant message.', source=source, column=column, rows=list(bad))
    return out


def read_conversations(path: Path, opts: GenerationOptions, data: DataConfig, labelled: bool = True) -> pd.DataFrame:
    """Read one file into a frame with :data:`MESSAGES`, ``_row`` and ``_source`` columns.

    Raises:
        DataError: missing columns, malformed messages, or empty prompts / responses (naming the rows).
    """
    df = read_table(path, limit=data.limit, row_numbers=True)
    need = [opts.messages] if opts.messages else [opts.prompt] + ([opts.response] if labelled else [])
    missing = [c for c in need if c not in df.columns]
    if missing:
        raise DataError(f"column(s) {missing} not found; available columns: "
                        f"{', '.join(c for c in df.columns if c != ROW)}. Set task.prompt / task.response or "
                        "task.messages.", source=path)
    if opts.messages:
        convs = parse_messages(df, opts.messages, path)
    else:
        convs = _pairs(df, opts, path, labelled)
    out = pd.DataFrame({MESSAGES: convs, ROW: df[ROW].to_numpy()})
    out[SOURCE] = str(path)
    return out


def _pairs(df: pd.DataFrame, opts: GenerationOptions, path: Path, labelled: bool) -> list[list[dict[str, str]]]:
    cols = [opts.prompt, opts.response] if labelled else [opts.prompt]
    text = {c: df[c].map(lambda v: "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip())
            for c in cols}
    for c in cols:
        empty = text[c] == ""
        if empty.any():
            raise DataError(f"{int(empty.sum())} row(s) have an empty {'prompt' if c == opts.prompt else 'response'};"
                            " every example needs both. Fill or remove these rows.", source=path, column=c,
                            rows=[int(r) for r in df.loc[empty, ROW]])
    convs = []
    for i in range(len(df)):
        conv = [{"role": "user", "content": text[opts.prompt].iloc[i]}]
        if labelled:
            conv.append({"role": "assistant", "content": text[opts.response].iloc[i]})
        convs.append(conv)
    return convs


def last_turns(conv: Sequence[dict[str, str]]) -> tuple[str, str]:
    """(last user message, last assistant message) of a conversation, for reports."""
    user = next((m["content"] for m in reversed(conv) if m["role"] == "user"), "")
    reply = conv[-1]["content"] if conv and conv[-1]["role"] == "assistant" else ""
    return user, reply


# ---- formatting ------------------------------------------------------------------------------------
class Formatter:
    """Turns conversations into text with the character spans to supervise, and prompts to generate from."""

    def __init__(self, tokenizer: Any, opts: GenerationOptions) -> None:
        self.tok = tokenizer
        self.system = opts.system
        self.template = bool(opts.chat_template and getattr(tokenizer, "chat_template", None))
        self.eos = tokenizer.eos_token or ""

    def _with_system(self, conv: Sequence[dict[str, str]]) -> list[dict[str, str]]:
        conv = list(conv)
        if self.system and (not conv or conv[0]["role"] != "system"):
            conv.insert(0, {"role": "system", "content": self.system})
        return conv

    def _chat(self, conv: Sequence[dict[str, str]], open_reply: bool) -> str:
        if self.template:
            return str(self.tok.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=open_reply))
        parts = []
        for m in conv:
            if m["role"] == "system":
                parts.append(f"{m['content']}\n\n")
            elif m["role"] == "user":
                parts.append(f"### Instruction:\n{m['content']}\n\n")
            else:
                parts.append(f"### Response:\n{m['content']}{self.eos}\n\n")
        return "".join(parts) + ("### Response:\n" if open_reply else "")

    def render(self, conv: Sequence[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
        """The whole conversation as text, and the ``(start, end)`` character span of each assistant reply
        (its content plus the end-of-turn / EOS marker, without trailing whitespace)."""
        conv = self._with_system(conv)
        full = self._chat(conv, open_reply=False)
        spans = []
        for i, m in enumerate(conv):
            if m["role"] != "assistant":
                continue
            before = self._chat(conv[:i], open_reply=True)
            through = self._chat(conv[: i + 1], open_reply=False).rstrip()
            if not (full.startswith(through) and through.startswith(before)):
                raise DataError("the tokenizer's chat template does not render conversations turn by turn "
                                "(a shorter conversation is not a prefix of a longer one), so the answer tokens "
                                "cannot be found. Set task.chat_template: false to use the plain template.")
            spans.append((len(before), len(through)))
        return full, spans

    def prompt(self, conv: Sequence[dict[str, str]]) -> str:
        """The text to generate the conversation's last reply from (everything before it, reply opened)."""
        conv = self._with_system(conv)
        if conv and conv[-1]["role"] == "assistant":
            conv = conv[:-1]
        return self._chat(conv, open_reply=True)

    def tokenize(self, text: str, offsets: bool = False) -> Any:
        # A chat template writes its own special tokens; the plain layout relies on the tokenizer's (BOS).
        return self.tok(text, add_special_tokens=not self.template, return_offsets_mapping=offsets)

    def stop_ids(self, model_eos: Any = None) -> list[int]:
        """Token ids that end a reply: the tokenizer's EOS, the model's, and ChatML's ``<|im_end|>``."""
        ids = {self.tok.eos_token_id} if self.tok.eos_token_id is not None else set()
        ids |= set(model_eos if isinstance(model_eos, list) else [model_eos] if model_eos is not None else [])
        if self.template:
            end = self.tok.convert_tokens_to_ids("<|im_end|>")
            if isinstance(end, int) and end != self.tok.unk_token_id:
                ids.add(end)
        return sorted(i for i in ids if isinstance(i, int))


def supervised_example(fmt: Formatter, conv: Sequence[dict[str, str]], max_length: int
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Token ids [n] and shifted targets [n] of one conversation, truncated to ``max_length`` tokens.

    ``targets[t] = ids[t + 1]`` when token ``t + 1`` belongs to an assistant reply, else -100.
    """
    text, spans = fmt.render(conv)
    enc = fmt.tokenize(text, offsets=True)
    ids = np.asarray(enc["input_ids"], dtype=np.int64)[:max_length]
    offs = np.asarray(enc["offset_mapping"], dtype=np.int64).reshape(-1, 2)[: len(ids)]
    sup = np.zeros(len(ids), dtype=bool)
    for start, end in spans:
        # a token is an answer token when its characters start inside the reply's span
        sup |= (offs[:, 0] >= start) & (offs[:, 0] < end) & (offs[:, 1] > offs[:, 0])
    targets = np.full(len(ids), IGNORE, dtype=np.int64)
    targets[:-1] = np.where(sup[1:], ids[1:], IGNORE)
    return ids, targets


# ---- batching --------------------------------------------------------------------------------------
def first_fit(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Group items (by position) into bins of at most ``capacity`` tokens, longest first (first-fit decreasing)."""
    bins: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for b, free in enumerate(room):
            if lengths[i] <= free:
                bins[b].append(i)
                room[b] -= lengths[i]
                break
        else:
            bins.append([i])
            room.append(capacity - lengths[i])
    return bins


def pack(ids: Sequence[np.ndarray], targets: Sequence[np.ndarray], capacity: int, pad_id: int
         ) -> dict[str, torch.Tensor]:
    """Pack examples into rows of at most ``capacity`` tokens with no attention between examples.

    Returns:
        ``input_ids`` [R, L], ``labels`` [R, L] (shifted targets, -100 on padding), ``position_ids`` [R, L]
        (restarting at 0 for each example) and ``attention_mask`` [R, 1, L, L]: an additive float mask,
        0 where a token may attend (earlier tokens of its own example) and the float minimum elsewhere.
        A float mask works with both eager and SDPA attention (a boolean 4D mask does not with eager).
    """
    bins = first_fit([len(x) for x in ids], capacity)
    width = max(sum(len(ids[i]) for i in b) for b in bins)
    rows = len(bins)
    out_ids = np.full((rows, width), pad_id, dtype=np.int64)
    out_tgt = np.full((rows, width), IGNORE, dtype=np.int64)
    pos = np.zeros((rows, width), dtype=np.int64)
    seg = np.full((rows, width), -1, dtype=np.int64)
    for r, b in enumerate(bins):
        at = 0
        for k, i in enumerate(b):
            n = len(ids[i])
            out_ids[r, at:at + n], out_tgt[r, at:at + n] = ids[i], targets[i]
            pos[r, at:at + n], seg[r, at:at + n] = np.arange(n), k
            at += n
        pos[r, at:] = np.arange(width - at)  # padding: its own segment, so no row is fully masked
    segs = torch.from_numpy(seg)
    allowed = (segs[:, :, None] == segs[:, None, :]) & torch.ones(width, width, dtype=torch.bool).tril()
    mask = torch.zeros(allowed.shape, dtype=torch.float32).masked_fill(~allowed, torch.finfo(torch.float32).min)
    return {"input_ids": torch.from_numpy(out_ids), "labels": torch.from_numpy(out_tgt),
            "position_ids": torch.from_numpy(pos), "attention_mask": mask[:, None]}


def left_pad(seqs: Sequence[np.ndarray], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts left-padded for batched generation: ids [B, L] and attention mask [B, L]."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), pad_id, dtype=np.int64)
    mask = np.zeros((len(seqs), width), dtype=np.int64)
    for r, s in enumerate(seqs):
        ids[r, width - len(s):] = s
        mask[r, width - len(s):] = 1
    return torch.from_numpy(ids), torch.from_numpy(mask)
