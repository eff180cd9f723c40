"""Streaming news-sentiment scorer: reads news lines, scores them, prints the running negative share, alerts.

Each input line is ``ISO-time<TAB>text`` (the item's own time) or just ``text`` (then the time it was read).
Items are scored with the sentiment run (and, with ``--topic-run``, the topic run) through taskfit's
Predictor, in small batches. For every rule of ``alerts.yaml`` the scorer keeps a sliding window of the last
``window_minutes`` and prints an ``ALERT`` line when the share of the watched label in the window goes above
``above`` (with at least ``min_items`` items), and a ``resolved`` line when it falls back.

Usage (from the folder you ran ``taskfit train`` in, so that ``runs/`` is found)::

    python stream_scorer.py data/stream.tsv --alerts alerts.yaml
    tail -f news.log | python stream_scorer.py --batch 1 --alerts alerts.yaml
    python stream_scorer.py data/stream.tsv --topic-run runs/news-topic --jsonl > scored.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

RULE_KEYS = {"name", "label", "above", "window_minutes", "min_items", "topic"}


@dataclass
class Rule:
    """One alert rule with its sliding window of (time, counted as the watched label)."""

    name: str
    label: str = "neg"
    above: float = 0.6
    window_minutes: float = 30.0
    min_items: int = 10
    topic: str | None = None
    window: deque[tuple[datetime, bool]] = field(default_factory=deque)
    active: bool = False

    def update(self, at: datetime, label: str, topic: str | None) -> tuple[float, int, str | None]:
        """Add one scored item; return (share in the window, items in the window, "ALERT"/"resolved"/None)."""
        if self.topic is None or topic == self.topic:
            self.window.append((at, label == self.label))
        while self.window and self.window[0][0] <= at - timedelta(minutes=self.window_minutes):
            self.window.popleft()
        n = len(self.window)
        share = sum(hit for _, hit in self.window) / n if n else 0.0
        firing = n >= self.min_items and share > self.above
        event = None
        if firing != self.active:
            event = "ALERT" if firing else "resolved"
            self.active = firing
        return share, n, event


def load_rules(path: str | None, overrides: dict[str, Any]) -> list[Rule]:
    """Rules of an alerts file (``rules: [...]``), or one default rule; ``overrides`` apply to every rule."""
    raw: list[dict[str, Any]] = [{"name": "negative_surge"}]
    if path:
        import yaml

        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        raw = doc.get("rules") if isinstance(doc, dict) else None  # type: ignore[assignment]
        if not isinstance(raw, list) or not raw:
            sys.exit(f"error: {path}: expected a non-empty list under 'rules:', got {raw!r}.")
    rules = []
    for i, r in enumerate(raw):
        unknown = set(r) - RULE_KEYS
        if unknown:
            sys.exit(f"error: {path}: rules[{i}] has unknown key(s) {sorted(unknown)}; allowed: {sorted(RULE_KEYS)}.")
        rule = Rule(**{**r, **{k: v for k, v in overrides.items() if v is not None}})
        if not 0 <= rule.above < 1 or rule.window_minutes <= 0 or rule.min_items < 1:
            sys.exit(f"error: rules[{i}] ({rule.name}): need 0 <= above < 1, window_minutes > 0, min_items >= 1; "
                     f"got above={rule.above}, window_minutes={rule.window_minutes}, min_items={rule.min_items}.")
        rules.append(rule)
    return rules


def parse_line(line: str) -> tuple[datetime, str]:
    """(time, text) of one input line: ``ISO-time<TAB>text``, or plain text stamped with the current time."""
    head, sep, rest = line.partition("\t")
    if sep:
        try:
            return datetime.fromisoformat(head.strip()), rest.strip()
        except ValueError:
            pass
    return datetime.now(), line.strip()


def batches(lines: Iterable[str], size: int) -> Iterator[list[tuple[datetime, str]]]:
    """Non-blank lines parsed and grouped ``size`` at a time (the last batch may be shorter)."""
    batch: list[tuple[datetime, str]] = []
    for line in lines:
        if line.strip():
            batch.append(parse_line(line.rstrip("\n")))
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def find_run(path: str) -> Path:
    """A run directory given relative to the current folder, or else to this script's folder."""
    for candidate in (Path(path), Path(__file__).resolve().parent / path):
        if candidate.exists():
            return candidate
    sys.exit(f"error: run directory {path!r} not found. Train it first (taskfit train recipe.yaml) or give --run.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("input", nargs="?", help="file of lines (default: standard input)")
    p.add_argument("--run", default="runs/news-sentiment", help="sentiment run directory")
    p.add_argument("--topic-run", help="optional topic run directory (adds a topic to every item)")
    p.add_argument("--alerts", help="alert rules YAML (default: one negative_surge rule)")
    p.add_argument("--above", type=float, help="override every rule's threshold")
    p.add_argument("--window-minutes", type=float, help="override every rule's window")
    p.add_argument("--min-items", type=int, help="override every rule's minimum items")
    p.add_argument("--batch", type=int, default=16, help="lines scored together (1 for a live feed)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per item and per alert event")
    args = p.parse_args(argv)
    rules = load_rules(args.alerts, {"above": args.above, "window_minutes": args.window_minutes,
                                     "min_items": args.min_items})

    from taskfit.inference import Predictor  # imported late: --help and rule errors answer without torch

    sentiment = Predictor.load(find_run(args.run))
    missing = [r.label for r in rules if r.label not in sentiment.labels]
    if missing:
        sys.exit(f"error: rule label(s) {missing} are not labels of the model {sentiment.labels}.")
    if any(r.topic for r in rules) and not args.topic_run:
        sys.exit("error: a rule counts one topic only (topic: ...), which needs the topic model: give --topic-run.")
    topics = Predictor.load(find_run(args.topic_run)) if args.topic_run else None
    lines = open(args.input, encoding="utf-8") if args.input else sys.stdin  # noqa: SIM115
    items = alerts = 0
    main_rule = rules[0]
    for batch in batches(lines, max(1, args.batch)):
        texts = [t for _, t in batch]
        preds = sentiment.predict(texts, top_k=len(sentiment.labels))
        kinds = topics.predict(texts, top_k=1) if topics else [None] * len(texts)
        for (at, text), pred, kind in zip(batch, preds, kinds, strict=True):
            items += 1
            topic = kind["label"] if kind else None
            probs = {t["label"]: t["score"] for t in pred["top"]}
            events = []
            for rule in rules:
                share, n, event = rule.update(at, pred["label"], topic)
                if event:
                    events.append({"event": event, "rule": rule.name, "time": at.isoformat(), "share": share,
                                   "window_items": n})
                if rule is main_rule:
                    main_share, main_n = share, n
            record = {"time": at.isoformat(), "text": text, "label": pred["label"],
                      f"p_{main_rule.label}": round(probs[main_rule.label], 4), "topic": topic,
                      "window_items": main_n, "share": round(main_share, 4)}
            if args.jsonl:
                print(json.dumps(record, ensure_ascii=False))
            else:
                print(f"{at:%H:%M:%S}  {pred['label']:>5} {probs[main_rule.label]:.2f}  {main_rule.label} share "
                      f"{main_share:.2f} ({main_n} in {main_rule.window_minutes:g} min)"
                      + (f"  [{topic}]" if topic else "") + f"  {text[:60]}")
            for ev in events:
                alerts += ev["event"] == "ALERT"
                if args.jsonl:
                    print(json.dumps(ev, ensure_ascii=False))
                else:
                    print(f"{ev['event'].upper() if ev['event'] == 'ALERT' else ev['event']} {ev['rule']}: "
                          f"share {ev['share']:.2f} over {ev['window_items']} items at {ev['time']}")
        sys.stdout.flush()  # a live feed shows each batch as soon as it is scored
    if not args.jsonl:
        print(f"\n{items} items scored, {alerts} alert(s) raised.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
