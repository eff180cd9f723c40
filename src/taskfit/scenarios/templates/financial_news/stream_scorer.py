"""Streaming news-sentiment scorer: reads news lines, scores them, prints the running negative share, alerts.

Each input line is ``ISO-time<TAB>text`` (the item's own time) or just ``text`` (then the time it was read).
Items are scored with the sentiment run (and, with ``--topic-run``, the topic run) through taskfit's
Predictor, in small batches. The alert rules are the ``label_share`` rules of the recipe's ``monitor:`` block
(the same block ``taskfit serve`` uses): for each, the scorer keeps a sliding window of the last
``window_minutes`` and prints an ``ALERT`` line when the share of the watched label in the window goes above
``above`` (with at least ``monitor.min_count`` items), and a ``resolved`` line when it falls back.

Usage (from the folder you ran ``taskfit train`` in, so that ``runs/`` is found)::

    python stream_scorer.py data/stream.tsv                 # rules: runs/news-sentiment/recipe.yaml
    python stream_scorer.py data/stream.tsv --rules recipe.yaml --above 0.5
    tail -f news.log | python stream_scorer.py --batch 1
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


@dataclass
class Rule:
    """One ``label_share`` alert rule with its sliding window of (time, predicted the watched label).

    The fields mirror the recipe's ``monitor:`` block (``taskfit.config.AlertRule`` / ``MonitorConfig``), so the
    scorer raises the same alerts offline that ``taskfit serve`` raises online.
    """

    name: str
    label: str
    above: float
    window_minutes: float
    min_count: int
    cooldown_minutes: float = 0.0
    window: deque[tuple[datetime, bool]] = field(default_factory=deque)
    active: bool = False
    last_alert: datetime | None = None

    def update(self, at: datetime, label: str | None) -> tuple[float, int, str | None]:
        """Add one scored item (``label`` None: not counted, e.g. another topic); return (share of the watched
        label in the window, items in the window, "ALERT" / "resolved" / None)."""
        if label is not None:
            self.window.append((at, label == self.label))
        while self.window and self.window[0][0] <= at - timedelta(minutes=self.window_minutes):
            self.window.popleft()
        n = len(self.window)
        share = sum(hit for _, hit in self.window) / n if n else 0.0
        firing = n >= self.min_count and share > self.above
        event = None
        if firing and not self.active:
            cooled = self.last_alert is None or at - self.last_alert >= timedelta(minutes=self.cooldown_minutes)
            if cooled:  # like the service: a rule that fired stays quiet for cooldown_minutes
                event, self.active, self.last_alert = "ALERT", True, at
        elif not firing and self.active:
            event, self.active = "resolved", False
        return share, n, event


def load_rules(path: Path, overrides: dict[str, Any]) -> list[Rule]:
    """The ``label_share`` rules of the ``monitor:`` block of a recipe (or any YAML file holding one), validated
    by taskfit's own schema; ``overrides`` (above, window_minutes, min_count) apply to every rule."""
    import yaml

    from taskfit.config import MonitorConfig

    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    block = doc.get("monitor") if isinstance(doc, dict) else None
    if not isinstance(block, dict):
        sys.exit(f"error: {path}: no monitor: block with rules (see the recipe.yaml of this scenario).")
    try:
        monitor = MonitorConfig.model_validate(block)
    except ValueError as e:
        sys.exit(f"error: {path}: monitor: {e}")
    rules = [Rule(name=r.name, label=str(r.label), above=float(r.above if r.above is not None else 0.5),
                  window_minutes=r.window_minutes or monitor.window_minutes, min_count=monitor.min_count,
                  cooldown_minutes=monitor.cooldown_minutes)
             for r in monitor.rules if r.kind == "label_share" and r.below is None]
    if not rules:
        sys.exit(f"error: {path}: monitor.rules has no label_share rule with an 'above' threshold to watch.")
    for rule in rules:
        for key, value in overrides.items():
            if value is not None:
                setattr(rule, key, value)
        if not 0 <= rule.above < 1 or rule.window_minutes <= 0 or rule.min_count < 1:
            sys.exit(f"error: rule {rule.name}: need 0 <= above < 1, window_minutes > 0, min_count >= 1; got "
                     f"above={rule.above}, window_minutes={rule.window_minutes}, min_count={rule.min_count}.")
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
    p.add_argument("--rules", help="YAML with a monitor: block, e.g. recipe.yaml (default: the run's recipe.yaml)")
    p.add_argument("--topic", help="count only items of this topic in the rules (needs --topic-run)")
    p.add_argument("--above", type=float, help="override every rule's threshold")
    p.add_argument("--window-minutes", type=float, help="override every rule's window")
    p.add_argument("--min-count", type=int, help="override the fewest items in a window before a rule judges")
    p.add_argument("--batch", type=int, default=16, help="lines scored together (1 for a live feed)")
    p.add_argument("--jsonl", action="store_true", help="one JSON object per item and per alert event")
    args = p.parse_args(argv)
    if args.topic and not args.topic_run:
        sys.exit("error: --topic counts one topic only, which needs the topic model: give --topic-run.")
    overrides = {"above": args.above, "window_minutes": args.window_minutes, "min_count": args.min_count}
    # rules before the model: a bad rule file answers at once
    rules = load_rules(Path(args.rules), overrides) if args.rules else []
    run = find_run(args.run)
    rules = rules or load_rules(run / "recipe.yaml", overrides)

    from taskfit.inference import Predictor  # imported late: --help and rule errors answer without torch

    sentiment = Predictor.load(run)
    missing = [r.label for r in rules if r.label not in sentiment.labels]
    if missing:
        sys.exit(f"error: rule label(s) {missing} are not labels of the model {sentiment.labels}.")
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
                counted = args.topic is None or topic == args.topic
                share, n, event = rule.update(at, pred["label"] if counted else None)
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
