"""Drift statistics and the training reference a served model's traffic is compared with.

Two statistics, both small enough to own (numpy + scipy's Kolmogorov distribution):

- **PSI** (population stability index) over fixed bins: quantile bins of the reference for numeric features,
  the categories for categorical ones. ``PSI = Σ (p_cur − p_ref) · ln(p_cur / p_ref)``; an empty bin's share
  is replaced by ``EPS`` so the sum stays finite. Rules of thumb: < 0.1 stable, 0.1–0.2 some shift, > 0.2 drift.
- **Two-sample KS** for numeric features: the largest gap between the two empirical CDFs, with the asymptotic
  p-value scipy's ``ks_2samp(method="asymp")`` gives.

Features of each input, all cheap to compute per request (no model call): text length in characters, language
(share of CJK characters → zh / en / mixed) and the out-of-vocabulary rate (share of the text's words never seen
in the training texts: lower-cased ``\\w+`` runs for alphabetic scripts, single characters for CJK). Outputs:
the predicted label and its confidence.

The reference is built once per model from the run's own data (vocabulary from the training split; features and
predictions of up to ``reference_rows`` held-out rows, whose out-of-vocabulary rates are thus those of unseen
text) and cached as ``monitor_reference.json`` in the run directory, keyed by the model's taskfit.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from taskfit.config import MonitorConfig
from taskfit.errors import TaskfitError

if TYPE_CHECKING:
    from taskfit.inference import Predictor

log = logging.getLogger(__name__)

EPS = 1e-4  # share given to an empty bin (either side) so that PSI stays finite
NUMERIC = ("length", "oov", "confidence")
CATEGORICAL = ("language", "label")
FEATURES = ("length", "language", "oov", "label", "confidence")
LANGUAGES = ("en", "zh", "mixed")
REFERENCE_FILE = "monitor_reference.json"
REFERENCE_VERSION = 1
MAX_VOCAB = 50_000  # most frequent training words kept (bounds the cached file; rare words barely move OOV)

_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]")
_WORD = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff\uac00-\ud7af]|[^\W_]+", re.UNICODE)


# ---- statistics ----------------------------------------------------------------------------------


def quantile_edges(values: Sequence[float] | np.ndarray, bins: int) -> list[float]:
    """Inner bin edges at the reference's quantiles (duplicates removed: a feature with many equal values, e.g.
    an OOV rate of 0, gets fewer bins). Bin i holds ``edges[i-1] < x <= edges[i]``; the outer bins are open."""
    arr = np.asarray(values, dtype=float)
    if arr.size == 0:
        return []
    qs = np.quantile(arr, np.linspace(0, 1, bins + 1)[1:-1])
    return [float(e) for e in np.unique(qs)]


def bin_shares(values: Sequence[float] | np.ndarray, edges: Sequence[float]) -> np.ndarray:
    """Share of ``values`` in each of the ``len(edges) + 1`` bins (right-closed)."""
    arr = np.asarray(values, dtype=float)
    idx = np.searchsorted(np.asarray(edges, dtype=float), arr, side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1).astype(float)
    return counts / max(arr.size, 1)


def category_shares(values: Iterable[str | None], categories: Sequence[str]) -> np.ndarray:
    """Share of each category; values outside ``categories`` (an unknown label) count in a last 'other' bin."""
    counts = Counter(values)
    total = sum(counts.values())
    known = [counts.get(c, 0) for c in categories]
    other = total - sum(known)
    return np.array([*known, other], dtype=float) / max(total, 1)


def psi(ref_shares: Sequence[float] | np.ndarray, cur_shares: Sequence[float] | np.ndarray, eps: float = EPS) -> float:
    """Population stability index of two bin-share vectors of the same bins (empty bins count as ``eps``)."""
    ref = np.maximum(np.asarray(ref_shares, dtype=float), eps)
    cur = np.maximum(np.asarray(cur_shares, dtype=float), eps)
    if ref.shape != cur.shape:
        raise ValueError(f"PSI needs the same bins on both sides, got {ref.shape} and {cur.shape}")
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def ks_2samp(ref: Sequence[float] | np.ndarray, cur: Sequence[float] | np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov–Smirnov test: (statistic D, asymptotic two-sided p-value).

    D = max over x of |F_ref(x) − F_cur(x)|; the p-value is the Kolmogorov distribution's tail at D for the
    effective size n·m/(n+m), as ``scipy.stats.ks_2samp(..., method="asymp")`` computes it.
    """
    from scipy.stats import kstwo

    a = np.sort(np.asarray(ref, dtype=float))
    b = np.sort(np.asarray(cur, dtype=float))
    if a.size == 0 or b.size == 0:
        return 0.0, 1.0
    grid = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, grid, side="right") / a.size
    cdf_b = np.searchsorted(b, grid, side="right") / b.size
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    n_eff = a.size * b.size / (a.size + b.size)
    p = float(kstwo.sf(d, np.round(n_eff)))
    return d, min(max(p, 0.0), 1.0)


