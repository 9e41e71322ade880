"""``expctl ui`` in a real browser: Debian's chromium, driven by Playwright, on the embedded default store.

The project's examples are applied (two epochs each) and waited for; then ``expctl ui`` serves the MLflow UI
on a free port and the browser checks what a user would look for: the sweep's runs under the lr-sweep
experiment, a run's expctl tags, and the registered model with its aliases. Screenshots go to tmp_path.
A missing chromium fails the test (it never skips): ``scripts/test-prereqs.sh`` installs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.gitrepo import GitRepo
from tests.integration.mlflow_server import free_port, wait_healthy

pytestmark = pytest.mark.integration

EXPCTL = str(Path(sys.executable).with_name("expctl"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
UI_START_SECONDS = 180
PAGE_SECONDS = 90


def _env() -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "CI", "GITHUB_ACTOR")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _expctl(repo: Path, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([EXPCTL, *args], cwd=repo, env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"expctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def applied_examples(tmp_path: Path) -> Path:
    """This project's examples, applied on the local backend and the embedded store, all finished."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
                    "scripts/test-prereqs.sh does it)", pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the playwright Python package is not installed: {exc}", pytrace=False)
    repo = GitRepo(tmp_path / "repo")
    repo.copy_examples()
    repo.write(".gitignore", ".expctl/\n")
    repo.write("conf/trainer/quick.yaml", "epochs: 2\nbatch_size: 64\nfail_first_attempts: 0\n")
    distributed = repo.path / "experiments" / "distributed.yaml"
    distributed.write_text(distributed.read_text().replace("epochs: 4", "epochs: 2"))
    repo.commit("the examples, two epochs each")
    out = _expctl(repo.path, "apply", "-y", "--wait", timeout=1200)
    assert out.rstrip().splitlines()[-1] == "Finished: 8 succeeded.", out
    return repo.path


@pytest.fixture
def ui_server(applied_examples: Path, tmp_path: Path) -> Iterator[str]:
    """``expctl ui --port <free>`` as a subprocess, healthy; stopped (its whole process group) afterwards."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "ui.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([EXPCTL, "ui", "--port", str(port)], cwd=applied_examples, env=_env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        try:
            wait_healthy(url, proc, UI_START_SECONDS, log_path)
        except RuntimeError as exc:
            pytest.fail(f"expctl ui did not come up: {exc}")
        assert f"MLflow UI on {url}" in log_path.read_text()
        yield url
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _sweep(repo: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = json.loads(_expctl(repo, "status", "-o", "json", "--experiment", "lr-sweep"))
    return rows


@pytest.mark.timeout(1800)
def test_the_mlflow_ui_shows_the_sweep_its_tags_and_the_registered_model(
    applied_examples: Path, ui_server: str, tmp_path: Path
) -> None:
    from mlflow import MlflowClient
    from playwright.sync_api import expect, sync_playwright

    sweep = _sweep(applied_examples)
    assert len(sweep) == 6 and {r["state"] for r in sweep} == {"Succeeded"}
    client = MlflowClient(f"sqlite:///{applied_examples / '.expctl' / 'mlflow.db'}")
    aliases = client.get_registered_model("blobs-classifier").aliases
    assert "champion" in aliases, f"the baseline did not pass its gate: aliases {aliases}"
    chosen = sweep[0]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(PAGE_SECONDS * 1000)
            expect.set_options(timeout=PAGE_SECONDS * 1000)

            # The experiments list has one experiment per expctl experiment.
            page.goto(f"{ui_server}/#/experiments", wait_until="domcontentloaded")
            link = page.get_by_role("link", name="lr-sweep", exact=True)
            expect(link).to_be_visible()
            for name in ("baseline", "distributed"):
                expect(page.get_by_role("link", name=name, exact=True)).to_be_visible()
            href = link.get_attribute("href")
            assert href and href.startswith("#/experiments/"), href

            # lr-sweep's training runs: the sweep's parent run, expanded, holds one child run per point.
            page.goto(f"{ui_server}/{href}/runs", wait_until="domcontentloaded")
            parent = page.locator("[role=row]", has_text="lr-sweep-sweep-").first
            expect(parent).to_be_visible()
            page.keyboard.press("Escape")
            parent.locator("button[data-component-id*='runnamecellrenderer']").first.click()
            for row in sweep:
                expect(page.get_by_role("link", name=row["run"], exact=True)).to_be_visible()
            page.screenshot(path=str(tmp_path / "lr-sweep-runs.png"))

            # One run's page shows the expctl tags that identify it.
            page.get_by_role("link", name=chosen["run"], exact=True).click()
            expect(page.get_by_text("expctl.run_key", exact=True)).to_be_visible()
            expect(page.get_by_text("expctl.spec_hash", exact=True)).to_be_visible()
            expect(page.get_by_text(chosen["run_key"]).first).to_be_visible()
            expect(page.get_by_text(chosen["spec_hash"]).first).to_be_visible()
            expect(page.get_by_text("system/cpu_utilization_percentage").first).to_be_visible()
            assert chosen["mlflow_run"] in page.url
            page.screenshot(path=str(tmp_path / "run.png"), full_page=True)

            # The Model Registry lists blobs-classifier, and its page shows each alias.
            page.goto(f"{ui_server}/#/models", wait_until="domcontentloaded")
            expect(page.get_by_role("link", name="blobs-classifier", exact=True).first).to_be_visible()
            page.screenshot(path=str(tmp_path / "models.png"))
            page.goto(f"{ui_server}/#/models/blobs-classifier", wait_until="domcontentloaded")
            for alias in aliases:
                expect(page.get_by_text(f"@ {alias}", exact=True).first).to_be_visible()
            expect(page.get_by_text("expctl.run_key").first).to_be_visible()
            page.screenshot(path=str(tmp_path / "blobs-classifier.png"), full_page=True)
        finally:
            browser.close()

    for shot in ("lr-sweep-runs.png", "run.png", "models.png", "blobs-classifier.png"):
        assert (tmp_path / shot).stat().st_size > 10_000, shot
