"""Running the attack suite of :mod:`taskfit.trust.attacks` against a model, and its report section.

:func:`run_attacks` (a labelled frame) / :func:`attack_texts` (texts and labels) attack each row the model
classifies correctly with up to ``tries`` independent random perturbations (random search; the search for a
row stops at its first flip) and report per attack: clean accuracy, accuracy under attack, attack success
rate (flipped / correctly classified rows), mean perturbation size (share of characters edited, over the
successful attacks) and a few examples. Attacks edit only the part of a text the model reads (before
truncation at the task's ``max_length``). The functions take the task, model and tokenizer, not a
Predictor, so they work on a model in memory (benchmarks, the audit) as well as on a saved run.
"""

from __future__ import annotations

import random
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from markupsafe import Markup, escape

from taskfit.errors import ConfigError, IncompatibleError
from taskfit.trust.attacks import ATTACKS, DEFAULT_ATTACKS, AttackContext, SynonymTable, text_language

if TYPE_CHECKING:
    from taskfit.tasks.base import Task


# ---- the runner ------------------------------------------------------------------------------------------
def unsupported_reason(task: Task) -> str | None:
    """Why the attack suite cannot measure this task's model (None when it can)."""
    if task.name == "text_classification":
        return None
    return (f"The attack suite measures text_classification models (an attack succeeds when the predicted label "
            f"flips); this model's task is {task.name!r}.")


def predict_indices(task: Task, model: torch.nn.Module, processor: Any, labels: list[str], device: torch.device,
                    texts: list[str], pairs: list[str] | None = None,
                    dtype: torch.dtype | None = None) -> np.ndarray:
    """The predicted label index of every text, int [N]."""
    if not texts:
        return np.zeros(0, dtype=np.int64)
    enc = task.encode(task.input_frame(texts, pairs), processor, labels)
    return task.probabilities(task.run_outputs(model, enc, device, dtype)).argmax(axis=1)  # type: ignore[no-any-return]


def check_attacks(names: Sequence[str], lang: str) -> list[str]:
    """Validate attack names for data in ``lang``; raise ConfigError naming each problem."""
    problems = []
    for name in names:
        if name not in ATTACKS:
            problems.append(f"attacks: unknown attack {name!r}; available: {', '.join(ATTACKS.names())}.")
        elif lang not in ATTACKS.get(name).languages:
            problems.append(f"attacks: attack {name!r} works on {'/'.join(ATTACKS.get(name).languages)} text, but "
                            f"the data is {lang}; drop it from --attacks.")
    if not names:
        problems.append("attacks: no attack chosen; name at least one, e.g. typo.")
    if problems:
        raise ConfigError("Cannot run these attacks:", problems)
    return list(names)


def perturbation_size(original: str, perturbed: str) -> float:
    """Share of characters edited: 1 − the difflib similarity ratio (one replaced char of 50 ≈ 0.02)."""
    return 1.0 - SequenceMatcher(None, original, perturbed, autojunk=False).ratio()


