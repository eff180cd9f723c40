"""PII de-identification: find personal data in text and replace it by typed placeholders (``<PHONE>``).

Built on Presidio: an ``AnalyzerEngine`` whose registry holds only taskfit's own recognisers
(:mod:`taskfit.trust.pii_recognizers` for EMAIL, PHONE, CN_ID, BANK_CARD, IP_ADDRESS and
:mod:`taskfit.trust.pii_names` for PERSON) over Presidio's ``NoOpNlpEngine`` (the recognisers read the raw
text themselves, so no spaCy model is loaded or downloaded), and an ``AnonymizerEngine`` with one
``replace`` operator per type. Every text is analysed in one pass by all recognisers under one language
code, because support tickets mix Chinese and English in one sentence.

Speed: the engines are built once per process; a text is analysed only for the types it can contain
(no digit, no number recogniser), each distinct text once (:class:`Masker` remembers results), and the
anonymiser runs only on texts with findings.

Used by the pipeline (``data.pii_mask``: :func:`mask_splits`, :func:`recipe_problems`,
:func:`pii_section`), by ``taskfit scan-pii`` (:func:`scan_frame`, :func:`mask_frame`) and by the audit.
Counts leave this module, never values.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from taskfit.errors import ConfigError

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, RecognizerResult
    from presidio_anonymizer import AnonymizerEngine

    from taskfit.config import Recipe
    from taskfit.data import Splits
    from taskfit.tasks.base import Task

#: the one Presidio language code taskfit analyses with: every recogniser reads Chinese, English and mixes
LANG = "xx"
#: the import names PII masking needs (the ``trust`` extra: ``pip install 'taskfit[trust]'``)
REQUIRED = ("presidio_analyzer", "presidio_anonymizer", "phonenumbers", "jieba", "spacy")
#: every type taskfit finds, in report order
TYPES: tuple[str, ...] = ("PERSON", "PHONE", "EMAIL", "CN_ID", "BANK_CARD", "IP_ADDRESS")
#: column shapes :func:`mask_values` understands (see :meth:`taskfit.tasks.base.Task.text_columns`)
KINDS: tuple[str, ...] = ("text", "texts", "tokens", "messages")
_DIGITS = re.compile(r"\d{3}")
_LISTS = (list, tuple, np.ndarray)  # Parquet gives list cells as numpy arrays
_DOTTED = re.compile(r"\d\.\d")
_HEX_COLON = re.compile(r"[0-9A-Fa-f]:|:[0-9A-Fa-f]")  # IPv6 such as fe80::a


def placeholder(entity: str) -> str:
    """The text that replaces a finding of type ``entity``."""
    return f"<{entity}>"


def missing_dependencies() -> list[str]:
    """The packages of :data:`REQUIRED` that are not installed (checked without importing them)."""
    from importlib.util import find_spec

    return [name for name in REQUIRED if find_spec(name) is None]


def check_dependencies(key: str = "data.pii_mask") -> None:
    """Raise ConfigError (naming ``key``) when a package PII masking needs is missing."""
    missing = missing_dependencies()
    if missing:
        raise ConfigError(f"{key}: PII masking needs {', '.join(missing)}, which is not installed. Install the "
                          "trust extra: pip install 'taskfit[trust]'.")


@lru_cache(maxsize=1)
def engines() -> tuple[AnalyzerEngine, AnonymizerEngine]:
    """(analyzer, anonymizer), built once per process; nothing is downloaded."""
    check_dependencies()
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry
    from presidio_analyzer.nlp_engine import NoOpNlpEngine
    from presidio_anonymizer import AnonymizerEngine

    from taskfit.trust.pii_names import ChinesePersonRecognizer, EnglishPersonRecognizer
    from taskfit.trust.pii_recognizers import NoContextEnhancer, structured_recognizers

    # Presidio logs at INFO per engine and may echo inputs at DEBUG: keep raw text out of any log.
    for name in ("presidio-analyzer", "presidio-anonymizer"):
        logging.getLogger(name).setLevel(logging.ERROR)
    registry = RecognizerRegistry(supported_languages=[LANG])
    for rec in [*structured_recognizers(), ChinesePersonRecognizer(), EnglishPersonRecognizer()]:
        rec.load()
        registry.add_recognizer(rec)
    nlp = NoOpNlpEngine(models=[{"lang_code": LANG, "model_name": "none"}])
    nlp.load()
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp, supported_languages=[LANG],
                              default_score_threshold=0.5, context_aware_enhancer=NoContextEnhancer())
    return analyzer, AnonymizerEngine()


def _candidate_types(text: str) -> list[str]:
    """The types ``text`` can contain at all (cheap character tests that skip most recognisers)."""
    types = ["PERSON"]
    if "@" in text:
        types.append("EMAIL")
    if _DIGITS.search(text):
        types += ["PHONE", "CN_ID", "BANK_CARD"]
    if _DOTTED.search(text) or _HEX_COLON.search(text):
        types.append("IP_ADDRESS")
    return types


def _resolve(results: Iterable[RecognizerResult]) -> list[RecognizerResult]:
    """Non-overlapping findings: higher score first (a valid ID beats a Luhn-passing card), then longer."""
    kept: list[RecognizerResult] = []
    for r in sorted(results, key=lambda r: (-r.score, -(r.end - r.start), r.start)):
        if all(r.end <= k.start or r.start >= k.end for k in kept):
            kept.append(r)
    return sorted(kept, key=lambda r: r.start)


def analyze(text: str) -> list[RecognizerResult]:
    """Findings in one text (non-overlapping, in text order)."""
    if not text or not text.strip():
        return []
    analyzer, _ = engines()
    return _resolve(analyzer.analyze(text=text, language=LANG, entities=_candidate_types(text)))


def anonymize(text: str, results: Sequence[RecognizerResult]) -> str:
    """``text`` with each finding replaced by its placeholder."""
    if not results:
        return text
    from presidio_anonymizer.entities import OperatorConfig

    _, anonymizer = engines()
    ops = {r.entity_type: OperatorConfig("replace", {"new_value": placeholder(r.entity_type)}) for r in results}
    # merge_entities_with_spaces=False: two names side by side stay two findings, as counted.
    return str(anonymizer.anonymize(text=text, analyzer_results=list(results), operators=ops,  # type: ignore[arg-type]
                                    merge_entities_with_spaces=False).text)


class Masker:
    """Masks texts and counts findings per type; each distinct text is analysed once."""

    MAX_REMEMBERED = 200_000

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, tuple[str, ...]]] = {}
        engines()

    def mask(self, text: str) -> tuple[str, tuple[str, ...]]:
        """(masked text, types of its findings in order)."""
        hit = self._seen.get(text)
        if hit is None:
            results = analyze(text)
            hit = (anonymize(text, results), tuple(r.entity_type for r in results))
            if len(self._seen) >= self.MAX_REMEMBERED:
                self._seen.clear()  # bounded memory on very large files; repeats cluster anyway
            self._seen[text] = hit
        return hit

    def mask_tokens(self, tokens: Sequence[str]) -> tuple[list[str], tuple[str, ...]]:
        """Mask a token list keeping its length: a token overlapping a finding becomes its placeholder.

        Tokens are joined into one text (without spaces when they are single characters, as in Chinese
        character-level NER data) so that names and numbers split over tokens are still found.
        """
        toks = [str(t) for t in tokens]
        sep = "" if toks and sum(len(t) == 1 for t in toks) >= 0.8 * len(toks) else " "
        starts, pos = [], 0
        for t in toks:
            starts.append(pos)
            pos += len(t) + len(sep)
        text = sep.join(toks)
        results = analyze(text)
        out = list(toks)
        for r in results:
            for i, s in enumerate(starts):
                if s < r.end and s + len(toks[i]) > r.start:
                    out[i] = placeholder(r.entity_type)
        return out, tuple(r.entity_type for r in results)


def mask_values(values: Sequence[Any], kind: str, masker: Masker) -> tuple[list[Any], list[Counter[str]]]:
    """Mask one column's values of shape ``kind`` (see :data:`KINDS`).

    Returns:
        (new values, per-row Counter of finding types); non-text cells are left as they are.
    """
    new: list[Any] = []
    counts: list[Counter[str]] = []
    for v in values:
        found: Counter[str] = Counter()
        if kind == "text" and isinstance(v, str):
            v, types = masker.mask(v)
            found.update(types)
        elif kind == "tokens" and isinstance(v, _LISTS):
            v, types = masker.mask_tokens(list(v))
            found.update(types)
        elif kind == "texts" and isinstance(v, _LISTS):
            masked = [masker.mask(t) if isinstance(t, str) else (t, ()) for t in v]
            v = [m for m, _ in masked]
            found.update(t for _, types in masked for t in types)
        elif kind == "messages" and isinstance(v, _LISTS):
            msgs = []
            for msg in v:
                if isinstance(msg, dict) and isinstance(msg.get("content"), str):
                    content, types = masker.mask(msg["content"])
                    msg = {**msg, "content": content}
                    found.update(types)
                msgs.append(msg)
            v = msgs
        new.append(v)
        counts.append(found)
    return new, counts


def recipe_problems(recipe: Recipe) -> list[str]:
    """``data.pii_mask`` problems found before any data is read (a task whose inputs are not text)."""
    from taskfit.tasks import TASKS

    try:
        check_dependencies()
    except ConfigError as e:
        return [str(e)]
    task_cls = TASKS.get(recipe.task.name)
    if not task_cls.text_input:
        return [f"data.pii_mask: task {recipe.task.name!r} reads images, which have no text to mask (got "
                "pii_mask: true). Remove data.pii_mask, or de-identify the images before training."]
    return []


def mask_splits(task: Task, splits: Splits) -> dict[str, Any]:
    """Mask every text column of every split frame in place.

    Returns:
        JSON-able counts, never values: ``by_type`` {type: n}, ``by_split`` {split: {type: n}},
        ``rows_changed``, ``rows``, ``columns`` (the columns masked), ``seconds`` and ``rows_per_s`` of the
        masking itself, and ``startup_s`` (building the engines, once per process).
    """
    t_start = time.perf_counter()
    masker = Masker()  # builds the engines once per process (start-up is reported apart from masking)
    t0 = time.perf_counter()
    columns = task.text_columns()
    by_type: Counter[str] = Counter()
    by_split: dict[str, dict[str, int]] = {}
    rows = changed = 0
    for split, frame in splits.frames.items():
        counts, out = _scan(frame, columns, keep=True, masker=masker)
        for col in columns:
            if out is not None and col in frame.columns:
                frame[col] = out[col]  # in place: the split frames are the pipeline's
        by_split[split] = counts["by_type"]
        by_type.update(counts["by_type"])
        rows += counts["rows"]
        changed += counts["rows_with_pii"]
    task.texts_changed(splits)  # e.g. retrieval rebuilds its answer corpus from the masked texts
    seconds = time.perf_counter() - t0
    return {"by_type": {t: by_type[t] for t in TYPES if by_type[t]}, "by_split": by_split,
            "rows_changed": changed, "rows": rows, "columns": list(columns), "seconds": round(seconds, 3),
            "rows_per_s": round(rows / max(seconds, 1e-9), 1), "startup_s": round(t0 - t_start, 3)}


def _frame_kinds(frame: pd.DataFrame, columns: Mapping[str, str] | Sequence[str]) -> dict[str, str]:
    """Column -> kind: as given, or for a plain list of names "texts" where a column holds lists, else "text"."""
    if isinstance(columns, Mapping):
        return dict(columns)
    return {c: "texts" if any(isinstance(v, _LISTS) for v in frame[c].head(200)) else "text"
            for c in columns if c in frame.columns}


def _scan(frame: pd.DataFrame, columns: Mapping[str, str] | Sequence[str], keep: bool,
          masker: Masker | None = None) -> tuple[dict[str, Any], pd.DataFrame | None]:
    masker = masker or Masker()
    t0 = time.perf_counter()
    out = frame.copy() if keep else None
    by_column: dict[str, dict[str, int]] = {}
    by_type: Counter[str] = Counter()
    hit = [False] * len(frame)
    for col, kind in _frame_kinds(frame, columns).items():
        if col not in frame.columns:
            continue
        new, per_row = mask_values(frame[col].tolist(), kind, masker)
        total: Counter[str] = Counter()
        for i, c in enumerate(per_row):
            if c:
                hit[i] = True
                total.update(c)
        by_column[col] = {t: total[t] for t in TYPES if total[t]}
        by_type.update(total)
        if out is not None:
            out[col] = pd.Series(new, index=out.index, dtype=object)
    seconds = time.perf_counter() - t0
    counts = {"by_type": {t: by_type[t] for t in TYPES if by_type[t]}, "by_column": by_column, "rows": len(frame),
              "rows_with_pii": sum(hit), "seconds": round(seconds, 3),
              "rows_per_s": round(len(frame) / max(seconds, 1e-9), 1)}
    return counts, out


def scan_frame(frame: pd.DataFrame, columns: Mapping[str, str] | Sequence[str]) -> dict[str, Any]:
    """Count findings in a table (``taskfit scan-pii``, the audit) without changing it.

    Args:
        frame: the table (values as :func:`taskfit.data.readers.read_table` or a task's ``load_splits`` give).
        columns: column -> kind (see :data:`KINDS`; e.g. :meth:`Task.text_columns`), or column names (a column
            of lists is scanned item by item).

    Returns:
        JSON-able counts, never values: ``by_type`` {type: n}, ``by_column`` {column: {type: n}}, ``rows``,
        ``rows_with_pii``, ``seconds``, ``rows_per_s``.
    """
    return _scan(frame, columns, keep=False)[0]


def mask_frame(frame: pd.DataFrame, columns: Mapping[str, str] | Sequence[str]
               ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """A masked copy of ``frame`` (other columns untouched) and the counts of :func:`scan_frame`."""
    counts, out = _scan(frame, columns, keep=True)
    assert out is not None
    return out, counts


def pii_section(counts: dict[str, Any]) -> tuple[str, str]:
    """The report section: findings per type and split (a table and a bar chart), timing."""
    by_split: dict[str, dict[str, int]] = counts.get("by_split", {})
    splits = list(by_split)
    types = [t for t in TYPES if counts.get("by_type", {}).get(t)]
    head = "".join(f"<th>{html.escape(s)}</th>" for s in splits)
    body = "".join(f"<tr><td>{html.escape(t)}</td>" + "".join(f"<td>{by_split[s].get(t, 0)}</td>" for s in splits)
                   + f"<td><b>{counts['by_type'][t]}</b></td></tr>" for t in types)
    cols = ", ".join(html.escape(str(c)) for c in counts.get("columns", []))
    intro = (f"<p>Personal data was replaced by typed placeholders such as <code>&lt;PHONE&gt;</code> in the "
             f"text columns ({cols}) before training: {counts.get('rows_changed', 0)} of {counts.get('rows', 0)} "
             f"rows changed, in {counts.get('seconds', 0)} s ({counts.get('rows_per_s', 0)} rows/s). Only counts "
             "are kept; no value found appears in this report or in results.json.</p>")
    if not types:
        return "Privacy: PII masking", intro + "<p>No personal data was found.</p>"
    table = f"<table><tr><th>type</th>{head}<th>total</th></tr>{body}</table>"
    return "Privacy: PII masking", intro + table + _bar_chart(types, by_split)


def _bar_chart(types: list[str], by_split: dict[str, dict[str, int]]) -> str:
    """A small stacked bar chart of findings per type (an <img> data URI), or "" if matplotlib fails."""
    try:
        import numpy as np
        from matplotlib.figure import Figure

        from taskfit.evaluate.plots import _to_png
        from taskfit.evaluate.report import _data_uri
    except ImportError:  # pragma: no cover - matplotlib is a core dependency
        return ""
    fig = Figure(figsize=(6, 0.45 * len(types) + 1.2))
    ax = fig.add_subplot()
    left = np.zeros(len(types))
    for split, c in by_split.items():
        vals = np.array([c.get(t, 0) for t in types], dtype=float)
        ax.barh(types, vals, left=left, label=split)
        left += vals
    ax.invert_yaxis()
    ax.set_xlabel("findings")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return f'<img alt="PII findings per type" src="{_data_uri(_to_png(fig))}">'
