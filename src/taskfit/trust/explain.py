"""Why did the model say that? Integrated gradients (captum) over the input embeddings, per word.

For one text, :func:`explain_texts` interpolates the word embeddings from a baseline (every ordinary token
replaced by the pad token; [CLS]/[SEP] and their XLM-R counterparts kept, so only the words are "removed")
to the real input and integrates the gradient of the explained output: the probability of the target label
(softmax for text_classification, sigmoid for multi_label) or the predicted score (regression). The token
attributions sum to f(input) − f(baseline) up to captum's convergence delta, which is reported.

Tokens are merged into words through the tokenizer's character offsets, not its word ids, so WordPiece
(MiniLM/BERT) and SentencePiece (e5/XLM-R) read the same: Latin words are runs of letters and digits
(``isn't`` is one word), punctuation marks stand alone, and every Chinese/Japanese/Korean character is its
own word (a SentencePiece piece such as "手机" shares its attribution equally between its characters). The
last layer's attention from the first token ([CLS]/<s>), averaged over heads, is reported per word too; it
needs eager attention, so an SDPA model is switched to eager for that one forward pass and back.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from taskfit.errors import DataError, IncompatibleError

if TYPE_CHECKING:
    import pandas as pd

    from taskfit.tasks.base import Task

SUPPORTED_TASKS = ("text_classification", "multi_label", "regression")
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
# one CJK character | a run of letters/digits (with inner apostrophes) | one other visible character
_WORD = re.compile(rf"[{_CJK}]|[^\W{_CJK}_]+(?:['’][^\W{_CJK}_]+)*|[^\s]")


def unsupported_reason(task: Task) -> str | None:
    """Why :func:`sample_explanations` cannot explain this task's model (None when it can)."""
    if task.name != "text_classification":
        return (f"explanations of right and wrong predictions cover text_classification; task {task.name!r} is "
                "not supported (use explain_texts / `taskfit explain` for multi_label and regression).")
    if task.text_pair:
        return "explanations cover single-text models; this model reads text pairs."
    return None


def word_spans(text: str) -> list[tuple[int, int]]:
    """Character spans ``(start, end)`` of the words of ``text`` (see the module docstring)."""
    return [m.span() for m in _WORD.finditer(text)]


def merge_to_words(text: str, offsets: Sequence[tuple[int, int]], scores: np.ndarray
                   ) -> list[dict[str, Any]]:
    """Sum per-token scores [T] into the words of ``text``.

    A token's score is split over the words it covers in proportion to the non-space characters it covers
    there (special tokens have empty offsets and are skipped). Words no token covers (cut by truncation) get
    ``score`` None.

    Returns:
        ``[{"word", "start", "end", "score"}]`` in text order.
    """
    spans = word_spans(text)
    owner = np.full(len(text), -1, dtype=np.int64)
    for w, (s, e) in enumerate(spans):
        owner[s:e] = w
    total = np.zeros(len(spans))
    seen = np.zeros(len(spans), dtype=bool)
    for (s, e), score in zip(offsets, scores, strict=True):
        covered = owner[s:e][owner[s:e] >= 0]
        if not len(covered):
            continue
        words, counts = np.unique(covered, return_counts=True)
        total[words] += float(score) * counts / counts.sum()
        seen[words] = True
    return [{"word": text[s:e], "start": s, "end": e, "score": float(total[w]) if seen[w] else None}
            for w, (s, e) in enumerate(spans)]


def _target_index(task: Task, labels: list[str], target: str | None, predicted: int) -> int:
    if task.name == "regression":
        return 0
    if target is None:
        return predicted
    if target not in labels:
        raise DataError(f"target label {target!r} is not one of the model's labels: {', '.join(labels)}. "
                        "Pass one of them (or no target to explain the predicted label).")
    return labels.index(target)


