"""The recipe reference in Markdown, generated from the pydantic schema (so it is never out of date)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from taskfit.config import TASK_OPTIONS, Recipe
from taskfit.methods import METHODS


def _type_name(annotation: Any) -> str:
    text = str(annotation).replace("typing.", "").replace("pathlib.", "").replace("<class '", "")
    return text.replace("'>", "").replace("NoneType", "null").replace("|", "\\|")


def _rows(model: type[BaseModel], prefix: str) -> list[str]:
    lines: list[str] = []
    for name, field in model.model_fields.items():
        if prefix == "" and name in ("method", "task"):
            continue
        ann = field.annotation
        sub = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
        if sub is not None:
            lines += _rows(sub, f"{prefix}{name}.")
            continue
        default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
        desc = (field.description or "").replace("|", "\\|")
        lines.append(f"| `{prefix}{name}` | {_type_name(ann)} | {default} | {desc} |")
    return lines


def recipe_reference() -> str:
    """Markdown tables of every recipe key with its type, default and description."""
    out = ["# Recipe reference", "", "Generated from the schema by `taskfit schema --markdown`.", "",
           "| key | type | default | description |", "|---|---|---|---|"]
    out += _rows(Recipe, "")
    out += ["", "## task (choose one by `name`; `task: ner` is short for `task: {name: ner}`)", ""]
    for name, cls in TASK_OPTIONS.items():
        out += [f"### `{name}`: {(cls.__doc__ or '').split(chr(10) + chr(10))[0].strip()}", ""]
        rows = [r for r in _rows(cls, "task.") if not r.startswith("| `task.name`")]
        head = ["| key | type | default | description |", "|---|---|---|---|"]
        out += [*head, *rows, ""] if rows else ["(no options)", ""]
    out += ["", "## method (choose one by `name`)", ""]
    for name in METHODS.names():
        m = METHODS.get(name)
        out += [f"### `{name}`: {m.description}", "", "| key | type | default | description |", "|---|---|---|---|"]
        out += _rows(m.config_cls, "method.")
        out.append("")
    return "\n".join(out) + "\n"
