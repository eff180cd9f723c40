"""The federated section of report.html: validation metrics per round (plot), a per-round table and the
client shares. Everything shown is escaped; raw rows never appear (only counts)."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_rounds(rounds: Sequence[Mapping[str, Any]]) -> bytes:
    """PNG: every ``valid_<metric>`` (left) and the validation and client training loss (right) per round.

    Args:
        rounds: records of ``rounds.jsonl`` (``round`` 0 is the untrained model).
    """
    import io

    metric_keys = sorted({k for r in rounds for k, v in r.items()
                          if k.startswith("valid_") and k not in ("valid_loss", "valid_ece") and isinstance(v, float)})
    fig = Figure(figsize=(10, 3.8))
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    for key in metric_keys:
        pts = [(r["round"], r[key]) for r in rounds if isinstance(r.get(key), float)]
        left.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key.removeprefix("valid_"))
    left.set_title("Global model on validation")
    for key in ("valid_loss", "train_loss"):
        pts = [(r["round"], r[key]) for r in rounds if isinstance(r.get(key), float)]
        right.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=key)
    right.set_title("Loss")
    for ax in (left, right):
        ax.set_xlabel("round")
        ax.set_xticks([int(r["round"]) for r in rounds])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    fig.clear()
    return buf.getvalue()


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}"
    return html.escape("" if v is None else str(v))


def federated_section(summary: Mapping[str, Any]) -> tuple[str, str]:
    """``(heading, html)`` for report.html from the ``federated`` block of results.json."""
    rounds = summary["per_round"]
    img = base64.b64encode(plot_rounds(rounds)).decode("ascii")
    keys = ["round", "clients_sampled", "clients_ok", "clients_failed", "train_loss", "valid_loss",
            *(["epsilon_max"] if summary.get("dp") else []),
            *sorted({k for r in rounds for k in r if k.startswith("valid_") and k != "valid_loss"}),
            "bytes_down", "bytes_up", "seconds"]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(k))}</td>" for k in keys) + "</tr>" for r in rounds)
    shares = ", ".join(f"client {i}: {n}" for i, n in enumerate(summary["client_rows"]))
    failures = [f"round {r['round']}: {f['reason']}" for r in rounds for f in r.get("failures", [])]
    fail_html = ("<ul>" + "".join(f"<li>{html.escape(x)}</li>" for x in failures) + "</ul>") if failures else \
        "<p class=\"muted\">No client failed.</p>"
    parts = [
        f"<p>{summary['clients']} clients, {summary['rounds']} rounds, strategy <b>{html.escape(summary['strategy'])}"
        f"</b>, partition <b>{html.escape(summary['partition'])}</b>, mode {html.escape(summary['mode'])}. "
        f"Each round exchanges {summary['bytes_per_client']:,} bytes per client and direction "
        f"({summary['exchange_share']:.2%} of the {summary['full_model_bytes']:,} bytes of the full model).</p>",
        f"<p>Training rows per client: {html.escape(shares)}.</p>",
        *([f"<p>Client differential privacy (DP-SGD on each client): ε target {summary['dp']['epsilon_target']:g}, "
           f"largest ε spent by a client {_cell(summary['dp']['epsilon_spent_max'])} "
           f"({html.escape(summary['dp']['accountant'])} accountant).</p>"] if summary.get("dp") else []),
        f'<img alt="federated rounds" src="data:image/png;base64,{img}">',
        f"<table><tr>{head}</tr>{body}</table>",
        "<h3>Client failures</h3>", fail_html,
    ]
    return "Federated training", "\n".join(parts)