def _scores_fn(task: Task, model: torch.nn.Module) -> Any:
    """(forward, transform): forward(input_ids, attention_mask[, token_type_ids]) -> [B, C] outputs that IG
    explains; transform maps the model's logits [B, C] to them."""
    to_scale = getattr(task, "to_scale", None)

    def transform(logits: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        if task.name == "text_classification":
            return torch.softmax(logits, dim=-1)
        if task.name == "multi_label":
            return torch.sigmoid(logits)
        return to_scale(logits[:, :1]) if to_scale is not None else logits[:, :1]

    def forward(input_ids: torch.Tensor, attention_mask: torch.Tensor,
                token_type_ids: torch.Tensor | None = None) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None else {}
        return transform(model(input_ids=input_ids, attention_mask=attention_mask, **extra).logits)

    return forward, transform


def _first_pass(model: torch.nn.Module, transform: Any, inputs: dict[str, torch.Tensor]
                ) -> tuple[torch.Tensor, np.ndarray | None]:
    """One forward pass over a batch of [input, baseline] ([2, T] tensors): their explained outputs [2, C]
    and the input's last-layer attention from the first token, mean over heads, [T] (None if unavailable)."""
    config = getattr(model, "config", None)
    before = getattr(config, "_attn_implementation", None)
    setter = getattr(model, "set_attn_implementation", None)
    switch = before not in (None, "eager") and setter is not None
    try:
        if switch:
            setter("eager")  # type: ignore[misc]  # SDPA kernels return no attention weights
        with torch.no_grad():
            out = model(**inputs, output_attentions=True)
    finally:
        if switch:
            setter(before)  # type: ignore[misc]
    att = getattr(out, "attentions", None)
    first = None if not att or att[-1] is None else att[-1][0].float().mean(dim=0)[0].cpu().numpy()
    return transform(out.logits), first


def explain_texts(task: Task, model: torch.nn.Module, processor: Any, labels: list[str], texts: Sequence[str],
                  device: torch.device, target: str | None = None, steps: int = 32) -> list[dict[str, Any]]:
    """Integrated-gradients attributions of each text's tokens and words.

    Args:
        task: a text_classification, multi_label or regression task.
        model: its model (plain or PEFT-wrapped), on ``device``.
        processor: the fast tokenizer (offsets are needed to map tokens to words).
        labels: the label names (empty for regression).
        texts: the inputs, explained one at a time.
        target: label to explain (default: each text's predicted label).
        steps: integration steps (more = smaller convergence delta, slower).

    Returns:
        Per text: ``text``, ``label`` / ``probability`` (predicted; ``prediction`` for regression), ``target``,
        ``target_score`` (f(x) of the target), ``baseline_score``, ``attribution_sum``, ``delta``, ``tokens``
        ``[{"token", "start", "end", "score", "attention"}]``, ``words`` ``[{"word", "start", "end", "score",
        "attention"}]`` and ``truncated``.

    Raises:
        IncompatibleError: another task, a text-pair model, or a tokenizer without character offsets.
        DataError: ``target`` is not one of ``labels``.
    """
    from captum.attr import LayerIntegratedGradients

    if task.name not in SUPPORTED_TASKS:
        raise IncompatibleError(f"explain: task {task.name!r} cannot be explained per token; supported tasks: "
                                f"{', '.join(SUPPORTED_TASKS)}.")
    if task.text_pair:
        raise IncompatibleError("explain: this model reads text pairs; explanations cover single-text models.")
    if not getattr(processor, "is_fast", False):
        raise IncompatibleError("explain: the tokenizer has no character offsets (not a fast tokenizer).")
    if target is not None and task.name != "regression":
        _target_index(task, labels, target, 0)  # a bad label fails before any work
    forward, transform = _scores_fn(task, model)
    was_training = model.training
    model.eval()  # dropout off: IG needs a deterministic function
    lig = LayerIntegratedGradients(forward, model.get_input_embeddings())  # type: ignore[operator]
    special = set(processor.all_special_ids) - {processor.unk_token_id}
    pad = processor.pad_token_id if processor.pad_token_id is not None else 0
    out = []
    try:
        for text in texts:
            enc = processor(str(text), truncation=True, max_length=task.max_length, return_offsets_mapping=True,
                            return_tensors="pt")
            offsets = [(int(a), int(b)) for a, b in enc.pop("offset_mapping")[0].tolist()]
            inputs = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask",
                                                                       "token_type_ids")}
            ids = inputs["input_ids"]
            keep = torch.tensor([int(i) in special for i in ids[0].tolist()], device=device)
            baseline = torch.where(keep, ids, torch.full_like(ids, pad))
            args = (inputs["attention_mask"], inputs.get("token_type_ids"))
            pair = {k: torch.cat([v, v]) for k, v in inputs.items()}  # row 0: the text, row 1: its baseline
            pair["input_ids"] = torch.cat([ids, baseline])
            both, att = _first_pass(model, transform, pair)
            scores, base_scores = both[0], both[1]
            predicted = int(scores.argmax()) if task.name != "regression" else 0
            k = _target_index(task, labels, target, predicted)
            attr, delta = lig.attribute(ids, baselines=baseline, additional_forward_args=args, target=k,
                                        n_steps=steps, internal_batch_size=steps, return_convergence_delta=True)
            tok_scores = attr[0].sum(dim=-1).detach().float().cpu().numpy()  # [T]
            out.append(_record(task, labels, str(text), processor, ids[0].tolist(), offsets, tok_scores, att,
                               scores, base_scores, predicted, k, float(delta.reshape(-1)[0])))
    finally:
        model.train(was_training)
    return out


