"""Two scenarios end to end through the CLI: ``taskfit new`` → ``taskfit train`` (a few steps of the tiny BERT
via dotted overrides) → the scenario's own script on the trained runs."""

from __future__ import annotations

import csv
import importlib.util
import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import run_taskfit
from taskfit.scenarios import create_scenario

FEW_STEPS = ["train.max_steps=6", "train.batch_size=16", "train.checkpoint_every=100", "data.limit=400"]


def script(path: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    res = subprocess.run([sys.executable, str(path), *args], capture_output=True, text=True, cwd=cwd, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "", "TOKENIZERS_PARALLELISM": "false"})
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    return res


def train(recipe: Path, model: Path, cwd: Path, *extra: str) -> None:
    runs = cwd / "runs"
    run_taskfit(["train", str(recipe), f"model.name={model}", f"output.dir={runs}", *FEW_STEPS, *extra])


def test_customer_service_answers_or_hands_over_by_threshold(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "cs"
    create_scenario("customer-service", folder)
    train(folder / "recipe.yaml", tiny_model_dir, tmp_path)
    train(folder / "faq.yaml", tiny_model_dir, tmp_path)
    questions = ["What is AI?", "Do you like sports?", "你是机器人吗", "我今天很难过"]

    def ask(min_intent: float, min_answer: float) -> list[dict]:
        # run from tmp_path: the script finds runs/cs-intent and runs/cs-faq relative to the working folder
        res = script(folder / "assistant.py", *questions, "--json", "--min-intent", str(min_intent),
                     "--min-answer", str(min_answer), cwd=tmp_path)
        return [json.loads(line) for line in res.stdout.splitlines()]

    answered = ask(0.0, -1.0)
    with open(folder / "data" / "faq.csv", encoding="utf-8", newline="") as fh:
        faq_answers = {r["answer"] for r in csv.DictReader(fh)}
    with open(folder / "data" / "intents.csv", encoding="utf-8", newline="") as fh:
        intents = {r["intent"] for r in csv.DictReader(fh)}
    assert [a["question"] for a in answered] == questions and [a["lang"] for a in answered] == ["en"] * 2 + ["zh"] * 2
    for a in answered:
        assert a["action"] == "answer" and a["reply"] == a["answer"] and a["why"] == ""
        assert a["answer"] in faq_answers and a["intent"] in intents
    # a threshold at an observed confidence splits the questions exactly there (the script's own rule, in process)
    spec = importlib.util.spec_from_file_location("assistant", folder / "assistant.py")
    assert spec is not None and spec.loader is not None
    assistant = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(assistant)
    cut = sorted(a["intent_confidence"] for a in answered)[2]
    split = [assistant.decide(a["question"], {"label": a["intent"], "score": a["intent_confidence"]},
                              {"answer": a["answer"], "score": a["answer_score"]}, cut, -1.0) for a in answered]
    assert [s["action"] for s in split] == ["handover" if a["intent_confidence"] < cut else "answer"
                                            for a in answered]
    low_answer = assistant.decide("你好", {"label": "greetings", "score": 0.99}, {"answer": "你好", "score": 0.4}, 0.5,
                                  0.6)
    assert low_answer["action"] == "handover" and low_answer["why"] == "answer score 0.40 < 0.6"
    assert low_answer["reply"] == "抱歉，我不太确定您的问题。正在为您转接人工客服。"
    handed = ask(1.01, -1.0)
    assert {h["action"] for h in handed} == {"handover"}
    assert [h["reply"] for h in handed][1:3] == [
        "I'm not sure I understood. I'm handing you over to a person who can help.",
        "抱歉，我不太确定您的问题。正在为您转接人工客服。"]
    assert "intent confidence" in handed[0]["why"] and "1.01" in handed[0]["why"]


def test_news_monitor_streams_scores_and_window_shares(tmp_path: Path, tiny_model_dir: Path) -> None:
    folder = tmp_path / "news"
    create_scenario("financial-news-monitor", folder)
    train(folder / "recipe.yaml", tiny_model_dir, tmp_path)
    # a low threshold and short window so that even a barely trained model crosses it at some point
    # rules: the monitor: block of the run's recipe.yaml (min_count 10, cooldown 10 minutes)
    res = script(folder / "stream_scorer.py", str(folder / "data" / "stream.tsv"), "--jsonl", "--above", "0.3",
                 "--window-minutes", "10", "--batch", "7", cwd=tmp_path)
    out = [json.loads(line) for line in res.stdout.splitlines()]
    items = [o for o in out if "label" in o]
    events = [o for o in out if "event" in o]
    assert len(items) == 120 and {o["label"] for o in items} <= {"pos", "neg"}
    assert all(o["p_neg"] >= 0.5 for o in items if o["label"] == "neg")
    # recompute every running share and alert from the printed labels alone
    window: list[tuple[datetime, bool]] = []
    active, last_alert, expected = False, None, []
    for o in items:
        at = datetime.fromisoformat(o["time"])
        window = [(t, neg) for t, neg in [*window, (at, o["label"] == "neg")] if t > at - timedelta(minutes=10)]
        share = sum(neg for _, neg in window) / len(window)
        assert o["window_items"] == len(window) and o["share"] == pytest.approx(share, abs=1e-4)
        firing = len(window) >= 10 and share > 0.3
        if firing and not active and (last_alert is None or at - last_alert >= timedelta(minutes=10)):
            expected.append(("ALERT", o["time"]))
            active, last_alert = True, at
        elif not firing and active:
            expected.append(("resolved", o["time"]))
            active = False
    assert [(e["event"], e["time"]) for e in events] == expected
    # stdin, plain text lines (stamped when read) and the human-readable summary
    proc = subprocess.run([sys.executable, str(folder / "stream_scorer.py"), "--batch", "1"], cwd=tmp_path,
                          input="Markets fell sharply today.\n\nShares rallied.\n", capture_output=True, text=True,
                          env={"HF_HUB_OFFLINE": "1", "PATH": ""}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.rstrip().endswith("2 items scored, 0 alert(s) raised.")


def test_stream_scorer_rejects_bad_rules_before_loading_a_model(tmp_path: Path) -> None:
    folder = tmp_path / "news"
    create_scenario("financial-news-monitor", folder)
    bad = tmp_path / "bad.yaml"
    bad.write_text("monitor:\n  rules:\n    - {name: x, kind: label_share, label: neg, treshold: 0.5}\n")

    def scorer(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(folder / "stream_scorer.py"), *args], cwd=tmp_path, input="",
                              capture_output=True, text=True, timeout=120)

    proc = scorer("--rules", str(bad))
    assert proc.returncode == 1 and "treshold" in proc.stderr and "Extra inputs are not permitted" in proc.stderr
    proc = scorer("--rules", str(folder / "recipe.yaml"), "--above", "1.5")
    assert proc.returncode == 1 and "need 0 <= above < 1" in proc.stderr and "above=1.5" in proc.stderr
    proc = scorer("--rules", str(folder / "topic.yaml"))
    assert proc.returncode == 1 and "topic.yaml: no monitor: block with rules" in proc.stderr
    bad.write_text("monitor:\n  rules:\n    - {name: drift, kind: drift_psi}\n")
    proc = scorer("--rules", str(bad))
    assert proc.returncode == 1 and "no label_share rule with an 'above' threshold" in proc.stderr
    proc = scorer("--rules", str(folder / "recipe.yaml"))  # good rules, but no trained run yet
    assert proc.returncode == 1 and "run directory 'runs/news-sentiment' not found" in proc.stderr


def test_image_triage_trades_automation_for_review(tmp_path: Path) -> None:
    folder = tmp_path / "img"
    create_scenario("image-triage", folder)
    # the packaged EfficientNet-Lite0, head only, 3 steps: enough for confidences that spread
    run_taskfit(["train", str(folder / "recipe.yaml"), f"output.dir={tmp_path / 'runs'}", "train.max_steps=3",
                 "train.batch_size=16", "train.checkpoint_every=100"])
    review = tmp_path / "review.csv"
    res = script(folder / "triage.py", "--images", str(folder / "data" / "incoming"), "--thresholds",
                 "0,0.2,0.3,0.5,1", "--threshold", "0.3", "--max-error", "1", "--review", str(review), cwd=tmp_path)
    lines = res.stdout.splitlines()
    assert lines[0] == "300 images; true classes known from folder names"
    table = [ln.split() for ln in lines[2:7]]
    assert [float(r[0]) for r in table] == [0, 0.2, 0.3, 0.5, 1]
    assert table[0][1:4] == ["300", "1.00", "0"]  # at 0 everything is automated
    automated = [int(r[1]) for r in table]
    assert automated == sorted(automated, reverse=True) and all(int(r[1]) + int(r[3]) == 300 for r in table)
    assert "lowest threshold with error rate <= 1: 0" in res.stdout  # any error rate is <= 1
    with open(review, encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == int(table[2][3])  # the review list holds exactly the images below 0.3
    conf = [float(r["confidence"]) for r in rows]
    assert conf == sorted(conf) and all(c < 0.3 for c in conf)
    assert all(Path(r["image"]).parent.name == r["true"] for r in rows)
