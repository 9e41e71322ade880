"""Issue 23: ``expctl report`` built from real runs in a real ``mlflow server`` on the local backend.

Commit A has a sweep of two points; commit B adds a third (the best) and an experiment whose job fails; one
``apply --wait`` runs B (A's two points are the same runs, so "what this change did" compares B's best with
A's). The sweep's jobs log their learning curves through MLflow's REST API, and the platform validates them
(``validation.command``: a job of its own, whose metrics are the gate's ``validation.acc``). Commit C adds two
GPU runs on a machine of one GPU: one holds it, the other waits. The report is read as JSON and Markdown, its
plots are files and artifacts of the sweep's parent run, served by the MLflow UI at the links it gives, and the
``-o html`` page is opened in Debian's chromium (Playwright): its tables and inline plots render.
"""

from __future__ import annotations

import json
import re
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

JOB = "  kind: local\n  command: [python, -m, training.log_curve]\n  retries: {max_attempts: 1}\n"


def sweep(points: str) -> str:
    return ("defaults:\n  - config\n  - _self_\ncurve: {epochs: 3}\nexpctl:\n" + JOB
            + "  validation: {metric: acc, threshold: 0.7, command: [python, -m, training.curve_validate]}\n"
            "  report: {metrics: [loss]}\nhydra:\n  sweeper:\n    params:\n      optimizer.lr: " + points + "\n")


def waiting_on(gate: Path) -> str:
    return ("defaults:\n  - config\n  - _self_\ncurve: {gate: " + json.dumps(str(gate)) + "}\nexpctl:\n" + JOB
            + "  resources: {gpus: 1}\n")


BROKEN = "defaults:\n  - config\n  - _self_\ncurve: {fail: true}\nexpctl:\n" + JOB


def report(repo: GitRepo, uri: str, *args: str) -> str:
    done = e2e.expctl(repo.path, "report", *args, tracking_uri=uri)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["experiment"]: e for e in data["experiments"]}


def parent_run_artifacts(uri: str, run_id: str) -> list[str]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    parent = client.get_run(run_id).data.tags["mlflow.parentRunId"]
    return sorted(Path(a.path).name for a in client.list_artifacts(parent, "expctl-report"))