# ---- per-text features ---------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Vocabulary units of a text: each CJK character alone, other letter/digit runs lower-cased."""
    return [w.lower() for w in _WORD.findall(text)]


def language(text: str) -> str:
    """'zh' when most letters are CJK, 'en' when (almost) none are, else 'mixed'."""
    letters = sum(1 for ch in text if ch.isalpha())
    if letters == 0:
        return "en"
    share = len(_CJK.findall(text)) / letters
    return "zh" if share >= 0.6 else "en" if share <= 0.1 else "mixed"


def oov_rate(text: str, vocab: frozenset[str] | set[str]) -> float:
    """Share of the text's words not in ``vocab`` (0 for a text without words)."""
    ws = words(text)
    return sum(1 for w in ws if w not in vocab) / len(ws) if ws else 0.0


def text_features(text: str, vocab: frozenset[str] | set[str]) -> tuple[float, str, float]:
    """(length in characters, language, OOV rate) of one input."""
    return float(len(text)), language(text), oov_rate(text, vocab)


# ---- the reference -------------------------------------------------------------------------------


class Reference:
    """Fixed bins and reference shares (and a reference sample for KS) per feature, plus the vocabulary."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.vocab: frozenset[str] = frozenset(data.get("vocab", []))
        self.features: dict[str, dict[str, Any]] = data["features"]

    @classmethod
    def build(cls, train_texts: Sequence[str], texts: Sequence[str], labels: Sequence[str | None],
              confidences: Sequence[float | None], label_set: Sequence[str], bins: int = 10,
              source: str = "", fingerprint: str = "") -> Reference:
        """Reference from training texts (vocabulary) and held-out ``texts`` with the model's predicted
        ``labels`` and ``confidences`` (None where the task has none)."""
        counts: Counter[str] = Counter()
        for t in train_texts:
            counts.update(words(t))
        vocab = frozenset(w for w, _ in counts.most_common(MAX_VOCAB))
        feats = [text_features(t, vocab) for t in texts]
        numeric = {"length": [f[0] for f in feats], "oov": [f[2] for f in feats],
                   "confidence": [float(c) for c in confidences if c is not None]}
        out: dict[str, dict[str, Any]] = {}
        for name, vals in numeric.items():
            if vals:
                edges = quantile_edges(vals, bins)
                out[name] = {"kind": "numeric", "edges": edges, "shares": bin_shares(vals, edges).tolist(),
                             "sample": [round(v, 6) for v in vals], "mean": float(np.mean(vals))}
        out["language"] = {"kind": "categorical", "categories": list(LANGUAGES),
                           "shares": category_shares([f[1] for f in feats], LANGUAGES).tolist()}
        if label_set and any(lab is not None for lab in labels):
            out["label"] = {"kind": "categorical", "categories": list(label_set),
                            "shares": category_shares(labels, label_set).tolist()}
        data = {"version": REFERENCE_VERSION, "fingerprint": fingerprint, "source": source, "rows": len(texts),
                "created": datetime.now(UTC).isoformat(timespec="seconds"), "vocab": sorted(vocab),
                "features": out}
        return cls(data)

    def compare(self, current: dict[str, list[Any]], psi_alert: float, ks_alert: float) -> dict[str, Any]:
        """PSI (every feature) and KS (numeric features) of ``current`` values per feature against the
        reference; ``drifted`` when PSI > psi_alert or the KS p-value < ks_alert."""
        report: dict[str, Any] = {}
        for name, ref in self.features.items():
            vals = [v for v in current.get(name, []) if v is not None]
            if not vals:
                continue
            if ref["kind"] == "numeric":
                cur = bin_shares(vals, ref["edges"])
                d, p = ks_2samp(ref["sample"], vals)
                entry = {"psi": psi(ref["shares"], cur), "ks": d, "ks_p": p, "mean": float(np.mean(vals)),
                         "reference_mean": ref["mean"]}
                entry["drifted"] = entry["psi"] > psi_alert or p < ks_alert
            else:
                cats = ref["categories"]
                cur = category_shares(vals, cats)
                entry = {"psi": psi(ref["shares"], cur),
                         "shares": {c: round(float(s), 4) for c, s in zip([*cats, "other"], cur, strict=True)},
                         "reference_shares": {c: round(float(s), 4)
                                              for c, s in zip([*cats, "other"], ref["shares"], strict=True)}}
                entry["drifted"] = entry["psi"] > psi_alert
            entry["n"] = len(vals)
            report[name] = entry
        return report

    def save(self, path: Path) -> None:
        """Write the reference atomically (a half-written cache is never read)."""
        from taskfit.utils.io import atomic_write_json

        atomic_write_json(path, self.data)

    @classmethod
    def load(cls, path: Path, fingerprint: str) -> Reference | None:
        """The cached reference, or None when missing, unreadable or built for another model / settings."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if data.get("version") != REFERENCE_VERSION or data.get("fingerprint") != fingerprint:
            return None
        return cls(data)


