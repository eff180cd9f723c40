"""``taskfit audit RUN_DIR``: the trust report of a run (HTML + JSON + model card)."""

from __future__ import annotations

from pathlib import Path

import typer

from taskfit.commands.common import console, fail, offline_defaults
from taskfit.errors import ConfigError, TaskfitError


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)


def audit(
    run_dir: Path = typer.Argument(..., help="A finished run directory."),
    data: Path | None = typer.Option(None, "--data", help="Labelled rows to measure on (default: the run's "
                                     "test split)."),
    group_column: str | None = typer.Option(None, "--group-column", help="Column naming each row's group "
                                            "(default: the recipe's fairness.group_column)."),
    attacks: str | None = typer.Option(None, "--attacks", help="Comma-separated attack names (default: by the "
                                       "data's language; see `taskfit attack --help`)."),
    rows: int = typer.Option(200, "--rows", min=1, help="Held-out rows attacked."),
    explain: int = typer.Option(6, "--explain", min=0, help="Predictions explained (half right, half wrong)."),
    lang: str = typer.Option("en", "--lang", help="Language of the report: en or zh."),
    intended_use: str | None = typer.Option(None, "--intended-use", help="Intended use for the model card."),
    skip: str | None = typer.Option(None, "--skip", help="Comma-separated sections not to measure now: "
                                    "provenance, pii, privacy, robustness, fairness, explanations."),
) -> None:
    """Audit a run: data provenance, personal data, DP budget, robustness under attack, fairness per group and
    explanations, with a pass / warning / not-assessed verdict each; writes audit.html, audit.json and
    model_card.md into the run directory."""
    offline_defaults()
    from rich.table import Table

    from taskfit.audit import AuditOptions, run_audit

    try:
        if lang not in ("en", "zh"):
            raise ConfigError(f"--lang must be 'en' or 'zh', got {lang!r}.")
        opts = AuditOptions(data=data, group_column=group_column, rows=rows, explain=explain,
                            attacks=[a.strip() for a in attacks.split(",") if a.strip()] if attacks else None,
                            lang=lang,  # type: ignore[arg-type]
                            intended_use=intended_use,
                            skip={s.strip() for s in skip.split(",") if s.strip()} if skip else set())
        result = run_audit(run_dir, opts, note=lambda m: console.print(f"[dim]{m}[/]", highlight=False))
    except TaskfitError as e:
        fail(e)
    style = {"pass": "green", "warn": "yellow", "not assessed": "dim"}
    table = Table(title=f"audit of {result.run_dir.name}")
    for col in ("section", "status", "verdict"):
        table.add_column(col, overflow="fold")
    for f in result.findings:
        table.add_row(f.key, f"[{style[f.status]}]{f.status}[/]", f.verdict)
    console.print(table)
    console.print(f"[bold]audit:[/] {result.html}\n[bold]json:[/] {result.json}\n"
                  f"[bold]model card:[/] {result.run_dir / 'model_card.md'}")