def _record(task: Task, labels: list[str], text: str, processor: Any, ids: list[int],
            offsets: list[tuple[int, int]], tok_scores: np.ndarray, att: np.ndarray | None, scores: torch.Tensor,
            base_scores: torch.Tensor, predicted: int, k: int, delta: float) -> dict[str, Any]:
    words = merge_to_words(text, offsets, tok_scores)
    if att is not None:
        for w, a in zip(words, merge_to_words(text, offsets, att), strict=True):
            w["attention"] = a["score"]
    tokens = [{"token": t, "start": s, "end": e, "score": float(v),
               "attention": None if att is None else float(att[i])}
              for i, (t, (s, e), v) in enumerate(zip(processor.convert_ids_to_tokens(ids), offsets, tok_scores,
                                                     strict=True))]
    last = max((e for _, e in offsets), default=0)
    rec: dict[str, Any] = {"text": text, "target": labels[k] if labels else "score",
                           "target_score": float(scores[k]), "baseline_score": float(base_scores[k]),
                           "attribution_sum": float(tok_scores.sum()), "delta": delta, "tokens": tokens,
                           "words": words, "truncated": any(w["start"] >= last for w in words)}
    if task.name == "regression":
        rec["prediction"] = float(scores[0])
    else:
        rec.update(label=labels[predicted], probability=float(scores[predicted]))
    return rec


def sample_explanations(task: Task, model: torch.nn.Module, processor: Any, labels: list[str],
                        frame: pd.DataFrame, device: torch.device, n_correct: int = 3, n_wrong: int = 3,
                        max_rows: int = 256, steps: int = 32) -> list[dict[str, Any]]:
    """Explain the most confident correct and wrong predictions among the first ``max_rows`` labelled rows
    of ``frame`` (text_classification); each record gains ``true_label`` and ``correct``."""
    problem = unsupported_reason(task)
    if problem:
        raise IncompatibleError(f"explain: {problem}")
    rows = frame.head(max_rows)
    enc = task.encode(rows, processor, labels)
    probs = task.probabilities(task.run_outputs(model, enc, device, None))  # [N, C]
    pred, conf, truth = probs.argmax(axis=1), probs.max(axis=1), np.asarray(enc["targets"])
    order = np.argsort(-conf, kind="stable")  # confident mistakes are the ones worth a reviewer's time
    picked = [i for i in order if pred[i] == truth[i]][:n_correct] + [i for i in order if pred[i] != truth[i]][:n_wrong]
    texts = [str(rows[task.text].iloc[i]) for i in picked]
    out = explain_texts(task, model, processor, labels, texts, device, steps=steps)
    for rec, i in zip(out, picked, strict=True):
        rec.update(true_label=labels[truth[i]], correct=bool(pred[i] == truth[i]))
    return out


