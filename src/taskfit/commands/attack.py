"""``taskfit attack RUN_DIR``: how well a trained text classifier holds up against typos, word swaps and
deletions, embedding-space synonyms and, for Chinese, homophones, look-alike characters and full-/half-width
forms. Writes ``RUN_DIR/robustness.json`` and an HTML fragment ``RUN_DIR/robustness.html`` (the audit embeds
the same section); ``--compare OTHER_RUN`` attacks a second model on the same rows (e.g. the same recipe
without adversarial training) and puts both side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from taskfit.commands.common import console, fail, offline_defaults
from taskfit.errors import ConfigError, TaskfitError


def _label(run_dir: Path) -> str:
    """A short name of a run for the report: its folder and how it was trained against attacks."""
    found = [d / "results.json" for d in (run_dir, run_dir.parent) if (d / "results.json").is_file()]
    adv = json.loads(found[0].read_text(encoding="utf-8")).get("adversarial") if found else None
    how = f"{str(adv.get('method', '')).upper()} ε={adv.get('epsilon')}" if adv else "no adversarial training"
    return f"{run_dir.resolve().name} ({how})"


def attack_run(run_dir: Path, *, data: Path | None = None, names: list[str] | None = None, rows: int | None = 200,
               budget: float = 0.15, tries: int = 5, seed: int = 0, examples: int = 3, compare: Path | None = None,
               on_progress: Any = None) -> dict[str, Any]:
    """Attack a run's model (and ``compare``'s on the same rows); the result of
    :func:`taskfit.trust.robustness.run_attacks` with ``run``, ``label``, ``source`` and maybe ``compare``."""
    from taskfit.inference import Predictor
    from taskfit.trust.robustness import run_attacks, unsupported_reason

    predictor = Predictor.load(run_dir)
    reason = unsupported_reason(predictor.task)
    if reason:
        from taskfit.errors import IncompatibleError

        raise IncompatibleError(reason)
    other = Predictor.load(compare) if compare is not None else None
    if other is not None and other.labels != predictor.labels:
        raise ConfigError(f"--compare {str(compare)!r} has labels {other.labels}, but {str(run_dir)!r} has "
                          f"{predictor.labels}; compare runs trained on the same labels.")
    from taskfit.inference import held_out_rows

    frame, source = held_out_rows(Path(run_dir), predictor.task, predictor.meta, data)

    def attack(p: Any, where: Path) -> dict[str, Any]:
        res = run_attacks(p.task, p.model, p.processor, p.labels, p.device, frame, names=names, rows=rows,
                          budget=budget, tries=tries, seed=seed, dtype=p.dtype, examples=examples,
                          on_progress=on_progress)
        return {"run": str(where), "label": _label(where), "source": source, **res}

    result = attack(predictor, Path(run_dir))
    if other is not None and compare is not None:
        result["compare"] = attack(other, compare)
    return result


def _table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    runs = [result] + ([result["compare"]] if result.get("compare") else [])
    table = Table(title=f"robustness: {result['rows']} {result['language']} rows, budget {result['budget']:.0%}, "
                  f"{result['tries']} tries", title_justify="left")
    table.add_column("attack")
    for r in runs:
        table.add_column(f"{r['label']}\naccuracy", justify="right")
        table.add_column("success rate", justify="right")
    table.add_column("perturbation", justify="right")
    table.add_row("clean", *[c for r in runs for c in (f"{r['clean_accuracy']:.3f}", "")], "")
    for a in result["attacks"]:
        cells = []
        for r in runs:
            b = next(x for x in r["attacks"] if x["name"] == a["name"])
            cells += [f"{b['accuracy_under_attack']:.3f}", f"{b['success_rate']:.3f}"]
        table.add_row(a["name"], *cells, f"{a['mean_perturbation']:.3f}")
    return table


def register(app: typer.Typer) -> None:
    """Add ``taskfit attack`` to the CLI."""
    app.command("attack")(attack)


def attack(
    run_dir: Path = typer.Argument(..., help="A finished run directory (or its model/ directory)."),
    data: Path | None = typer.Option(None, "--data", help="Labelled rows to attack (default: the run's test split)."),
    attacks: str | None = typer.Option(None, "--attacks", help="Comma-separated attacks: typo, word_swap, "
                                       "word_delete, synonym, homophone, shape, width (default by language: en → "
                                       "typo,word_swap,word_delete,synonym; zh → homophone,shape,width,typo)."),
    rows: int = typer.Option(200, "--rows", min=1, help="Attack at most this many rows (a seeded sample)."),
    budget: float = typer.Option(0.15, "--budget", min=0.01, max=1.0, help="Share of words (en) or characters "
                                 "(zh) an attack may change."),
    tries: int = typer.Option(5, "--tries", min=1, max=100, help="Random perturbations tried per row."),
    seed: int = typer.Option(0, "--seed", help="Seed of the row sample and the perturbations."),
    examples: int = typer.Option(3, "--examples", min=0, help="Successful attacks shown per attack in the report "
                                 "(they quote test rows; 0 leaves the texts out)."),
    compare: Path | None = typer.Option(None, "--compare", help="Another run to attack on the same rows, e.g. the "
                                        "same recipe without adversarial training."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the result as JSON here."),
) -> None:
    """Attack a trained text classifier with small input perturbations; report accuracy under attack and the
    attack success rate per attack (RUN_DIR/robustness.json and robustness.html)."""
    offline_defaults()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from taskfit.trust.robustness import robustness_section
    from taskfit.utils.io import atomic_write_json, atomic_write_text

    names = [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None
    bar = Progress(TextColumn("[bold]attack {task.fields[name]}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=console, transient=True)
    ids: dict[str, Any] = {}

    def progress(name: str, attempt: int) -> None:
        if name not in ids:
            ids[name] = bar.add_task(name, total=tries, name=name)
        bar.update(ids[name], completed=attempt)

    try:
        with bar:
            result = attack_run(run_dir, data=data, names=names, rows=rows, budget=budget, tries=tries, seed=seed,
                                examples=examples, compare=compare, on_progress=progress)
    except TaskfitError as e:
        fail(e)
    out_dir = run_dir
    atomic_write_json(out_dir / "robustness.json", result)
    title, html = robustness_section(result)
    atomic_write_text(out_dir / "robustness.html", f"<section><h2>{title}</h2>\n{html}\n</section>\n")
    if json_out is not None:
        atomic_write_json(json_out, result)
    console.print(_table(result))
    console.print(f"rows from: {result['source']}", highlight=False, markup=False)
    console.print(f"[bold]robustness:[/] {out_dir / 'robustness.json'}  [bold]html:[/] {out_dir / 'robustness.html'}")
