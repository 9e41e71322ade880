"""The MLflow UI as a training user meets it: Debian's chromium, driven by Playwright, on ``expctl ui``.

This project's ``lr-sweep`` (2 models x 3 learning rates) and ``baseline`` are applied on the local backend
with the example training made small (400 samples, 4 epochs), on the embedded store. Then ``expctl ui`` runs
for real and the browser follows the addresses it prints, the way a user would: the first page must be the
training runs (the test fails on MLflow's GenAI overview); the sweep's parent run expands into its six
points with their override values as columns; a point's page shows its source commit and its description;
the Model Registry shows the aliases the validation gate set.

The screenshots in docs/ are taken here: ``EXPCTL_SCREENSHOTS=docs/img pytest tests/integration/test_ui_browser.py``
writes them there (otherwise into tmp_path). A missing chromium fails the test (it never skips):
``scripts/test-prereqs.sh`` installs it.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import free_port, wait_healthy

pytestmark = pytest.mark.integration

EXPCTL = str(Path(sys.executable).with_name("expctl"))
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
UI_START_SECONDS = 180
PAGE_SECONDS = 60
# A remote with a token in it, as CI checkouts have: the runs must name the repository without the token.
REMOTE = "https://ci-bot:s3cr3t-token@github.com/expctl-demo/blobs.git"
PUBLIC_REMOTE = "https://github.com/expctl-demo/blobs.git"


def _env() -> dict[str, str]:
    drop = ("MLFLOW_TRACKING_URI", "EXPCTL_BACKEND", "CI", "GITHUB_ACTOR", "EXPCTL_DEBUG")
    return {k: v for k, v in os.environ.items() if k not in drop}


def _expctl(repo: Path, *args: str, timeout: float = 120) -> str:
    proc = subprocess.run([EXPCTL, *args], cwd=repo, env=_env(), capture_output=True, text=True, timeout=timeout,
                          check=False)
    assert proc.returncode == 0, f"expctl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def applied_sweep(tmp_path: Path) -> Path:
    """lr-sweep and baseline from this project's examples, small, applied on the local backend, finished."""
    if not CHROMIUM.is_file():
        pytest.fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; "
                    "scripts/test-prereqs.sh does it)", pytrace=False)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"the playwright Python package is not installed: {exc}", pytrace=False)
    repo = GitRepo(tmp_path / "repo")
    repo.copy_examples()
    repo.remove("experiments/distributed.yaml")
    repo.write(".gitignore", ".expctl/\n__pycache__/\n")
    repo.write("conf/trainer/quick.yaml", "epochs: 4\nbatch_size: 64\nfail_first_attempts: 0\n")
    repo.write("conf/dataset/blobs.yaml", "name: blobs\nn_samples: 400\nn_features: 16\nn_classes: 4\n"
                                          "noise: 1.0\nval_fraction: 0.25\n")
    repo.git("remote", "add", "origin", REMOTE)
    repo.commit("the examples, small and quick")
    out = _expctl(repo.path, "apply", "-y", "--wait", timeout=900)
    assert out.rstrip().splitlines()[-1] == "Finished: 7 succeeded.", out
    return repo.path


@dataclass(frozen=True)
class Ui:
    """``expctl ui`` running, and the addresses it printed."""

    base: str
    runs: str
    experiments: dict[str, str]
    models: str


