"""``taskfit explain RUN_DIR "text" ...``: which words drove a trained model's prediction (integrated
gradients over the input embeddings, captum), as coloured text in the terminal, JSON, or an HTML page."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, err_console, fail, offline_defaults
from taskfit.errors import TaskfitError

#: how many words the terminal table lists per text
TOP_WORDS = 8


def _style(score: float | None, scale: float) -> str:
    """A rich background style: green for support of the explained label, red against, paler when small."""
    if score is None or scale <= 0:
        return ""
    t = min(abs(score) / scale, 1.0)
    base = (26, 127, 55) if score > 0 else (207, 34, 46)
    r, g, b = (round(255 + (c - 255) * (0.15 + 0.85 * t)) for c in base)
    return f"black on rgb({r},{g},{b})" if t < 0.55 else f"white on rgb({r},{g},{b})"


def render(expl: dict[str, Any]) -> None:
    """Print one explanation: a summary line, the coloured text and the top words by |score|."""
    from rich.table import Table
    from rich.text import Text

    from taskfit.trust.explain import fmt_score

    if "label" in expl:
        head = (f"predicted {expl['label']} ({expl['probability']:.3f}); explained {expl['target']} "
                f"(p {expl['target_score']:.3f}, baseline {expl['baseline_score']:.3f})")
    else:
        head = f"predicted score {expl['prediction']:.4f} (baseline {expl['baseline_score']:.4f})"
    console.print(Text(f"{head}; IG delta {expl['delta']:+.1e}" + ("; text truncated" if expl["truncated"] else ""),
                       style="bold"))
    scale = max((abs(w["score"]) for w in expl["words"] if w["score"] is not None), default=0.0)
    line, pos = Text(), 0
    for w in expl["words"]:
        line.append(expl["text"][pos:w["start"]])
        line.append(w["word"], style=_style(w["score"], scale))
        pos = w["end"]
    line.append(expl["text"][pos:])
    console.print(line)
    table = Table("word", "attribution", "attention", title="top words", title_justify="left")
    ranked = sorted((w for w in expl["words"] if w["score"] is not None), key=lambda w: -abs(w["score"]))
    for w in ranked[:TOP_WORDS]:
        att = w.get("attention")
        table.add_row(Text(w["word"], style=_style(w["score"], scale)), fmt_score(w["score"]),
                      "" if att is None else f"{att:.3f}")
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add ``taskfit explain`` to the CLI."""

    @app.command()
    def explain(
        run_dir: Path = typer.Argument(..., help="A run directory (or its model/ directory)."),
        texts: list[str] = typer.Argument(..., help="Texts to explain."),
        target: str | None = typer.Option(None, "--target", help="Label to explain (default: the predicted one)."),
        html: Path | None = typer.Option(None, "--html", help="Also write a standalone HTML page here."),
        json_out: bool = typer.Option(False, "--json", help="Print the explanations as JSON instead of colours."),
        steps: int = typer.Option(32, min=2, max=512, help="Integration steps (more: smaller IG delta, slower)."),
    ) -> None:
        """Explain predictions per word: integrated gradients (captum) over the input embeddings, plus the
        last layer's attention. Green words raise the explained label's probability, red words lower it."""
        offline_defaults()
        from taskfit.inference import Predictor
        from taskfit.trust.explain import explain_texts, explanation_section

        try:
            p = Predictor.load(run_dir)
            out = explain_texts(p.task, p.model, p.processor, p.labels, texts, p.device, target=target,
                                steps=steps)
        except TaskfitError as e:
            fail(e)
        if json_out:
            sys.stdout.write(json.dumps(out, ensure_ascii=False, indent=1) + "\n")
        else:
            for expl in out:
                render(expl)
        if html is not None:
            from taskfit.evaluate.html import write_page

            write_page(html, f"taskfit explain: {Path(run_dir).name}", [explanation_section(out)])
            # with --json, stdout carries only the JSON document
            (err_console if json_out else console).print(f"HTML written to {html}", highlight=False)
