"""Small HTML building blocks shared by report sections, and a standalone page writer.

Fragments returned here are trusted HTML: every value from user data (labels, texts, file names,
group names) is escaped on the way in, so callers may pass raw strings.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from taskfit.utils.io import atomic_write_text


def esc(value: Any) -> str:
    """Escaped text of any value."""
    return html.escape(str(value), quote=True)


def cell(value: Any) -> str:
    """One <td>: numbers right-aligned (floats to 4 decimals), None as a dash, text escaped."""
    if value is None:
        return '<td class="muted">\u2014</td>'
    if isinstance(value, bool):
        return f"<td>{'yes' if value else 'no'}</td>"
    if isinstance(value, float):
        return f'<td class="num">{value:.4f}</td>'
    if isinstance(value, int):
        return f'<td class="num">{value:,}</td>'
    return f"<td>{esc(value)}</td>"


def html_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A table; header and cells are escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def img_tag(png: bytes, alt: str) -> str:
    """A PNG embedded as a data URI (the page keeps no external references)."""
    return f'<img alt="{esc(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'


def cards(items: Iterable[tuple[str, Any]]) -> str:
    """Summary cards: (label, value) pairs."""
    body = "".join(f'<div class="card"><div class="k">{esc(k)}</div><div class="v">{esc(v)}</div></div>'
                   for k, v in items)
    return f'<div class="cards">{body}</div>'


def write_page(path: str | Path, title: str, sections: Sequence[tuple[str, str]], *, intro: str = "",
               lang: str = "en") -> Path:
    """Write a standalone page (inline CSS, no scripts, no external references) atomically.

    Args:
        path: destination file.
        title: page title (escaped).
        sections: (heading, trusted html fragment) pairs; headings are escaped and get anchors.
        intro: trusted html shown under the title (e.g. :func:`cards`).
        lang: the page's ``<html lang>``.
    """
    from taskfit.evaluate.report import _CSS

    generated = _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
    toc = "".join(f'<li><a href="#s{i}">{esc(h)}</a></li>' for i, (h, _) in enumerate(sections))
    body = "".join(f'<h2 id="s{i}">{esc(h)}</h2>\n{frag}\n' for i, (h, frag) in enumerate(sections))
    page = (f'<!DOCTYPE html>\n<html lang="{esc(lang)}">\n<head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{esc(title)}</title>'
            f"<style>{_CSS}.ok{{color:#1a7f37;font-weight:600}}.warn{{color:#9a6700;font-weight:600}}"
            f".bad{{color:#cf222e;font-weight:600}}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n"
            f'<p class="sub">{esc(generated)}</p>\n{intro}\n<ul>{toc}</ul>\n{body}</body>\n</html>\n')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path