def fingerprint(model_dir: Path, reference_rows: int, bins: int) -> str:
    """Identity of a reference: the model's taskfit.json content and the settings it was built with."""
    h = hashlib.sha256((model_dir / "taskfit.json").read_bytes())
    h.update(f"|{reference_rows}|{bins}".encode())
    return h.hexdigest()[:16]


# ---- from a run -------------------------------------------------------------------------------


def meta_labels(model_dir: Path) -> list[str]:
    """The labels in the model's taskfit.json (empty for tasks without labels)."""
    return list(json.loads((model_dir / "taskfit.json").read_text(encoding="utf-8")).get("labels") or [])


def recipe_monitor_settings(model_dir: Path) -> MonitorConfig:
    """The run's recipe ``monitor:`` block (defaults when the run has no recipe or an older one without it)."""
    from taskfit.config import load_recipe

    for d in (model_dir.parent, model_dir.parent.parent):
        if (d / "recipe.yaml").is_file():
            try:
                return load_recipe(d / "recipe.yaml").monitor
            except TaskfitError as e:
                log.warning("monitor: recipe %s unreadable (%s); using monitor defaults", d / "recipe.yaml", e)
    return MonitorConfig()


def build_reference(run_dir: str | Path, settings: MonitorConfig, predictor: Predictor | None = None,
                    rebuild: bool = False) -> Reference:
    """The run's drift reference, from the cache ``monitor_reference.json`` when it matches the model and
    settings, else built (vocabulary of the training split; features and model predictions of up to
    ``settings.reference_rows`` held-out rows) and cached atomically.

    Raises:
        ConfigError / DataError / NotFittedError: the run's model, recipe or data cannot be found or read.
    """
    from taskfit.inference import Predictor, model_dir_of
    from taskfit.serve.retrain import run_frames

    model_dir = model_dir_of(run_dir)
    home = model_dir.parent if model_dir.name == "model" else model_dir
    path = home / REFERENCE_FILE
    key = fingerprint(model_dir, settings.reference_rows, settings.bins)
    cached = None if rebuild else Reference.load(path, key)
    if cached is not None:
        return cached
    frames = run_frames(run_dir)
    held = frames.held_out
    if len(held) > settings.reference_rows:
        held = held.sample(settings.reference_rows, random_state=0)
    texts = [str(t) for t in held[frames.text]]
    pred = predictor or Predictor.load(run_dir)
    labels: list[str | None] = [None] * len(texts)
    conf: list[float | None] = [None] * len(texts)
    if pred.labels:
        try:
            probs = np.concatenate([pred.predict_proba(texts[i:i + 64]) for i in range(0, len(texts), 64)])
            labels = [pred.labels[j] for j in probs.argmax(axis=1)]
            conf = [float(p) for p in probs.max(axis=1)]
        except TaskfitError as e:  # tasks without probabilities (regression, NER): input features only
            log.info("monitor reference without outputs: %s", e)
    ref = Reference.build([str(t) for t in frames.train[frames.text]], texts, labels, conf, pred.labels,
                          bins=settings.bins, source=frames.source, fingerprint=key)
    try:
        ref.save(path)
    except OSError as e:  # a read-only run directory: keep it in memory only
        log.warning("monitor reference not cached at %s: %s", path, e)
    return ref
