"""customer-service: intent classification + FAQ retrieval, with a hand-over to a person below a confidence.

Data (real, BSD-3-Clause): the English and Chinese question → answer conversations of chatterbot-corpus 1.3.3
(``taskfit.data.packaged.faq``). Each conversation file has a category (AI, emotion, money, sports...),
which serves as the *intent* of its questions: a stand-in for the intents of a support centre.

Written files:
    data/intents.csv: ``question,intent,lang``, one row per distinct question (questions the corpus files
        under two categories are left out: their intent is ambiguous), intents with at least
        :data:`MIN_QUESTIONS` questions, at most :data:`MAX_PER_INTENT` per intent (seeded sample).
    data/faq.csv: ``query,answer,category,lang``, every (question, answer) pair of those intents.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from pathlib import Path

from taskfit.data.packaged.faq import faq_rows
from taskfit.data.packaged.text import write_rows_csv
from taskfit.scenarios import Scenario, register_scenario

#: intents with fewer distinct questions (both languages together) are left out: too few to learn and test
MIN_QUESTIONS = 30
#: the largest intents are capped so no intent outweighs the smallest more than ~5 to 1 (and CPU time stays low)
MAX_PER_INTENT = 150
LANGS = {"english": "en", "chinese": "zh"}


def intent_rows(seed: int) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(intent rows ``(question, intent, lang)``, FAQ rows ``(query, answer, category, lang)``)."""
    pairs = [(q, a, c, code) for folder, code in LANGS.items() for q, a, c in faq_rows(folder)]
    cats: dict[tuple[str, str], set[str]] = defaultdict(set)
    for q, _, c, lang in pairs:
        cats[(q, lang)].add(c)
    # One intent per question: a question filed under two categories would be a label conflict.
    single = {key: next(iter(c)) for key, c in cats.items() if len(c) == 1}
    counts = Counter(single.values())
    kept = {c for c, n in counts.items() if n >= MIN_QUESTIONS}
    by_intent: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for (q, lang), c in single.items():
        if c in kept:
            by_intent[c].append((q, c, lang))
    rng = random.Random(seed)
    intents: list[tuple[str, ...]] = []
    for c in sorted(by_intent):
        rows = sorted(by_intent[c])
        intents += sorted(rng.sample(rows, MAX_PER_INTENT)) if len(rows) > MAX_PER_INTENT else rows
    faq: list[tuple[str, ...]] = [(q, a, c, lang) for q, a, c, lang in pairs if c in kept]
    return intents, faq


def build(folder: Path, seed: int) -> list[Path]:
    """Write ``data/intents.csv`` and ``data/faq.csv`` (real chatterbot-corpus rows, en + zh)."""
    intents, faq = intent_rows(seed)
    data = folder / "data"
    return [write_rows_csv(intents, ["question", "intent", "lang"], data / "intents.csv", None, seed),
            write_rows_csv(faq, ["query", "answer", "category", "lang"], data / "faq.csv", None, seed)]


SCENARIO = register_scenario(Scenario(
    name="customer-service",
    summary="Support bot: intent classification + FAQ answer retrieval (en + zh), hands over to a person "
            "below a confidence threshold",
    template="customer_service",
    build=build,
    recipes=("recipe.yaml", "faq.yaml"),
    next_steps=("taskfit train {dir}/recipe.yaml", "taskfit train {dir}/faq.yaml",
                "python {dir}/assistant.py --questions {dir}/questions.txt"),
    data_note="real: chatterbot-corpus 1.3.3 English + Chinese conversations (BSD-3-Clause); categories as intents",
))
