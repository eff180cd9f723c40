"""Customer-service assistant over two taskfit runs: the intent, the best FAQ answer, or a hand-over to a person.

For each question it asks the intent model (``recipe.yaml``) for the intent and its probability, and the FAQ
model (``faq.yaml``) for the closest stored answer and its cosine score. When either is below its threshold
the assistant does not guess: it hands the conversation over to a person (in the question's language).

Usage (from the folder you ran ``taskfit train`` in, so that ``runs/`` is found)::

    python assistant.py "What is AI?" "我今天很难过"          # questions as arguments
    python assistant.py --questions questions.txt           # one question per line
    echo "Do you like sports?" | python assistant.py        # from standard input
    python assistant.py --questions questions.txt --json    # one JSON object per line

Pick the thresholds on held-out questions: higher values hand more conversations to people and make fewer
wrong automatic answers.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

HANDOVER = {"en": "I'm not sure I understood. I'm handing you over to a person who can help.",
            "zh": "抱歉，我不太确定您的问题。正在为您转接人工客服。"}
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def language(text: str) -> str:
    """'zh' when the text contains Chinese characters, else 'en'."""
    return "zh" if _CJK.search(text) else "en"


def decide(question: str, intent: dict[str, Any], faq: dict[str, Any], min_intent: float,
           min_answer: float) -> dict[str, Any]:
    """The assistant's answer to one question.

    Args:
        question: the customer's text.
        intent: the intent model's prediction (``label``, ``score`` = probability).
        faq: the FAQ model's prediction (``answer``, ``score`` = cosine similarity of the best answer).
        min_intent: hand over when the intent probability is below this.
        min_answer: hand over when the best answer's similarity is below this.

    Returns:
        ``question, lang, intent, intent_confidence, answer, answer_score, action`` ("answer" or "handover")
        and ``reply`` (the answer, or the hand-over message in the question's language).
    """
    lang = language(question)
    reasons = []
    if intent["score"] < min_intent:
        reasons.append(f"intent confidence {intent['score']:.2f} < {min_intent:g}")
    if faq["score"] < min_answer:
        reasons.append(f"answer score {faq['score']:.2f} < {min_answer:g}")
    action = "handover" if reasons else "answer"
    return {"question": question, "lang": lang, "intent": intent["label"],
            "intent_confidence": float(intent["score"]), "answer": faq["answer"],
            "answer_score": float(faq["score"]), "action": action,
            "reply": HANDOVER[lang] if reasons else faq["answer"], "why": "; ".join(reasons)}


def find_run(path: str) -> Path:
    """A run directory given relative to the current folder, or else to this script's folder."""
    given = Path(path)
    for candidate in (given, Path(__file__).resolve().parent / given):
        if candidate.exists():
            return candidate
    sys.exit(f"error: run directory {path!r} not found. Train it first (taskfit train recipe.yaml / faq.yaml) "
             "or point --intent-run / --faq-run at it.")


def read_questions(args: argparse.Namespace) -> list[str]:
    """Questions from the arguments, else --questions FILE, else standard input; blank lines skipped."""
    if args.text:
        lines = list(args.text)
    elif args.questions:
        lines = Path(args.questions).read_text(encoding="utf-8").splitlines()
    else:
        lines = sys.stdin.read().splitlines()
    return [q.strip() for q in lines if q.strip()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("text", nargs="*", help="questions (else --questions FILE or standard input)")
    parser.add_argument("--questions", help="file with one question per line")
    parser.add_argument("--intent-run", default="runs/cs-intent", help="run directory of recipe.yaml")
    parser.add_argument("--faq-run", default="runs/cs-faq", help="run directory of faq.yaml")
    parser.add_argument("--min-intent", type=float, default=0.5, help="hand over below this intent probability")
    parser.add_argument("--min-answer", type=float, default=0.6, help="hand over below this answer similarity")
    parser.add_argument("--json", action="store_true", help="print one JSON object per question")
    args = parser.parse_args(argv)
    questions = read_questions(args)
    if not questions:
        sys.exit("error: no questions given (arguments, --questions FILE or standard input).")

    from taskfit.inference import Predictor  # imported late: --help answers without loading torch

    intents = Predictor.load(find_run(args.intent_run)).predict(questions, top_k=1)
    answers = Predictor.load(find_run(args.faq_run)).predict(questions, top_k=1)
    handed = 0
    for q, i, a in zip(questions, intents, answers, strict=True):
        out = decide(q, i, a, args.min_intent, args.min_answer)
        handed += out["action"] == "handover"
        if args.json:
            print(json.dumps(out, ensure_ascii=False))
        else:
            print(f"Q: {q}\n   intent {out['intent']} ({out['intent_confidence']:.2f}), answer score "
                  f"{out['answer_score']:.2f} -> {out['action']}\n   A: {out['reply']}")
    if not args.json:
        print(f"\n{len(questions) - handed} of {len(questions)} answered automatically, {handed} handed over "
              f"(thresholds: intent {args.min_intent:g}, answer {args.min_answer:g}).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
