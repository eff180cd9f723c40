"""The console end to end: a real ``taskfit console`` process on a free loopback port over two real tiny runs,
driven by headless Chromium (Playwright, the system's /usr/bin/chromium; no browser is downloaded).

Screenshots go to ``test-output/console/`` at the repository root (or ``$TASKFIT_TEST_OUTPUT/console``).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from console.console_runs import EN_RUN, GROUPED_CSV, ZH_RUN, shared_runs

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="headless browser tests need /usr/bin/chromium "
                                "(Debian package chromium); browsers are never downloaded")
SHOTS = Path(os.environ.get("TASKFIT_TEST_OUTPUT", Path(__file__).resolve().parents[2] / "test-output")) / "console"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path, zh_csv: Path,
         bbc_csv: Path) -> Iterator[dict[str, Any]]:
    """Runs, an admin key in a SQLite store, and the console serving the Chinese run's model for the playground."""
    from taskfit.serve.db import Store

    base = tmp_path_factory.mktemp("console-e2e")
    runs = base / "runs"
    shared = shared_runs(tmp_path_factory, tiny_model_dir, zh_csv, bbc_csv)
    shutil.copytree(shared, runs)  # this console launches a run into its copy; the API tests keep theirs
    url = f"sqlite:///{base / 'console.db'}"
    with Store(url) as store:
        key = store.create_key("browser", scopes=["admin"])
    port = _free_port()
    log = open(base / "console.log", "wb")  # noqa: SIM115  (closed in the teardown below)
    proc = subprocess.Popen([sys.executable, "-m", "taskfit", "console", "--runs", str(runs), "--port", str(port),
                             "--db", url, "--serve", str(runs / ZH_RUN)], cwd=base, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True,
                            env={**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"})
    root = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (base / "console.log").read_text()[-3000:]
            try:
                if httpx.get(f"{root}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "console did not start in 120 s"
            time.sleep(0.5)
        yield {"root": root, "key": key, "runs": runs, "model": tiny_model_dir, "data": shared.parent / GROUPED_CSV}
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # the console stops its trainings, then exits
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture()
def page(browser: Any, site: dict[str, Any]) -> Iterator[Any]:
    """A fresh tab with the key entered; page errors fail the test."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda e: errors.append(str(e)))
    tab.goto(site["root"] + "/console/")
    tab.wait_for_selector("#key-input")
    tab.fill("#key-input", site["key"])
    tab.click("#key-form button")
    tab.wait_for_selector("#runs-table")
    yield tab
    context.close()
    assert not errors, errors


def shot(tab: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / name), full_page=True)


def test_key_is_asked_once_and_the_runs_list_shows(browser: Any, site: dict[str, Any]) -> None:
    tab = browser.new_page()
    tab.goto(site["root"] + "/console/")
    tab.fill("#key-input", "tfk_wrong")
    tab.click("#key-form button")
    # (the page's CSP forbids eval, so waits go through selectors rather than wait_for_function)
    tab.locator("#key-error", has_text="invalid or revoked API key").wait_for()
    tab.fill("#key-input", site["key"])
    tab.click("#key-form button")
    tab.wait_for_selector("#runs-table")
    names = tab.locator("#runs-table tr[data-run]").evaluate_all("rows => rows.map(r => r.dataset.run)")
    assert sorted(names) == sorted([ZH_RUN, EN_RUN])
    assert tab.evaluate("sessionStorage.getItem('taskfit.apiKey')") == site["key"]
    tab.reload()  # the key is kept for the tab: no second prompt
    tab.wait_for_selector("#runs-table")
    assert tab.locator("#login").is_hidden()
    shot(tab, "runs.png")
    tab.close()


def test_run_page_plots_and_report(page: Any, site: dict[str, Any]) -> None:
    page.click(f"#runs-table a:text-is('{ZH_RUN}')")
    page.wait_for_selector("#loss-plot.js-plotly-plot svg.main-svg")
    assert page.locator("#loss-plot .plotly").count() == 1
    assert page.locator("#loss-plot .scatterlayer .trace").count() == 2  # train and validation loss
    page.wait_for_selector("#confusion-plot svg.main-svg")
    page.wait_for_selector("#fairness-plot svg.main-svg")
    assert page.locator("#explanations .tokens").first.inner_text() == "质量很好，很满意"
    page.click("button[data-file='report.html']")
    frame = page.wait_for_selector("iframe.doc")
    assert frame.get_attribute("sandbox") == ""
    assert ZH_RUN in (frame.content_frame().title() if frame.content_frame() else "")
    shot(page, "run.png")


def test_compare_two_runs(page: Any) -> None:
    page.check(f"input.pick[value='{ZH_RUN}']")
    page.check(f"input.pick[value='{EN_RUN}']")
    page.click("#compare-btn")
    page.wait_for_selector("#compare-plot svg.main-svg")
    header = page.locator("#compare-table tr").first.inner_text()
    assert ZH_RUN in header and EN_RUN in header
    assert page.locator("#compare-plot .scatterlayer .trace").count() == 4  # train + valid loss of each run
    shot(page, "compare.png")


def test_launch_shows_errors_then_trains(page: Any, site: dict[str, Any]) -> None:
    page.goto(site["root"] + "/console/#/launch")
    page.wait_for_selector("#launch-form")
    page.fill("[id='f-data.train']", str(site["data"]))
    page.fill("[id='f-model.name']", str(site["model"]))
    page.fill("[id='f-train.lr']", "abc")
    page.click("#launch-btn")
    error = page.wait_for_selector("[data-for='train.lr']:not(:empty)")
    assert "valid number" in error.inner_text() and "'abc'" in error.inner_text()
    shot(page, "launch-error.png")
    for key, value in {"train.lr": "1e-3", "train.max_steps": "4", "train.batch_size": "16",
                       "data.max_length": "32", "output.name": "网页-run"}.items():
        page.fill(f"[id='f-{key}']", value)
    page.click("#launch-btn")
    page.wait_for_selector("#job-status")
    page.locator("#job-status", has_text="finished").wait_for(timeout=150_000)
    assert "step 4 / 4" in page.inner_text("#job-status")
    page.wait_for_selector("#job-plot svg.main-svg")
    shot(page, "launch-finished.png")
    assert (site["runs"] / "网页-run" / "model" / "taskfit.json").is_file()
    page.click("#job-status a")
    page.wait_for_selector("#loss-plot svg.main-svg")
    assert page.inner_text("#view h1") == "网页-run"


def test_playground_predicts_with_the_served_model(page: Any, site: dict[str, Any]) -> None:
    from taskfit.inference import Predictor

    text = "物流很快，包装也很好"
    page.goto(site["root"] + "/console/#/playground")
    page.wait_for_selector("#pg-text")
    page.fill("#pg-text", text)
    page.click("#pg-go")
    label = page.wait_for_selector(".pg-label").inner_text()
    expected = Predictor.load(site["runs"] / ZH_RUN).predict([text])[0]
    assert label == expected["label"]
    scores = [float(x) for x in page.locator(".pg-top td.num").all_inner_texts()]
    assert scores == pytest.approx(sorted([t["score"] for t in expected["top"]], reverse=True), abs=1e-4)
    shot(page, "playground.png")
