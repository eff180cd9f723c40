"""Expected quality per (task, language, model, method): the project's own measured results, adjusted for rows.

Every figure below was measured by taskfit on packaged data and is published in BENCHMARKS.md (the section is
named in ``source``). They describe *that* data; a user's data will differ, so advice shows them as "measured on
X with N rows", never as a promise.

Rows adjustment (accuracy-like metrics in [0, 1], higher is better): the error ``1 − q`` is assumed to follow a
learning curve ``error(n) = error_ref × (n / n_ref) ** -ALPHA`` with ``ALPHA = 0.3``, a deliberately mild
exponent (fine-tuning curves commonly fall between 0.2 and 0.5; the project has not fitted one). The result is
bounded: never better than a quarter of the reference error (no extrapolation to perfection) and never worse
than chance, ``1 − 1 / labels``. Metrics where lower is better (RMSE, perplexity) are shown unadjusted.
"""

from __future__ import annotations

from dataclasses import dataclass

ALPHA = 0.3
BEST_FACTOR = 0.25  # the adjusted error never drops below this share of the reference error


@dataclass(frozen=True)
class Measured:
    """One measured result: ``value`` of ``metric`` after training on ``rows`` rows with ``labels`` labels."""

    task: str
    language: str
    model: str
    method: str
    metric: str
    value: float
    rows: int
    labels: int
    source: str

    @property
    def higher_is_better(self) -> bool:
        return self.metric not in ("rmse", "mae", "perplexity", "loss")


MEASURED: tuple[Measured, ...] = (
    Measured("text_classification", "en", "all-MiniLM-L6-v2", "full", "accuracy", 0.945, 1600, 5,
             "BBC news topics, 2 epochs (BENCHMARKS.md, Training: taskfit loop vs HF Trainer)"),
    Measured("text_classification", "en", "all-MiniLM-L6-v2", "lora", "accuracy", 0.942, 840, 5,
             "BBC news topics, 30 steps × 32, no DP (BENCHMARKS.md, DP-SGD utility, ε = ∞)"),
    Measured("text_classification", "en", "all-MiniLM-L6-v2", "frozen", "accuracy", 0.876, 840, 5,
             "BBC news topics, 40 steps × 64, no DP (BENCHMARKS.md, DP-SGD utility, ε = ∞)"),
    Measured("text_classification", "zh", "multilingual-e5-small", "full", "accuracy", 0.818, 1200, 2,
             "Chinese product reviews, 40 steps × 16 (BENCHMARKS.md, Every task: Chinese sentiment)"),
    Measured("text_classification", "zh", "all-MiniLM-L6-v2", "full", "accuracy", 0.568, 1200, 2,
             "Chinese product reviews, 40 steps × 16; 64% of tokens are [UNK] (BENCHMARKS.md, Chinese sentiment)"),
    Measured("ner", "en", "all-MiniLM-L6-v2", "full", "entity_f1", 0.132, 1915, 21,
             "WNUT-2016 tweets, 2 epochs (BENCHMARKS.md, Every task: NER)"),
    Measured("regression", "en", "all-MiniLM-L6-v2", "full", "rmse", 0.744, 2000, 0,
             "VADER tweets, 1 epoch (BENCHMARKS.md, Every task: regression)"),
    Measured("retrieval", "en", "all-MiniLM-L6-v2", "full", "mrr", 0.367, 790, 0,
             "FAQ pairs (chatterbot), 60 steps (BENCHMARKS.md, Every task: retrieval)"),
    Measured("generation", "en", "SmolLM2-135M-Instruct", "lora", "perplexity", 16.5, 512, 0,
             "chat_en, 40 steps of 8 (BENCHMARKS.md, Every task: generation)"),
    # images have no language: "-" (the catalogue's word for image models)
    Measured("image_classification", "-", "efficientnet-lite0", "full", "accuracy", 0.794, 2000, 10,
             "Fashion-MNIST at 64 px, 2 epochs (BENCHMARKS.md, Every task: images, full fine-tuning)"),
    Measured("image_classification", "-", "efficientnet-lite0", "frozen", "accuracy", 0.778, 2000, 10,
             "Fashion-MNIST at 64 px, 2 epochs (BENCHMARKS.md, Every task: images, frozen backbone)"),
)


@dataclass(frozen=True)
class Expected:
    """Expected quality of one option for the user's workload, with how it was derived."""

    metric: str
    value: float
    measured: Measured
    note: str


def lookup(task: str, model: str, method: str, languages: tuple[str, ...]) -> Measured | None:
    """The measured result for this task, model and method in the user's first language that has one (images:
    whatever the languages)."""
    for lang in ("-",) if task == "image_classification" else languages or ("en",):
        for m in MEASURED:
            if (m.task, m.model, m.method, m.language) == (task, model, method, lang):
                return m
    return None


def adjust(m: Measured, rows: int, labels: int | None) -> tuple[float, str]:
    """The measured value carried to ``rows`` training rows (see the module docstring)."""
    if not m.higher_is_better or not 0.0 <= m.value <= 1.0:
        return m.value, f"{m.metric} {m.value:g} at {m.rows} rows, not adjusted for rows"
    k = labels or m.labels
    worst = 1.0 - 1.0 / k if k and k > 1 else 1.0
    err_ref = 1.0 - m.value
    err = err_ref * (rows / m.rows) ** -ALPHA
    err = min(max(err, BEST_FACTOR * err_ref), worst)
    return 1.0 - err, (f"{m.metric} {m.value:.3f} measured at {m.rows} rows; error × ({rows}/{m.rows})^-{ALPHA}"
                       f" → {1.0 - err:.3f}")


def expected_quality(task: str, model: str, method: str, languages: tuple[str, ...], rows: int,
                     labels: int | None) -> Expected | None:
    """Expected quality, or None where the project has measured nothing comparable."""
    m = lookup(task, model, method, languages)
    if m is None:
        return None
    value, note = adjust(m, rows, labels)
    return Expected(m.metric, value, m, f"{note} ({m.source})")