# ---- rendering -------------------------------------------------------------------------------------
def fmt_score(v: float) -> str:
    """A signed attribution readable at any size (IG scores of a weak model can be 1e-6)."""
    return f"{v:+.4f}" if v == 0 or abs(v) >= 1e-3 else f"{v:+.1e}"


def _background(score: float | None, scale: float) -> str:
    if score is None or scale <= 0:
        return "transparent"
    a = 0.08 + 0.72 * min(abs(score) / scale, 1.0)
    return f"rgba(26,127,55,{a:.2f})" if score > 0 else f"rgba(207,34,46,{a:.2f})"


def _highlight(text: str, words: list[dict[str, Any]], key: str, colour: Any) -> str:
    vals = [abs(w[key]) for w in words if w.get(key) is not None]
    scale = max(vals, default=0.0)
    parts, pos = [], 0
    for w in words:
        parts.append(html.escape(text[pos:w["start"]]))
        v = w.get(key)
        shown = "" if v is None else (f"{v:.3f}" if key == "attention" else fmt_score(v))
        tip = "not read (truncated)" if v is None else f"{key} {shown}"
        parts.append(f'<span style="background:{colour(v, scale)};border-radius:3px;padding:0 1px" '
                     f'title="{html.escape(tip, quote=True)}">{html.escape(w["word"])}</span>')
        pos = w["end"]
    parts.append(html.escape(text[pos:]))
    return "".join(parts)


def _blue(v: float | None, scale: float) -> str:
    return "transparent" if v is None or scale <= 0 else f"rgba(9,105,218,{0.05 + 0.6 * v / scale:.2f})"


def explanation_html(expl: dict[str, Any]) -> str:
    """One explanation as trusted HTML: the text with each word's background green (supports the explained
    label) or red (speaks against it), stronger for larger scores; hover shows the score. All text escaped."""
    esc = html.escape
    if "label" in expl:
        head = f"predicted <b>{esc(expl['label'])}</b> ({expl['probability']:.3f})"
        if "true_label" in expl:
            head += f" · true <b>{esc(expl['true_label'])}</b>"
        head += f" · explained: <b>{esc(expl['target'])}</b> (p {expl['target_score']:.3f})"
    else:
        head = f"predicted score <b>{expl['prediction']:.4f}</b>"
    head += (f" · baseline {expl['baseline_score']:.3f} · sum of attributions {fmt_score(expl['attribution_sum'])}"
             f" · IG delta {expl['delta']:+.2e}" + (" · text truncated" if expl.get("truncated") else ""))
    body = (f'<p class="sub">{head}</p><p style="line-height:1.9">'
            f"{_highlight(expl['text'], expl['words'], 'score', _background)}</p>")
    if any(w.get("attention") is not None for w in expl["words"]):
        body += ('<p class="sub" style="line-height:1.9">attention: '
                 f"{_highlight(expl['text'], expl['words'], 'attention', _blue)}</p>")
    return f'<div style="margin-bottom:1em">{body}</div>'


def explanation_section(explanations: Sequence[dict[str, Any]]) -> tuple[str, str]:
    """Report section (title, trusted html) of explanations, correct and wrong predictions apart."""
    intro = ("<p>Integrated gradients (captum) over the input embeddings, from a baseline with every word "
             "replaced by padding: green words raise the explained label's probability, red words lower it; the "
             "attributions add up to the change from the baseline (IG delta = what they miss). The blue line is "
             "the last layer's attention from the first token, averaged over heads.</p>")
    groups: dict[str, list[dict[str, Any]]] = {"Correct predictions": [], "Wrong predictions": [],
                                                "Explained texts": []}
    for e in explanations:
        key = "Explained texts" if "correct" not in e else (
            "Correct predictions" if e["correct"] else "Wrong predictions")
        groups[key].append(e)
    body = "".join(f"<h3>{title}</h3>" + "".join(explanation_html(e) for e in items)
                   for title, items in groups.items() if items)
    return "Explanations (integrated gradients)", intro + (body or "<p>No rows to explain.</p>")