@pytest.fixture
def ui(applied_sweep: Path, tmp_path: Path) -> Iterator[Ui]:
    """``expctl ui --port <free> --open`` as a subprocess, healthy, having handed its first address to the
    web browser ($BROWSER: a recorder); stopped (its whole process group) afterwards."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path, opened = tmp_path / "ui.log", tmp_path / "opened"
    browser = f"{sys.executable} -c \"import sys; open(sys.argv[1], 'w').write(sys.argv[2])\" {opened} %s"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([EXPCTL, "ui", "--port", str(port), "--open"], cwd=applied_sweep,
                                env={**_env(), "BROWSER": browser}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        try:
            wait_healthy(base, proc, UI_START_SECONDS, log_path)
        except RuntimeError as exc:
            pytest.fail(f"expctl ui did not come up: {exc}")
        printed = _printed(log_path.read_text(), base)
        deadline = time.monotonic() + 30
        while not (opened.exists() and opened.read_text()):
            assert time.monotonic() < deadline, "expctl ui --open did not open the browser"
            time.sleep(0.2)
        assert opened.read_text() == printed.runs
        yield printed
    finally:
        _stop(proc)


def _printed(output: str, base: str) -> Ui:
    assert f"MLflow UI on {base} (Ctrl-C to stop)" in output, output
    runs = re.search(r"^Training runs: (\S+)$", output, re.M)
    models = re.search(r"^Model registry: (\S+)$", output, re.M)
    experiments = dict(re.findall(r"^  (\S+)\s+(http\S+)$", output, re.M))
    assert runs and models and set(experiments) == {"baseline", "lr-sweep"}, output
    return Ui(base, runs.group(1), experiments, models.group(1))


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def _shots(tmp_path: Path) -> Path:
    chosen = os.environ.get("EXPCTL_SCREENSHOTS")
    target = Path(chosen) if chosen else tmp_path / "shots"
    target.mkdir(parents=True, exist_ok=True)
    return target


def _row_text(page: Any, name: str, expected: list[str], timeout: float = PAGE_SECONDS) -> str:
    """The whole text of the runs-table row of run ``name`` once it shows every ``expected`` piece: the grid
    draws one row in several parts (pinned name column, scrolling columns) that share a ``row-id``."""
    link = page.get_by_role("link", name=name, exact=True).first
    link.wait_for(timeout=timeout * 1000)
    row_id = link.locator("xpath=ancestor::*[@role='row'][1]").get_attribute("row-id")
    deadline = time.monotonic() + timeout
    while True:
        text = " ".join(page.locator(f"[role=row][row-id='{row_id}']").all_inner_texts())
        if all(piece in text for piece in expected):
            return text
        assert time.monotonic() < deadline, f"row {name} shows {text!r}, not all of {expected}"
        time.sleep(0.3)


def _dismiss(page: Any, *names: str) -> None:
    """Close what MLflow pops up on a first visit (the assistant panel, promotions), if it is there."""
    for name in names:
        button = page.get_by_role("button", name=name, exact=True)
        if button.count() and button.first.is_visible():
            button.first.click()


@pytest.mark.timeout(900)
def test_a_user_goes_from_expctl_ui_to_the_sweep_a_run_and_the_registry(
    applied_sweep: Path, ui: Ui, tmp_path: Path
) -> None:
    from playwright.sync_api import expect, sync_playwright

    sweep = json.loads(_expctl(applied_sweep, "status", "-o", "json", "--experiment", "lr-sweep"))
    assert len(sweep) == 6 and {r["state"] for r in sweep} == {"Succeeded"}
    commit = subprocess.run(["git", "-C", str(applied_sweep), "rev-parse", "HEAD"], capture_output=True,
                            text=True, check=True).stdout.strip()
    shots = _shots(tmp_path)
    overrides = {r["run"]: dict(o.split("=", 1) for o in
                                json.loads(_expctl(applied_sweep, "describe", r["run"], "-o", "json"))["overrides"])
                 for r in sweep}
    chosen = next(name for name, o in overrides.items() if o == {"model": "wide", "optimizer.lr": "0.01"})

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 720})
            page.set_default_timeout(PAGE_SECONDS * 1000)
            # MLflow's promotion of its registry UI pops up on a first visit, whenever it likes: close it.
            promo = page.get_by_role("dialog", name=re.compile("Model Registry UI"))
            page.add_locator_handler(promo, lambda dialog: dialog.get_by_role("button", name="Close").click())
            expect.set_options(timeout=PAGE_SECONDS * 1000)

            # 1. The address `expctl ui` prints: the project's training runs, not the GenAI overview.
            page.goto(ui.runs, wait_until="domcontentloaded")
            expect(page.get_by_text("Displaying Runs from 2 Experiments")).to_be_visible()
            expect(page.get_by_role("columnheader", name="Run Name").first).to_be_visible()
            expect(page.locator("[role=row]", has_text="lr-sweep-sweep-").first).to_be_visible()
            expect(page.get_by_role("link", name="Model registry")).to_be_visible()  # training mode only
            for genai in ("Detect Issues", "No data available for the selected time range"):
                assert page.get_by_text(genai).count() == 0, f"the first page shows MLflow's GenAI view ({genai})"
            _dismiss(page, "Close")

            # 2. The sweep: its parent run expands into the six points, each with its override values.
            page.goto(ui.experiments["lr-sweep"], wait_until="domcontentloaded")
            parent = page.locator("[role=row]", has_text="lr-sweep-sweep-").first
            expect(parent).to_be_visible()
            expect(page.get_by_role("columnheader", name="override.model").first).to_be_visible()
            parent_name = parent.get_by_role("link").first.inner_text()
            _row_text(page, parent_name, ["6 points (6 succeeded); best val_accuracy", commit[:6]])
            _dismiss(page, "Close", "Hide banner")
            parent.get_by_role("button").first.click()
            for name, values in overrides.items():  # the Version column shows the commit
                _row_text(page, name, [values["model"], values["optimizer.lr"], commit[:6], "expctl launched"])
            page.screenshot(path=str(shots / "runs.png"))

            # ... and in the chart view, the points' validation accuracy side by side.
            page.locator("label", has=page.locator("input[value=CHART]")).click()
            page.get_by_placeholder("Search metric charts").fill("val_accuracy")
            expect(page.get_by_text("val_accuracy", exact=True).first).to_be_visible()
            page.wait_for_timeout(1500)  # the charts draw after their data arrives
            page.screenshot(path=str(shots / "sweep-charts.png"))
            page.locator("label", has=page.locator("input[value=TABLE]")).click()

            # 3. One point: where it came from (commit, repository) and what expctl launched.
            page.get_by_role("link", name=chosen, exact=True).click()
            expect(page.get_by_text(f"expctl launched lr-sweep with model=wide optimizer.lr=0.01 from "
                                    f"experiments/lr-sweep.yaml at commit {commit[:12]}")).to_be_visible()
            expect(page.get_by_role("link", name=re.compile(r"^lr-sweep-sweep-")).first).to_be_visible()
            expect(page.get_by_text(commit[:7], exact=True).first).to_be_visible()
            expect(page.get_by_text("expctl.run_key", exact=True)).to_be_visible()
            source = page.locator(f"a[href*='github.com/expctl-demo/blobs/tree/{commit}']")
            expect(source.first).to_be_visible()  # the Source's commit, linked to the repository
            assert "s3cr3t" not in page.content()
            page.screenshot(path=str(shots / "run.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 560})

            # 4. The registry: back to the runs, then the sidebar's Model registry, the model, its aliases.
            page.go_back()
            page.get_by_role("link", name="Model registry").click()
            model = page.locator("[role=row]", has=page.get_by_role("link", name="blobs-classifier", exact=True))
            expect(model.first).to_contain_text("@ candidate")  # the newest alias; "+1" lists the others
            model.first.get_by_role("button", name="+1").click()
            expect(page.get_by_text("@ champion").first).to_be_visible()
            page.screenshot(path=str(shots / "registry.png"), clip={"x": 0, "y": 0, "width": 1440, "height": 360})
            page.keyboard.press("Escape")
            page.get_by_role("link", name="blobs-classifier", exact=True).first.click()
            for alias in ("champion", "candidate"):
                expect(page.get_by_text(f"@ {alias}", exact=True).first).to_be_visible()
        finally:
            browser.close()

    for shot in ("runs.png", "sweep-charts.png", "run.png", "registry.png"):
        size = (shots / shot).stat().st_size
        assert 10_000 < size < 200_000, f"{shot}: {size} bytes"
