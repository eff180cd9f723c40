"""The ``taskfit`` command line.

User errors (every :class:`TaskfitError`) print their message without a traceback and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from taskfit.commands import register_all
from taskfit.commands.common import console, err_console
from taskfit.commands.common import fail as _fail
from taskfit.commands.common import offline_defaults as _offline_defaults
from taskfit.errors import TaskfitError
from taskfit.train.progress import Progress as TrainProgress

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="taskfit: fine-tune a pretrained model on your own data, measured and reported.")

class BarProgress(TrainProgress):
    """Training progress as a rich bar with steps, loss, samples/s and ETA."""

    def __init__(self) -> None:
        self.bar = Progress(TextColumn("[bold]train"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("ETA"),
                            TimeRemainingColumn(), console=console, transient=False)
        self.task_id: Any = None

    def note(self, message: str) -> None:
        console.print(message, highlight=False, markup=False)

    def start(self, total_steps: int, done_steps: int) -> None:
        self.bar.start()
        self.task_id = self.bar.add_task("train", total=total_steps, completed=done_steps, info="")

    def step(self, step: int, loss: float, lr: float, samples_per_s: float) -> None:
        self.bar.update(self.task_id, completed=step,
                        info=f"loss {loss:.4f}  lr {lr:.2e}  {samples_per_s:.0f} samples/s")

    def evaluated(self, record: dict[str, Any]) -> None:
        parts = [f"{k.removeprefix('valid_')} {v:.4f}" for k, v in record.items() if k.startswith("valid_")]
        self.bar.console.print(f"  step {record['step']} (epoch {record['epoch']:.2f}) valid: " + ", ".join(parts))

    def stop(self) -> None:
        self.bar.stop()


def _print_run(summary: Any) -> None:
    from taskfit.evaluate import render_history

    render_history(console, summary.train.history)
    shown = summary.test_metrics or summary.valid_metrics
    summary.task.render(console, shown, "test" if summary.test_metrics else "validation")
    t = summary.train
    console.print(f"\n[bold]run directory:[/] {summary.run_dir}\n[bold]report:[/] {summary.report}")
    console.print(f"trained {t.steps} steps in {t.train_seconds:.1f} s ({t.samples_per_s:.0f} samples/s, "
                  f"{t.precision} on {t.device})")
    if summary.test_metrics:
        console.print(f"[bold green]test {summary.task.summary(summary.test_metrics)}[/]", highlight=False)


@app.command()
def train(
    recipe: Path | None = typer.Argument(None, help="Recipe YAML file."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides, e.g. train.lr=3e-5 method.r=4"),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    nproc: int = typer.Option(1, "--nproc", min=1, help="Data-parallel processes on this machine (torchrun, DDP; "
                              "gloo on CPU, nccl on GPUs). The global batch stays train.batch_size."),
) -> None:
    """Fine-tune as the recipe says (or resume a run), then evaluate and write the report."""
    if nproc > 1 and "RANK" not in os.environ:
        raise typer.Exit(_torchrun(nproc))
    _offline_defaults()
    from taskfit.config import load_recipe

    try:
        if resume is None and recipe is None:
            raise typer.BadParameter("give a recipe file, or --resume RUN_DIR")
        # the recipe is read and checked before torch and transformers load (seconds on a small CPU)
        parsed = None if recipe is None or resume is not None else load_recipe(recipe, overrides or [])
        from taskfit.pipeline import train_recipe

        if parsed is None:
            summary = train_recipe(resume_dir=resume, progress=BarProgress())
        else:
            summary = train_recipe(parsed, progress=BarProgress())
    except TaskfitError as e:
        _fail(e)
    except KeyboardInterrupt:
        err_console.print("\ninterrupted; the last checkpoint is kept. Continue with "
                          "`taskfit train --resume RUN_DIR`.")
        raise typer.Exit(130) from None
    if os.environ.get("RANK", "0") == "0":
        _print_run(summary)


def _torchrun(nproc: int) -> int:
    """Start ``nproc`` copies of this very command under torchrun on this machine; return its exit status.

    Multi-node: run ``python -m torch.distributed.run --nnodes N --node-rank R --nproc-per-node P
    --rdzv-backend c10d --rdzv-endpoint HOST:PORT -m taskfit train recipe.yaml`` on every node instead.
    """
    import subprocess

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "taskfit", *args]
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 130


@app.command()
def validate(
    recipe: Path = typer.Argument(..., help="Recipe YAML file."),
    overrides: list[str] | None = typer.Argument(None, help="Dotted overrides."),
) -> None:
    """Check a recipe, its files, columns, labels and model without training; report every problem at once."""
    _offline_defaults()
    from taskfit.validate import validate_recipe

    try:
        report = validate_recipe(recipe, overrides or [])
    except TaskfitError as e:
        _fail(e)
    for issue in report["issues"]:
        rows = ", ".join(map(str, issue["rows"][:10]))
        console.print(f"[yellow]{issue['severity']}[/] {issue['message']}" + (f" (rows {rows})" if rows else ""),
                      highlight=False)
    console.print(f"[bold green]ok[/]: {report['summary']}", highlight=False)


_METHOD_LR = {"full": 1e-4, "lora": 5e-4, "frozen": 2e-3}


def demo_recipe(dataset: str, data_path: Path, method: str | None, epochs: float | None, out: Path) -> dict[str, Any]:
    """A recipe tree for a demo on a packaged dataset: the dataset's own defaults, then the CLI's choices."""
    import copy

    from taskfit.data.packaged import DATASETS

    ds = DATASETS.get(dataset)
    tree: dict[str, Any] = copy.deepcopy(ds.recipe)
    tree.setdefault("task", ds.task)
    tree.setdefault("data", {})["train"] = str(data_path)
    train = tree.setdefault("train", {})
    train.setdefault("epochs", 2)
    own = tree.get("method", "full")
    own = own if isinstance(own, str) else own.get("name", "full")
    if method is not None and method != own:
        tree["method"] = {"name": method}
        train["lr"] = _METHOD_LR.get(method, 1e-4)
    if epochs is not None:
        train["epochs"] = epochs
        train.pop("max_steps", None)
    tree["output"] = {"dir": str(out), "name": f"demo-{dataset}-{method or own}", "overwrite": True}
    return tree


@app.command()
def demo(
    dataset: str | None = typer.Option(None, help="Packaged dataset (`taskfit dataset --list`); default bbc_news, "
                                       "or zh_sentiment with --lang zh."),
    lang: str = typer.Option("en", help="en or zh: the language of the default dataset."),
    rows: int | None = typer.Option(None, min=50, help="Use a sample of this many rows, at least 50 (default: the "
                                    "dataset's demo size, all rows for bbc_news)."),
    method: str | None = typer.Option(None, help="Tuning method: full, lora or frozen (default: the dataset's)."),
    epochs: float | None = typer.Option(None, min=0.01, help="Training epochs (default: the dataset's)."),
    out: Path = typer.Option(Path("runs"), help="Where to put the run directory."),
) -> None:
    """Fine-tune a packaged real model on a packaged real dataset (any task) and report."""
    _offline_defaults()
    from taskfit.config import parse_recipe
    from taskfit.data.packaged import DATASETS, write_dataset
    from taskfit.errors import ConfigError

    try:
        if lang not in ("en", "zh"):
            raise ConfigError(f"--lang must be en or zh, got {lang!r}.")
        name = dataset or ("zh_sentiment" if lang == "zh" else "bbc_news")
        if name not in DATASETS:
            raise ConfigError(f"Unknown packaged dataset {name!r}; available: {', '.join(DATASETS.names())}.")
        ds = DATASETS.get(name)
        from taskfit.pipeline import train_recipe  # torch and transformers: after the arguments are checked

        data = write_dataset(name, out / "data" / f"{name}{ds.suffix}", n=rows or ds.demo_rows)
        console.print(f"data: {data} ({ds.description}; task {ds.task}; licence: {ds.licence})", highlight=False)
        summary = train_recipe(parse_recipe(demo_recipe(name, data, method, epochs, out)), progress=BarProgress())
    except TaskfitError as e:
        _fail(e)
    _print_run(summary)


@app.command("eval")
def eval_cmd(
    run_dir: Path = typer.Argument(..., help="A run directory (or its model/ directory)."),
    data: Path = typer.Option(..., "--data", help="Labelled file with the same columns as training."),
    json_out: Path | None = typer.Option(None, "--json", help="Also write the metrics as JSON here."),
) -> None:
    """Score a trained model on a labelled file."""
    _offline_defaults()
    from taskfit.inference import Predictor
    from taskfit.utils.io import atomic_write_json

    try:
        predictor = Predictor.load(run_dir)
        metrics = predictor.evaluate_file(data)
    except TaskfitError as e:
        _fail(e)
    predictor.task.render(console, metrics, str(data))
    if json_out:
        atomic_write_json(json_out, metrics)


@app.command()
def predict(
    run_dir: Path = typer.Argument(..., help="A run directory (or its model/ directory)."),
    texts: list[str] | None = typer.Argument(None, help="Inputs: texts, queries, prompts or image paths."),
    input: Path | None = typer.Option(None, "--input", help="File of texts (csv/tsv/jsonl/parquet, or .txt lines)."),
    output: Path | None = typer.Option(None, "--output", help="Write JSONL predictions here (default stdout)."),
    top_k: int = typer.Option(3, min=1, help="How many labels with probabilities to show (at least 1)."),
) -> None:
    """Predict for inputs given inline or in a file (labels with probabilities, entities, top-k answers,
    generated text, image labels: whatever the model's task gives)."""
    _offline_defaults()
    from taskfit.inference import Predictor
    from taskfit.utils.io import atomic_write_text

    try:
        predictor = Predictor.load(run_dir)
        items = list(texts or [])
        if input is not None:
            items += _read_texts(input, predictor.task.required_columns(labelled=False)[0])
        if not items:
            raise typer.BadParameter("give inputs as arguments or --input FILE")
        preds = predictor.predict(items, top_k=top_k)
    except TaskfitError as e:
        _fail(e)
    lines = [json.dumps({"input": t, **p}, ensure_ascii=False) for t, p in zip(items, preds, strict=True)]
    if output:
        atomic_write_text(output, "\n".join(lines) + "\n")
        console.print(f"{len(lines)} predictions written to {output}")
    else:
        sys.stdout.write("\n".join(lines) + "\n")


def _read_texts(path: Path, column: str) -> list[str]:
    from taskfit.data.readers import read_table
    from taskfit.errors import DataError

    if path.suffix.lower() == ".txt":
        if not path.is_file():
            raise DataError("File not found.", source=path)
        return [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    df = read_table(path)
    if column not in df.columns:
        cols = [str(c) for c in df.columns]
        raise DataError(f"column {column!r} not found; available columns: {', '.join(cols)}.",
                        source=path)
    return [str(t) for t in df[column].tolist()]


@app.command()
def models() -> None:
    """List the models usable offline: packaged ones (installed or not), the local Hugging Face cache and
    taskfit's cache of converted models. Reads files only; converts and downloads nothing."""
    from rich.table import Column

    from taskfit.models import list_models

    # Names are what users copy into model.name: never truncate them. Paths go below the table (they are
    # long and would squeeze every column on an 80-column terminal).
    table = Table(Column("name", no_wrap=True), "source", "kind", "languages", "params", "status", "size MB")
    notes = []
    for m in list_models():
        table.add_row(m["name"], m["source"], m["kind"], m["languages"], m["params"], m["status"], m["size_mb"])
        notes.append(f"{m['name']}: {m['path'] if m['path'] != '-' else ''}"
                     + (f" install with: {m['install']}" if m.get("install") else ""))
    console.print(table)
    for note in notes:
        console.print(note, highlight=False, markup=False, soft_wrap=True)


@app.command()
def schema(markdown: bool = typer.Option(False, help="Print the recipe reference as Markdown.")) -> None:
    """Print the recipe's JSON schema (or its Markdown reference)."""
    from taskfit.config import json_schema
    from taskfit.docs import recipe_reference

    sys.stdout.write(recipe_reference() if markdown else json.dumps(json_schema(), indent=2) + "\n")


@app.command()
def dataset(
    name: str | None = typer.Argument(None, help="A packaged dataset name (omit it to list them)."),
    dest: Path | None = typer.Argument(None, help="Where to write it (a file, or a folder for images)."),
    rows: int | None = typer.Option(None, min=1, help="Random sample of this many rows."),
    list_: bool = typer.Option(False, "--list", help="List the packaged datasets."),
) -> None:
    """Write a packaged real dataset in its task's format (or list them with --list)."""
    from taskfit.data.packaged import DATASETS, write_dataset
    from taskfit.errors import ConfigError

    if list_ or name is None:
        table = Table("name", "task", "lang", "description", "licence")
        for n in DATASETS.names():
            d = DATASETS.get(n)
            table.add_row(d.name, d.task, d.language, d.description, d.licence)
        console.print(table)
        return
    try:
        if dest is None:
            raise ConfigError("Give DEST, the file (or folder, for images) to write the dataset to.")
        path = write_dataset(name, dest, n=rows)
    except TaskfitError as e:
        _fail(e)
    console.print(f"wrote {path}")


register_all(app)  # scan-pii, attack, explain, audit, federate


def main() -> None:
    app()


if __name__ == "__main__":
    main()