def open_in_chromium(page_file: Path) -> dict[str, Any]:
    """What Debian's chromium shows of a report page (Playwright; no network: the page is self-contained)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith(("file:", "data:"))
                       else route.abort())
            page.goto(page_file.as_uri())
            page.wait_for_function("[...document.images].every(i => i.complete)")
            found: dict[str, Any] = page.evaluate("""() => ({
                title: document.title, tables: document.querySelectorAll("table").length,
                rows: document.querySelectorAll("tr").length, text: document.body.innerText,
                images: [...document.images].map(i => [i.complete, i.naturalWidth, i.naturalHeight])})""")
            return found
        finally:
            browser.close()


def test_the_report_of_a_sweep_a_failed_and_a_waiting_run(tmp_path: Path, mlflow_server: MlflowServer,
                                                           repos: list[GitRepo]) -> None:
    uri, gate = mlflow_server.uri, tmp_path / "hog-may-end"
    repo = e2e.make_project(tmp_path / "repo", {"report-sweep": sweep("0.1,0.001")}, parallelism=4,
                            settings="  gpus: 1\n")
    repos.append(repo)
    repo.write("training/log_curve.py", jobs.source("log_curve"))
    repo.write("training/curve_validate.py", jobs.source("curve_validate"))
    first = repo.commit("the jobs")
    repo.write("experiments/report-sweep.yaml", sweep("0.1,0.01,0.001"))
    repo.write("experiments/report-broken.yaml", BROKEN)
    second = repo.commit("lr 0.01 too; a broken job")
    applied = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri)
    assert "Finished: 1 failed, 1 gave-up, 6 succeeded." in applied.stdout, applied.stdout + applied.stderr

    out = tmp_path / "out"
    data = json.loads(report(repo, uri, "--rev", second, "-o", "json", "--out", str(out)))
    assert (data["commit"], data["parent"], data["succeeded"], data["runs"]) == (second, first, 3, 4)
    exps = by_name(data)
    assert sorted(exps) == ["report-broken", "report-sweep"]  # what the commit changed
    swept = exps["report-sweep"]
    assert swept["gate_metric"] == "validation.acc" and swept["metrics"] == ["validation.acc", "loss"]
    runs = {r["overrides"][0]: r for r in swept["runs"]}
    best = runs["optimizer.lr=0.01"]
    assert swept["best"] == best["name"] and best["state"] == "Succeeded" and best["attempt"] == 1
    # three training runs and their validation jobs; the gate metric is the validation job's (in its own run)
    assert best["metrics"]["validation.acc"] == pytest.approx(0.7375)
    assert best["metrics"]["acc"] == pytest.approx(0.7875)
    assert swept["best_value"] == pytest.approx(0.7375)
    assert {k: r["gate"] for k, r in runs.items()} == {
        "optimizer.lr=0.01": "passed", "optimizer.lr=0.1": "failed", "optimizer.lr=0.001": "failed"}
    assert swept["parent"]["label"] == first[:12] and swept["parent"]["value"] == pytest.approx(0.65)
    assert swept["delta_parent"] == pytest.approx(0.0875)  # what adding lr 0.01 did
    assert all(r["wall_seconds"] > 0 and r["gpu_hours"] == 0 for r in swept["runs"])
    assert all(r["url"].startswith(uri + "/#/experiments/") for r in swept["runs"])
    assert swept["plots"] == ["report-sweep-learning-curves.png", "report-sweep-vs-optimizer-lr.png"]
    assert all((out / f).read_bytes().startswith(b"\x89PNG") for f in swept["plots"])
    assert parent_run_artifacts(uri, best["mlflow_run_id"]) == swept["plots"]
    (broken,) = exps["report-broken"]["runs"]
    assert broken["state"] == "Failed" and broken["failure"] == "code"
    assert broken["reason"] == "node-0 exited with code 1"
    assert broken["log_tail"][-1] == "RuntimeError: loss is NaN at step 3"

    text = report(repo, uri, "--rev", second, "--out", str(out))
    assert text.startswith(f"<!-- expctl-report -->\n### expctl report for `{second[:12]}`")
    assert f"**3/4 runs succeeded** · parent `{first[:12]}`" in text
    assert "| run | overrides | state | attempt | wall | GPU-h | validation.acc | loss |" in text
    assert (f"- best: [`{best['name']}`]({best['url']}) `validation.acc` = **0.738** (higher is better)"
            in text)
    assert "- gate: 1 passed, 2 failed" in text
    assert f"- vs parent commit: {first[:12]} 0.650 → **+0.088**" in text
    rows = [line for line in text.splitlines() if line.startswith("| [`report-sweep-")]
    assert len(rows) == 3 and "`optimizer.lr=0.01` | Succeeded | 1 |" in rows[0]  # best first
    assert f"**`{broken['name']}`** — code: node-0 exited with code 1" in text
    assert "RuntimeError: loss is NaN at step 3" in text and "\x1b" not in text
    images = re.findall(r"!\[([^\]]*)\]\((\S+)\)", text)
    assert [title for title, _ in images] == ["acc by step", "validation.acc against optimizer.lr"]
    for _, url in images:  # the links a comment shows are served by the MLflow UI
        with urllib.request.urlopen(url, timeout=30) as answer:
            assert answer.read().startswith(b"\x89PNG")

    page = tmp_path / "report.html"
    page.write_text(report(repo, uri, "--rev", second, "-o", "html"))
    shown = open_in_chromium(page)
    assert shown["title"] == f"expctl report {second[:12]}"
    assert shown["tables"] == 2 and shown["rows"] == 1 + 1 + 1 + 3  # headers and runs
    assert shown["images"] == [[True, 576, 360], [True, 576, 360]]  # both plots inline, decoded
    assert "RuntimeError: loss is NaN at step 3" in shown["text"] and "<b>" in shown["text"]  # escaped, shown

    repo.write("experiments/report-hog.yaml", waiting_on(gate))
    repo.write("experiments/report-queued.yaml", waiting_on(gate))
    third = repo.commit("two GPU runs on a machine of one GPU")
    applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    data = json.loads(report(repo, uri, "-o", "json"))
    assert data["commit"] == third and sorted(by_name(data)) == ["report-hog", "report-queued"]
    states = sorted((r["state"], r["reason"]) for e in data["experiments"] for r in e["runs"])
    assert states == [("Pending", "waiting for 1 GPUs (0 of 1 free)"), ("Running", "")]
    text = report(repo, uri)
    assert "**0/2 runs succeeded**" in text and "| Pending: waiting for 1 GPUs (0 of 1 free) | 1 |" in text
    gate.touch()