def run_attacks(task: Task, model: torch.nn.Module, processor: Any, labels: list[str], device: torch.device,
                frame: pd.DataFrame, *, names: Sequence[str] | None = None, rows: int | None = None,
                budget: float = 0.15, tries: int = 5, seed: int = 0, dtype: torch.dtype | None = None,
                examples: int = 3, on_progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """:func:`attack_texts` on a labelled frame (the task's text / text-pair / label columns), on at most
    ``rows`` of its rows (a seeded sample)."""
    reason = unsupported_reason(task)
    if reason:
        raise IncompatibleError(reason)
    if rows is not None and len(frame) > rows:
        frame = frame.sample(n=rows, random_state=seed).sort_index()
    pairs = [str(x) for x in frame[task.text_pair]] if task.text_pair else None
    return attack_texts(task, model, processor, labels, device, [str(x) for x in frame[task.text]],
                        [str(x) for x in frame[task.label]], pairs=pairs, names=names, budget=budget, tries=tries,
                        seed=seed, dtype=dtype, examples=examples, on_progress=on_progress)


def attack_texts(task: Task, model: torch.nn.Module, processor: Any, labels: list[str], device: torch.device,
                 texts: Sequence[str], targets: Sequence[str], *, pairs: Sequence[str] | None = None,
                 names: Sequence[str] | None = None, budget: float = 0.15, tries: int = 5, seed: int = 0,
                 dtype: torch.dtype | None = None, examples: int = 3,
                 on_progress: Callable[[str, int], None] | None = None) -> dict[str, Any]:
    """Attack every row the model classifies correctly; see the module docstring for the measures.

    Args:
        texts, targets: the rows and their true label names (each among ``labels``); ``pairs`` stay unchanged.
        names: attack registry names (default by the language of the texts: :data:`DEFAULT_ATTACKS`).
        budget: the fraction of units (words / characters) an attack may change, in (0, 1].
        tries: random perturbations tried per row (the search stops at the row's first flip).
        examples: successful attacks kept per attack (original → perturbed).
        on_progress: called with (attack name, try number) after each round.

    Returns:
        JSON-able: ``language``, ``rows``, ``clean_accuracy``, ``budget``, ``tries``, ``seed`` and ``attacks``, a
        list of dicts (``name``, ``accuracy_under_attack``, ``success_rate``, ``mean_perturbation``, ...).

    Raises:
        IncompatibleError: a task other than text_classification. ConfigError: bad attacks, budget or labels.
    """
    reason = unsupported_reason(task)
    if reason:
        raise IncompatibleError(reason)
    if not 0 < budget <= 1:
        raise ConfigError(f"budget must be in (0, 1] (a fraction of words / characters), got {budget}.")
    if tries < 1:
        raise ConfigError(f"tries must be at least 1, got {tries}.")
    index = {lab: i for i, lab in enumerate(labels)}
    unknown = sorted({t for t in targets if t not in index})
    if unknown:
        raise ConfigError(f"labels {unknown[:5]} are not among the model's labels {labels}.")
    texts = [str(t) for t in texts]
    lang = text_language(texts)
    names = check_attacks(list(names or DEFAULT_ATTACKS[lang]), lang)
    gold = np.array([index[t] for t in targets], dtype=np.int64)
    pair_list = list(pairs) if pairs is not None else None

    def predict(xs: list[str], idx: list[int]) -> np.ndarray:
        ps = [pair_list[i] for i in idx] if pair_list is not None else None
        return predict_indices(task, model, processor, labels, device, xs, ps, dtype)

    clean = predict(texts, list(range(len(texts))))
    correct = [i for i in range(len(texts)) if clean[i] == gold[i]]
    search = _Search(texts, gold, correct, _visible_lengths(processor, texts, task.max_length), predict, labels)
    ctx = AttackContext(lang, SynonymTable(model, processor) if "synonym" in names else None)
    return {"language": lang, "rows": len(texts), "clean_accuracy": len(correct) / max(1, len(texts)),
            "budget": budget, "tries": tries, "seed": seed,
            "attacks": [search.run(name, ctx, budget, tries, seed, examples, on_progress) for name in names]}


def _visible_lengths(tokenizer: Any, texts: list[str], max_length: int) -> list[int]:
    """Characters of each text the model reads before truncation: attacks edit only those."""
    try:
        enc = tokenizer(texts, truncation=True, max_length=max_length, return_offsets_mapping=True)
        return [max((e for _, e in offs), default=len(t)) for offs, t in zip(enc["offset_mapping"], texts,
                                                                          strict=True)]
    except (NotImplementedError, TypeError, KeyError):  # a slow tokenizer has no offsets: edit anywhere
        return [len(t) for t in texts]


@dataclass
class _Search:
    """Random search over perturbations of the correctly classified rows, one attack at a time."""

    texts: list[str]
    gold: np.ndarray  # int [N] true label index
    correct: list[int]  # rows the model gets right unperturbed
    visible: list[int]  # characters of each text the model reads
    predict: Callable[[list[str], list[int]], np.ndarray]
    labels: list[str]

    def run(self, name: str, ctx: AttackContext, budget: float, tries: int, seed: int, examples: int,
            on_progress: Callable[[str, int], None] | None) -> dict[str, Any]:
        perturb = ATTACKS.get(name).perturb
        rng = random.Random(seed * 1_000_003 + zlib.crc32(name.encode()))  # each attack its own stream
        alive, changed, queries, t0 = list(self.correct), set(), 0, time.perf_counter()
        flips: dict[int, tuple[str, int]] = {}
        for attempt in range(tries):
            batch, idx = [], []
            for i in alive:
                text, cut = self.texts[i], self.visible[i]
                new = perturb(text[:cut], rng, budget, ctx) + text[cut:]
                if new != text:  # an attack that finds nothing to change in a row does not query the model
                    batch.append(new)
                    idx.append(i)
            changed.update(idx)
            queries += len(batch)
            for new, i, p in zip(batch, idx, self.predict(batch, idx), strict=True):
                if p != self.gold[i]:
                    flips[i] = (new, int(p))
            alive = [i for i in alive if i not in flips]
            if on_progress:
                on_progress(name, attempt + 1)
            if not alive:
                break
        n, right = max(1, len(self.texts)), len(self.correct)
        sizes = [perturbation_size(self.texts[i], new) for i, (new, _) in flips.items()]
        shown = [dict(zip(("original", "perturbed"), excerpt(self.texts[i], new), strict=True),
                      label=self.labels[int(self.gold[i])], prediction=self.labels[p])
                 for i, (new, p) in list(flips.items())[:examples]]
        return {"name": name, "clean_accuracy": right / n, "accuracy_under_attack": (right - len(flips)) / n,
                "success_rate": len(flips) / right if right else 0.0, "attacked_rows": right,
                "changed_rows": len(changed), "successes": len(flips),
                "mean_perturbation": float(np.mean(sizes)) if sizes else 0.0, "queries": queries,
                "seconds": round(time.perf_counter() - t0, 2), "examples": shown}


# ---- report ------------------------------------------------------------------------------------------
def excerpt(original: str, perturbed: str, context: int = 60) -> tuple[str, str]:
    """The parts of both texts around the edits (``context`` characters either side, … where cut): examples
    in robustness.json and the report quote no more of a test row than that."""
    edits = [op for op in SequenceMatcher(None, original, perturbed, autojunk=False).get_opcodes()
             if op[0] != "equal"]
    if not edits:
        return original[: 2 * context], perturbed[: 2 * context]

    def cut(text: str, lo: int, hi: int) -> str:
        lo, hi = max(0, lo - context), min(len(text), hi + context)
        return ("…" if lo else "") + text[lo:hi] + ("…" if hi < len(text) else "")

    return cut(original, edits[0][1], edits[-1][2]), cut(perturbed, edits[0][3], edits[-1][4])


def highlight_diff(original: str, perturbed: str, context: int = 60) -> tuple[Markup, Markup]:
    """Both texts as escaped HTML with the edited characters in ``<mark>``, cut to ``context`` characters
    around the edits (long texts are shortened with …)."""
    ops = SequenceMatcher(None, original, perturbed, autojunk=False).get_opcodes()
    edits = [op for op in ops if op[0] != "equal"]
    if not edits:
        return escape(original[: 2 * context]), escape(perturbed[: 2 * context])
    lo_a, hi_a = max(0, edits[0][1] - context), min(len(original), edits[-1][2] + context)
    lo_b, hi_b = max(0, edits[0][3] - context), min(len(perturbed), edits[-1][4] + context)

    def render(text: str, lo: int, hi: int, spans: list[tuple[int, int]]) -> Markup:
        parts, pos = [Markup("…") if lo else Markup("")], lo
        for a, b in spans:
            a, b = max(a, lo), min(b, hi)
            if a >= b:
                continue
            parts += [escape(text[pos:a]), Markup("<mark>") + escape(text[a:b]) + Markup("</mark>")]
            pos = b
        parts += [escape(text[pos:hi]), Markup("…") if hi < len(text) else Markup("")]
        return Markup("").join(parts)

    return (render(original, lo_a, hi_a, [(o[1], o[2]) for o in edits]),
            render(perturbed, lo_b, hi_b, [(o[3], o[4]) for o in edits]))


def robustness_section(result: dict[str, Any]) -> tuple[str, str]:
    """The report / audit section (title, trusted html) of a :func:`run_attacks` result. When the result has a
    ``compare`` entry (the same attacks on another model, e.g. one trained without adversarial training), both
    models get their own columns; each run's ``label`` names it."""
    runs = [result] + ([result["compare"]] if result.get("compare") else [])
    head = "".join(f"<th>{escape(r.get('label', 'this model'))}: accuracy</th><th>success rate</th>" for r in runs)
    lines = [f"<tr><td>clean</td>{''.join(_pct(r['clean_accuracy']) + '<td></td>' for r in runs)}<td></td></tr>"]
    for a in result["attacks"]:
        cells = ""
        for r in runs:
            b = next((x for x in r["attacks"] if x["name"] == a["name"]), None)
            cells += (_pct(b["accuracy_under_attack"]) + _pct(b["success_rate"])) if b else "<td></td><td></td>"
        lines.append(f"<tr><td>{escape(a['name'])}</td>{cells}<td class=\"num\">{a['mean_perturbation']:.3f}</td></tr>")
    intro = (f"<p>Test rows: {result['rows']} ({escape(result['language'])}); each correctly classified row was "
             f"perturbed up to {result['tries']} times with at most {result['budget']:.0%} of its words / characters "
             "changed. Success rate = flipped predictions / correctly classified rows; perturbation = share of "
             "characters edited in successful attacks (this model).</p>")
    table = (f"<table><tr><th>attack</th>{head}<th>perturbation</th></tr>{''.join(lines)}</table>")
    shown = []
    for a in result["attacks"]:
        for ex in a["examples"]:
            before, after = highlight_diff(ex["original"], ex["perturbed"])
            shown.append(f"<tr><td>{escape(a['name'])}</td><td>{before}</td><td>{after}</td>"
                         f"<td>{escape(ex['label'])} → {escape(ex['prediction'])}</td></tr>")
    examples = (("<details><summary>Examples of successful attacks</summary><table><tr><th>attack</th><th>original"
                 "</th><th>perturbed</th><th>label → prediction</th></tr>" + "".join(shown) + "</table></details>")
                if shown else "")
    return "Robustness under attack", intro + table + examples


def _pct(v: float) -> str:
    return f'<td class="num">{v:.1%}</td>'
