"""Image triage: confident predictions are automated, the rest go to a review list for a person.

Scores every image under ``--images`` with the trained run (taskfit's Predictor) and takes the top class's
probability as the confidence. For each threshold it reports the automation rate (share of images with
confidence >= threshold) and the error rate among those automated images (when the true class is known from
the image's folder name); images below ``--threshold`` are written to the review list, least confident first.

Usage (from the folder you ran ``taskfit train`` in)::

    python triage.py --images data/incoming                       # table + review_list.csv at 0.8
    python triage.py --images data/incoming --max-error 0.05      # also: the lowest threshold meeting 5% errors
    python triage.py --images new_photos/ --threshold 0.9 --review today_review.csv
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def triage_table(confidence: Sequence[float], correct: Sequence[bool] | None,
                 thresholds: Sequence[float]) -> list[dict[str, float | int | None]]:
    """Per threshold: ``threshold``, ``automated`` (count), ``automation_rate``, ``review`` (count) and
    ``error_rate`` among the automated images (None without true labels, or when nothing is automated)."""
    rows: list[dict[str, float | int | None]] = []
    n = len(confidence)
    for t in thresholds:
        auto = [i for i, c in enumerate(confidence) if c >= t]
        errors = None
        if correct is not None and auto:
            errors = sum(1 for i in auto if not correct[i]) / len(auto)
        rows.append({"threshold": t, "automated": len(auto), "automation_rate": len(auto) / n if n else 0.0,
                     "review": n - len(auto), "error_rate": errors})
    return rows


def lowest_threshold(table: Sequence[dict[str, float | int | None]], max_error: float) -> float | None:
    """The lowest threshold (most automation) whose error rate is at most ``max_error``; None if none is."""
    ok = [r for r in table if r["error_rate"] is not None and float(r["error_rate"]) <= max_error]
    return min(float(r["threshold"]) for r in ok) if ok else None  # type: ignore[arg-type]


def find_images(folder: Path) -> list[tuple[Path, str | None]]:
    """(image path, true class or None): images in class sub-folders carry the folder name as their class."""
    found = []
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
            found.append((p, p.parent.name if p.parent != folder else None))
    return found


def write_review(path: Path, rows: list[tuple[str, str, float, str | None]]) -> None:
    """Write ``image,predicted,confidence,true`` rows atomically (a temp file beside it, then a rename)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "predicted", "confidence", "true"])
    w.writerows([(img, pred, f"{conf:.4f}", true or "") for img, pred, conf, true in rows])
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buf.getvalue(), encoding="utf-8")
    os.replace(tmp, path)


def find_run(path: str) -> Path:
    """A run directory given relative to the current folder, or else to this script's folder."""
    for candidate in (Path(path), Path(__file__).resolve().parent / path):
        if candidate.exists():
            return candidate
    sys.exit(f"error: run directory {path!r} not found. Train it first (taskfit train recipe.yaml) or give --run.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--images", default="data/incoming", help="folder of images (class sub-folders: known truth)")
    p.add_argument("--run", default="runs/image-triage", help="run directory of recipe.yaml")
    p.add_argument("--thresholds", default="0.5,0.6,0.7,0.8,0.9,0.95,0.99", help="thresholds of the table")
    p.add_argument("--threshold", type=float, default=0.8, help="below this, an image goes to the review list")
    p.add_argument("--max-error", type=float, help="report the lowest threshold with at most this error rate")
    p.add_argument("--review", default="review_list.csv", help="where to write the review list (CSV)")
    args = p.parse_args(argv)
    thresholds = sorted(float(t) for t in args.thresholds.split(",") if t.strip())
    if not all(0 <= t <= 1 for t in [*thresholds, args.threshold]):
        sys.exit(f"error: thresholds must lie in [0, 1]; got {thresholds} and --threshold {args.threshold}.")
    images = find_images(Path(args.images))
    if not images:
        sys.exit(f"error: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {args.images!r}.")

    from taskfit.inference import Predictor  # imported late: --help and input errors answer without torch

    model = Predictor.load(find_run(args.run))
    probs = model.predict_proba([str(path) for path, _ in images])
    best = probs.argmax(axis=1)
    conf = [float(probs[i, b]) for i, b in enumerate(best)]
    pred = [model.labels[b] for b in best]
    truth = [t for _, t in images]
    known = all(t in model.labels for t in truth)  # folder names are the model's classes
    correct = [pr == t for pr, t in zip(pred, truth, strict=True)] if known else None
    table = triage_table(conf, correct, thresholds)
    print(f"{len(images)} images; true classes {'known from folder names' if known else 'unknown'}")
    print(f"{'threshold':>9} {'automated':>10} {'rate':>6} {'review':>7} {'error rate':>10}")
    for r in table:
        err = "-" if r["error_rate"] is None else f"{float(r['error_rate']):.3f}"
        print(f"{r['threshold']:>9.2f} {r['automated']:>10} {r['automation_rate']:>6.2f} "
              f"{r['review']:>7} {err:>10}")
    if args.max_error is not None and known:
        best_t = lowest_threshold(table, args.max_error)
        print(f"lowest threshold with error rate <= {args.max_error:g}: "
              + (f"{best_t:g}" if best_t is not None else "none of the thresholds"))
    review = sorted(((str(path), pr, c, t) for (path, t), pr, c in zip(images, pred, conf, strict=True)
                     if c < args.threshold), key=lambda r: r[2])
    write_review(Path(args.review), review)
    print(f"{len(review)} image(s) below {args.threshold:g} written to {args.review} (least confident first).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
