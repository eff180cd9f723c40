"""`taskfit audit RUN_DIR`: one HTML + JSON trust report for a trained run, for compliance reviewers.

It gathers what the run recorded (data files and hashes, PII masking counts, the DP budget spent, the
adversarial training summary, fairness results) and measures what can be measured now on the run's own
held-out rows (personal data left in the training file, accuracy under attack, per-group metrics when a
group column is given, token attributions for right and wrong predictions). Each section ends in a status:
``pass``, ``warn`` (with the reason) or ``not assessed`` (with why). Everything lands in
``RUN_DIR/audit.json`` and ``RUN_DIR/audit.html`` (both written atomically) and an extended
``RUN_DIR/model_card.md``. Headings and verdicts come in English or Chinese (``--lang zh``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from taskfit.audit_text import MESSAGES, Lang, model_card_markdown
from taskfit.config import FairnessConfig, Recipe, load_recipe
from taskfit.errors import ConfigError, DataError, TaskfitError
from taskfit.evaluate.html import cards, esc, html_table, write_page
from taskfit.evaluate.report import report_to_json_safe
from taskfit.inference import Predictor, held_out_rows, model_dir_of
from taskfit.utils.io import atomic_write_json, atomic_write_text

Status = Literal["pass", "warn", "not assessed"]
SECTIONS = ("provenance", "pii", "privacy", "robustness", "fairness", "explanations")
REGRESSION_MAE_GAP = 0.25  # regression fairness: largest minus smallest group MAE, as a share of the overall MAE


@dataclass
class AuditOptions:
    """What the audit measures now (the recorded parts are always included)."""

    data: Path | None = None  #: labelled file to measure on (default: the run's own test split)
    group_column: str | None = None  #: fairness group column (default: the recipe's fairness block)
    attacks: list[str] | None = None  #: attack names (default: by the data's language)
    rows: int = 200  #: held-out rows attacked
    budget: float = 0.15  #: share of words / characters an attack may change
    explain: int = 6  #: explained examples (half right, half wrong where possible)
    lang: Lang = "en"
    intended_use: str | None = None
    skip: set[str] = field(default_factory=set)  #: section names not measured now
    seed: int = 0


@dataclass
class Finding:
    """One section of the audit."""

    key: str
    status: Status
    verdict: str
    data: dict[str, Any]
    html: str = ""


@dataclass
class AuditResult:
    run_dir: Path
    html: Path
    json: Path
    findings: list[Finding]

    def status(self, key: str) -> Status:
        return next(f.status for f in self.findings if f.key == key)


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


class _Auditor:
    """Runs the sections in order; each one is independent so a failure in one is reported, not fatal."""

    def __init__(self, run_dir: Path, opts: AuditOptions, note: Callable[[str], None]) -> None:
        self.run_dir, self.opts, self.note = run_dir, opts, note
        self.t = MESSAGES[opts.lang]
        self.predictor = Predictor.load(run_dir)
        self.meta = self.predictor.meta
        self.results = _read_json(run_dir / "results.json")
        recipe_path = run_dir / "recipe.yaml"
        self.recipe: Recipe | None = load_recipe(recipe_path) if recipe_path.is_file() else None
        self.task = self.predictor.task
        self._frame: pd.DataFrame | None = None

    # ---- the rows measured on ----------------------------------------------------------------
    def group_column(self) -> str | None:
        if self.opts.group_column:
            return self.opts.group_column
        if self.recipe is not None and self.recipe.fairness is not None:
            return self.recipe.fairness.group_column
        return None

    def frame(self) -> pd.DataFrame:
        """The labelled held-out rows: --data, else the run's test split (validation when it has none)."""
        if self._frame is not None:
            return self._frame
        group = self.group_column()
        frame, _ = held_out_rows(self.run_dir, self.task, self.meta, self.opts.data, [group] if group else None)
        if group and group not in frame.columns:
            raise DataError(f"Group column {group!r} not found; available columns: "
                            f"{', '.join(c for c in map(str, frame.columns) if not c.startswith('_'))}.",
                            source=self.opts.data, column=group)
        self._frame = frame
        return self._frame

    # ---- sections -----------------------------------------------------------------------------
    def provenance(self) -> Finding:
        rows, changed = [], []
        for split, d in (self.meta.get("data") or {}).items():
            path = Path(d["file"])
            now = None
            if path.exists():
                from taskfit.pipeline import file_sha256

                now = file_sha256(path)
            state = self.t["unchanged"] if now == d["sha256"] else (self.t["missing"] if now is None
                                                                     else self.t["changed"])
            if now != d["sha256"]:
                changed.append(split)
            rows.append([split, d["file"], d["rows"], d["sha256"][:16], state])
        info = {"base_model": self.meta.get("base_model"), "method": (self.meta.get("method") or {}).get("name"),
                "created": self.meta.get("created"), "taskfit_version": self.meta.get("taskfit_version"),
                "task": self.meta.get("task"), "labels": self.meta.get("labels"),
                "hardware": self.results.get("hardware"), "data": self.meta.get("data"), "changed": changed}
        status: Status = "warn" if changed else "pass"
        verdict = self.t["provenance_changed"].format(", ".join(changed)) if changed else self.t["provenance_ok"]
        html = (html_table([self.t["split"], self.t["file"], self.t["rows"], "sha256", self.t["now"]], rows)
                + html_table([self.t["field"], self.t["value"]],
                             [[k, v if not isinstance(v, list) else ", ".join(map(str, v))]
                              for k, v in info.items() if k not in ("data", "hardware", "changed")]))
        return Finding("provenance", status, verdict, info, html)

    def pii(self) -> Finding:
        masked = self.results.get("pii")
        if self.task.name == "image_classification":
            return Finding("pii", "not assessed", self.t["pii_images"], {})
        from taskfit.trust.pii import scan_frame

        train_file = Path((self.meta.get("data") or {}).get("train", {}).get("file", ""))
        found: dict[str, Any] = {}
        if self.recipe is not None and train_file.is_file():
            splits = self.task.load_splits(self.recipe.data)
            found = scan_frame(splits.frames["train"], self.task.text_columns())
        total = int(sum(found.get("by_type", {}).values()))
        data = {"masked_at_training": masked, "found_in_training_file": found}
        if masked:
            status: Status = "pass"
            verdict = self.t["pii_masked"].format(sum(masked.get("by_type", {}).values()))
        elif total:
            status, verdict = "warn", self.t["pii_found"].format(total)
        elif found:
            status, verdict = "pass", self.t["pii_none"]
        else:
            return Finding("pii", "not assessed", self.t["pii_no_file"], data)
        rows = [[k, (masked or {}).get("by_type", {}).get(k), found.get("by_type", {}).get(k)]
                for k in sorted(set((masked or {}).get("by_type", {})) | set(found.get("by_type", {})))]
        html = html_table([self.t["type"], self.t["masked_count"], self.t["found_count"]], rows) if rows else ""
        return Finding("pii", status, verdict, data, html)

    def privacy(self) -> Finding:
        dp = self.results.get("privacy")
        if not dp:
            return Finding("privacy", "warn", self.t["dp_none"], {"dp": None})
        from taskfit.trust.dp import privacy_section

        verdict = self.t["dp_spent"].format(dp["epsilon_spent"], dp["delta"], dp["epsilon_target"])
        status: Status = "pass" if dp["epsilon_spent"] <= dp["epsilon_target"] + 1e-6 else "warn"
        return Finding("privacy", status, verdict, {"dp": dp}, privacy_section(dp)[1])

    def robustness(self) -> Finding:
        adv = self.results.get("adversarial")
        path = self.run_dir / "robustness.json"
        from taskfit.trust import robustness

        if path.is_file():
            result = _read_json(path)
        else:
            problem = robustness.unsupported_reason(self.task)
            if problem:
                return Finding("robustness", "not assessed", problem, {"adversarial_training": adv})
            self.note(self.t["running_attacks"])
            p = self.predictor
            result = robustness.run_attacks(p.task, p.model, p.processor, p.labels, p.device, self.frame(),
                                            names=self.opts.attacks, rows=self.opts.rows, budget=self.opts.budget,
                                            seed=self.opts.seed, dtype=p.dtype)
        worst = min(result["attacks"], key=lambda a: a["accuracy_under_attack"]) if result.get("attacks") else None
        data = {"attacks": result, "adversarial_training": adv}
        if worst is None:
            return Finding("robustness", "not assessed", self.t["no_attacks"], data)
        drop = result["clean_accuracy"] - worst["accuracy_under_attack"]
        status: Status = "warn" if drop > 0.10 else "pass"
        verdict = self.t["robust"].format(worst["name"], worst["accuracy_under_attack"], result["clean_accuracy"],
                                          worst["success_rate"])
        html = robustness.robustness_section(result)[1]
        if adv:
            html += f"<p>{esc(self.t['adv_trained'].format(adv.get('method'), adv.get('epsilon')))}</p>"
        return Finding("robustness", status, verdict, data, html)

    def fairness(self) -> Finding:
        group = self.group_column()
        recorded = self.results.get("fairness")
        if group is None and not recorded:
            return Finding("fairness", "not assessed", self.t["no_group"], {})
        from taskfit.trust import fairness

        if group is not None and (self.opts.group_column or not recorded):
            p = self.predictor
            cfg = (self.recipe.fairness if self.recipe is not None and self.recipe.fairness is not None
                   and self.recipe.fairness.group_column == group else FairnessConfig(group_column=group))
            result = fairness.fairness_on_frame(p.task, p.model, p.processor, p.labels, self.frame(), cfg,
                                                p.device, p.dtype)
        else:
            result = recorded or {}
        status: Status
        if result.get("kind") == "regression":
            # A regression has no selection rate: judge the spread of the error between groups, relative to
            # the overall error (warn when the worst group's MAE exceeds the best's by over REGRESSION_MAE_GAP).
            mae_gap, overall_mae = result.get("mae_gap"), (result.get("overall") or {}).get("mae")
            rel = mae_gap / overall_mae if mae_gap is not None and overall_mae else None
            status = "warn" if rel is not None and rel > REGRESSION_MAE_GAP else "pass"
            verdict = self.t["fair_regression"].format(result.get("group_column", group), _num(mae_gap),
                                                       _num(rel), result.get("worst_group", "-"))
        else:
            gap = result.get("demographic_parity_difference")
            eo = result.get("equalized_odds_difference")
            worst = max((g for g in (gap, eo) if g is not None), default=None)
            status = "warn" if worst is not None and worst > 0.10 else "pass"
            verdict = self.t["fair"].format(result.get("group_column", group), _num(gap), _num(eo),
                                            result.get("worst_group", "-"))
        html = "".join(f"<h3>{esc(t)}</h3>{h}" for t, h in fairness.fairness_sections(result))
        return Finding("fairness", status, verdict, result, html)

    def explanations(self) -> Finding:
        from taskfit.trust import explain

        problem = explain.unsupported_reason(self.task)
        if problem:
            return Finding("explanations", "not assessed", problem, {})
        p = self.predictor
        half = max(1, self.opts.explain // 2)
        self.note(self.t["running_explain"])
        items = explain.sample_explanations(p.task, p.model, p.processor, p.labels, self.frame(), p.device,
                                            n_correct=half, n_wrong=self.opts.explain - half)
        html = explain.explanation_section(items)[1]
        deltas = [abs(float(i.get("delta", 0.0))) for i in items]
        return Finding("explanations", "pass", self.t["explained"].format(len(items), max(deltas, default=0.0)),
                       {"examples": items}, html)


def _num(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, (int, float)) else "-"


def run_audit(run_dir: str | Path, opts: AuditOptions | None = None,
              note: Callable[[str], None] = lambda _m: None) -> AuditResult:
    """Audit a finished run; write audit.json, audit.html and the extended model_card.md into it.

    Raises:
        NotFittedError: the directory has no finished model.
        ConfigError / DataError: bad options or unreadable --data (before anything is measured).
    """
    opts = opts or AuditOptions()
    run_dir = model_dir_of(run_dir).parent  # a run directory or its model/ directory
    unknown = opts.skip - set(SECTIONS)
    if unknown:
        raise ConfigError(f"--skip got unknown section(s) {', '.join(sorted(unknown))}; sections: "
                          f"{', '.join(SECTIONS)}.")
    auditor = _Auditor(run_dir, opts, note)
    t = auditor.t
    if opts.data is not None or auditor.group_column():
        auditor.frame()  # bad --data / group column fail here, before anything is measured
    findings: list[Finding] = []
    for key in SECTIONS:
        if key in opts.skip:
            findings.append(Finding(key, "not assessed", t["skipped"], {}))
            continue
        note(f"{t['checking']} {t['h_' + key]}")
        try:
            findings.append(getattr(auditor, key)())
        except TaskfitError as e:  # e.g. a task an analysis does not support: reported, the rest goes on
            findings.append(Finding(key, "not assessed", str(e), {}))
    card = model_card_markdown(auditor.meta, auditor.results, findings, opts.lang, opts.intended_use)
    doc = {"run_dir": str(run_dir), "created": datetime.now(UTC).isoformat(timespec="seconds"),
           "language": opts.lang, "summary": {f.key: f.status for f in findings},
           "sections": {f.key: {"status": f.status, "verdict": f.verdict, "data": f.data} for f in findings},
           "model_card": card}
    json_path = run_dir / "audit.json"
    atomic_write_json(json_path, report_to_json_safe(doc))
    badge = {"pass": "ok", "warn": "warn", "not assessed": "muted"}
    intro = cards([(t["h_" + f.key], t["s_" + f.status.replace(" ", "_")]) for f in findings])
    sections = [(t["h_" + f.key], f'<p class="{badge[f.status]}">{esc(t["s_" + f.status.replace(" ", "_")])}: '
                 f"{esc(f.verdict)}</p>{f.html}") for f in findings]
    from markdown_it import MarkdownIt

    sections.append((t["h_card"], MarkdownIt("commonmark", {"html": False}).enable("table").render(card)))
    html_path = write_page(run_dir / "audit.html", t["title"].format(run_dir.name), sections, intro=intro,
                           lang="zh-CN" if opts.lang == "zh" else "en")
    atomic_write_text(run_dir / "model_card.md", card)
    return AuditResult(run_dir, html_path, json_path, findings)
