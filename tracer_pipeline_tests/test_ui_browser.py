"""The Dagster UI, checked in a real browser (headless Chromium driven by playwright): after a
batched run-experiment, a run's partition shows that run and its preview, and no other run.

Set TRACER_SCREENSHOTS_DIR to keep the screenshots (the README's come from
``TRACER_SCREENSHOTS_DIR=docs/screenshots python -m pytest tracer_pipeline_tests/test_ui_browser.py``).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tracer_pipeline.defs.partitions import run_partition_key
from tracer_pipeline.store import TraceStore

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no Chromium on this machine (Debian: apt-get install chromium)")

CONFIG = {
    "name": "browser", "networks": [["DummyT2I", "DummyI2T"], ["DummyT2I", "DummyI2T2"]], "seeds": [1, 2, 3],
    "prompts": ["a red balloon"], "embedding_models": ["DummyEmbed"], "max_length": 6,
}
SERVER_START_S = 300  # dagster dev on a busy 2-core machine can take minutes; not a measure of speed


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ui(tmp_path_factory):
    """A stored experiment and `trajectory-tracer ui` serving it on loopback; stopped by its PID."""
    root = tmp_path_factory.mktemp("ui")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGSTER_HOME", "TRACER_DB_URL")}
    env.update(TRACER_DATA_DIR=str(root / "data"), TRACER_EXPERIMENTS_DIR=str(root / "experiments"))
    (root / "experiments").mkdir()
    config = root / "browser.json"
    config.write_text(json.dumps(CONFIG))
    cli = [sys.executable, "-m", "tracer_pipeline.cli"]
    subprocess.run([*cli, "run-experiment", str(config)], env=env, check=True, capture_output=True)
    port = free_port()
    server = subprocess.Popen([*cli, "ui", "--port", str(port)], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while True:
        try:
            urllib.request.urlopen(f"{url}/server_info", timeout=5)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                raise RuntimeError("the Dagster UI did not start") from None
            time.sleep(1)
    store = TraceStore(f"sqlite:///{root / 'data' / 'tracer.sqlite'}")
    try:
        yield url, store
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        store.close()


@pytest.fixture(scope="module")
def page():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(120_000)
        yield page
        browser.close()


def shoot(page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("TRACER_SCREENSHOTS_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"))


def test_a_partition_shows_its_own_run_and_preview(ui, page, tmp_path):
    url, store = ui
    runs = store.get_runs(store.experiment_run_ids("browser"))
    mine, others = runs[1], [r.run_id for r in runs if r.run_id != runs[1].run_id]
    key = run_partition_key(mine)
    page.goto(f"{url}/assets/invocations?view=partitions&partition={key}")
    page.get_by_text(key).first.wait_for(state="attached")  # the readable key: seed, prompt, network, run id
    page.get_by_text("stop_reason").first.wait_for()  # the partition's own metadata has loaded
    shown = page.locator("table", has_text="stop_reason").first.inner_text()  # not the partition list
    assert mine.run_id in shown and "a red balloon" in shown and mine.status in shown
    assert not any(other in shown for other in others)
    shoot(page, "partition", tmp_path)
    page.get_by_text("[Show Markdown]").first.click()  # the run's own preview strip
    page.locator("img[src^='data:image/png;base64']").first.wait_for()
    page.wait_for_timeout(1000)  # the dialog fades in
    shoot(page, "partition-preview", tmp_path)
    page.keyboard.press("Escape")


def test_stuck_runs_are_found_on_the_not_stuck_checks_partition_bar(ui, page, tmp_path):
    url, store = ui
    runs = store.get_runs(store.experiment_run_ids("browser"))
    stuck = [r for r in runs if r.status == "stuck"]
    assert 0 < len(stuck) < len(runs)  # the lossy captioner's runs get stuck, the others do not
    page.goto(f"{url}/assets/invocations?view=checks&checkDetail=not_stuck")
    page.get_by_text("Execution history").first.wait_for()  # the check's own tabs have loaded
    page.get_by_text("Partitions", exact=True).last.click()
    page.get_by_text(f"Failed ({len(stuck)})").first.wait_for()
    page.get_by_text(f"Passed ({len(runs) - len(stuck)})").first.wait_for()
    shoot(page, "stuck-runs", tmp_path)


def test_cli_runs_are_filed_under_their_job(ui, page):
    url, _ = ui
    page.goto(f"{url}/locations/tracer_pipeline/jobs/trace/runs")
    page.get_by_text("tracer/experiment: browser").first.wait_for()


def test_the_asset_graph_and_the_report_render(ui, page, tmp_path):
    url, _ = ui
    page.goto(f"{url}/locations/tracer_pipeline/asset-groups/trace")
    page.get_by_text("persistence_diagrams").first.wait_for()
    page.wait_for_timeout(2000)  # let the graph finish laying out before the picture
    shoot(page, "asset-graph", tmp_path)
    page.goto(f"{url}/assets/experiment_report?view=partitions&partition=browser")
    page.get_by_text("report.md").first.wait_for()
    page.get_by_text("[Show Markdown]").first.click()
    page.get_by_text("Experiment report: browser").first.wait_for()
    page.locator("img[src^='data:image/png;base64']").first.wait_for()
    page.wait_for_timeout(1000)  # the dialog fades in
    shoot(page, "report", tmp_path)
