"""``taskfit scan-pii`` end to end (a real process: counts table, masked copy, no raw value printed), its
errors, and a real training run with ``data.pii_mask: true`` whose outputs hold counts and no raw value."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import tiny_recipe
from taskfit.cli import app
from taskfit.config import parse_recipe

PHONE, EMAIL, CN_ID, IP = "+86 139 1234 5678", "li.na@example.com", "11010519491231002X", "192.168.10.23"
RAW = (PHONE, "13912345678", EMAIL, CN_ID, IP)


@pytest.fixture(scope="module")
def tickets(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rows = [
        {"id": 1, "text": f"您好，我的手机{PHONE}，邮箱{EMAIL}谢谢", "label": "account"},
        {"id": 2, "text": f"身份证{CN_ID}挂失，登录IP {IP}", "label": "account"},
        {"id": 3, "text": "订单2024101512345678已发货，金额¥99.00", "label": "order"},
        {"id": 4, "text": "Order SF1234567890123 arrived on 2024-10-15", "label": "order"},
    ]
    path = tmp_path_factory.mktemp("pii") / "tickets.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_scan_pii_process_prints_counts_and_writes_a_masked_copy(tickets: Path, tmp_path: Path) -> None:
    out = tmp_path / "masked.csv"
    proc = subprocess.run([sys.executable, "-m", "taskfit", "scan-pii", str(tickets), "--mask", str(out)],
                          capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "150"},
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    table = [line for line in proc.stdout.splitlines() if "text" in line and "│" in line]
    cells = [c.strip() for c in table[0].split("│") if c.strip()]
    header = [c.strip() for c in next(ln for ln in proc.stdout.splitlines() if "column" in ln).split("┃") if c.strip()]
    row = dict(zip(header, cells, strict=True))
    assert (row["PHONE"], row["EMAIL"], row["CN_ID"], row["IP_ADDRESS"], row["total"]) == ("1", "1", "1", "1", "4")
    assert "2 of 4 rows contain personal data" in proc.stdout
    assert not any(v in proc.stdout + proc.stderr for v in RAW)
    masked = pd.read_csv(out, dtype=str)
    assert masked["text"].tolist() == ["您好，我的手机<PHONE>，邮箱<EMAIL>谢谢",
                                      "身份证<CN_ID>挂失，登录IP <IP_ADDRESS>",
                                      "订单2024101512345678已发货，金额¥99.00",
                                      "Order SF1234567890123 arrived on 2024-10-15"]
    assert masked["label"].tolist() == ["account", "account", "order", "order"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # the temp file was renamed


def test_scan_pii_json_and_bad_input(tickets: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["scan-pii", str(tickets), "--column", "text", "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["columns"] == {"text": {"PHONE": 1, "EMAIL": 1, "CN_ID": 1, "IP_ADDRESS": 1}}
    assert summary["rows"] == 4 and summary["rows_with_pii"] == 2 and summary["masked_copy"] is None

    res = runner.invoke(app, ["scan-pii", str(tickets), "--column", "body"])
    assert res.exit_code == 2
    assert "--column 'body' not found; available columns: id, text, label." in res.output
    res = runner.invoke(app, ["scan-pii", str(tickets), "--mask", str(tickets)])
    assert res.exit_code == 2 and "--mask must name a new file" in res.output
    res = runner.invoke(app, ["scan-pii", str(tmp_path / "missing.csv")])
    assert res.exit_code == 2 and "File not found" in res.output
    res = runner.invoke(app, ["scan-pii", str(tickets), "--mask", str(tmp_path / "out.xlsx")])
    assert res.exit_code == 2 and "--mask: cannot write a '.xlsx' file" in res.output


def test_list_cells_from_parquet_are_scanned_item_by_item() -> None:
    import numpy as np

    from taskfit.trust.pii import mask_frame

    frame = pd.DataFrame({"negatives": [np.array([f"mail {EMAIL}", "no"], dtype=object), np.array([], dtype=object)],
                          "n": [1, 2]})
    masked, counts = mask_frame(frame, ["negatives", "n"])
    assert counts["by_column"] == {"negatives": {"EMAIL": 1}, "n": {}} and counts["rows_with_pii"] == 1
    assert list(masked["negatives"][0]) == ["mail <EMAIL>", "no"] and masked["n"].tolist() == [1, 2]


def test_training_run_masks_before_anything_is_written(tmp_path: Path, bbc_csv: Path, tiny_model_dir: Path) -> None:
    from taskfit.pipeline import train_recipe

    df = pd.read_csv(bbc_csv).head(60)
    for i, extra in enumerate([f" Reader contact: {EMAIL}.", f" Call {PHONE}.", f" Login from {IP}."] * 2):
        df.loc[i * 5, "text"] = df.loc[i * 5, "text"] + extra
    path = tmp_path / "bbc.csv"
    df.to_csv(path, index=False)
    tree = tiny_recipe(path, tiny_model_dir, tmp_path / "runs", max_steps=2)
    tree["data"]["pii_mask"] = True
    summary = train_recipe(parse_recipe(tree))

    results = json.loads((summary.run_dir / "results.json").read_text(encoding="utf-8"))
    pii = results["pii"]
    assert {t: pii["by_type"].get(t, 0) for t in ("EMAIL", "PHONE", "IP_ADDRESS")} == \
        {"EMAIL": 2, "PHONE": 2, "IP_ADDRESS": 2}
    assert pii["rows"] == 60 and pii["rows_changed"] >= 6 and set(pii["by_split"]) == {"train", "valid", "test"}
    report = summary.report.read_text(encoding="utf-8")
    assert "Privacy: PII masking" in report
    for f in summary.run_dir.rglob("*"):
        if f.is_file() and f.suffix in (".json", ".html", ".md", ".jsonl", ".yaml", ".txt"):
            text = f.read_text(encoding="utf-8", errors="ignore")
            assert not any(v in text for v in RAW), f

    # The model learnt <EMAIL>-style placeholders: at prediction its inputs are masked the same way, so a raw
    # address and its placeholder give the same probabilities.
    from taskfit.inference import Predictor

    pred = Predictor.load(summary.run_dir)
    assert pred.meta["pii_mask"] is True
    raw = pred.predict_proba([f"Write to {EMAIL} about the match."])
    placeholder = pred.predict_proba(["Write to <EMAIL> about the match."])
    assert np.allclose(raw, placeholder)
