"""Output is data, end to end: a real local-backend job and values forged in a real ``mlflow server``.

The job prints terminal escapes (an OSC window title, a clear screen): ``expctl logs`` on a pipe shows them
escaped, ``--raw`` passes them through. Tags written straight through MLflow's client (anyone with access to the
server can) hold newlines and escapes: a run's name and author, an audit entry of an older expctl (every field),
an experiment expctl manages (listed by ``ui`` when the repository's own experiment names cannot be read).
``cancel``, ``history`` and ``ui`` print one line per item, each value escaped:
nothing forges a line or reaches the terminal raw.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e, jobs
from tests.support.bad_input import invoke
from tests.support.mlflow_server import free_port

pytestmark = pytest.mark.integration

FORGED = "x\nerror: forged \x1b]0;owned\x07\x1b[2J\u2028y"


def _logs(repo: Path, env: dict[str, str], *args: str) -> str:
    """The job's log once its line is there (``logs`` read again until the job has printed it, within 120 s)."""
    deadline = time.monotonic() + 120
    while True:
        code, out, err = invoke(repo, ("logs", *args), env)
        assert code == 0, err
        if "after" in out or time.monotonic() > deadline:
            return out


def test_logs_history_cancel_and_ui_escape_what_jobs_and_tags_hold(tmp_path: Path, mlflow_server: Any) -> None:
    from mlflow import MlflowClient

    name = f"esc-{uuid.uuid4().hex[:8]}"
    experiment = "defaults:\n  - config\n  - _self_\nexpctl:\n  command: [python, -m, training.escapes]\n"
    repo = e2e.make_project(tmp_path / "repo", {name: experiment})
    repo.write("training/escapes.py", jobs.source("escapes"))
    repo.commit("a job that prints escapes")
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    try:
        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=mlflow_server.uri)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        [state] = e2e.run_states(repo.path).values()

        # logs: escaped on a pipe, raw with --raw
        piped = _logs(repo.path, env, state["name"])
        assert "before \\x1b]0;owned\\x07\\x1b[2J after" in piped and "\x1b" not in piped and "\x07" not in piped
        raw = _logs(repo.path, env, "--raw", state["name"])
        assert "before \x1b]0;owned\x07\x1b[2J after" in raw

        # forged tags: the run's name and author, an older expctl's audit entry, a managed experiment
        client = MlflowClient(mlflow_server.uri)
        client.set_tag(state["mlflow_run_id"], "mlflow.runName", FORGED)
        client.set_tag(state["mlflow_run_id"], "expctl.author", FORGED)
        audit = client.get_experiment_by_name("expctl-audit")
        assert audit is not None
        old = {"time": "2026-01-01T00:00:00", "action": FORGED, "run": FORGED, "experiment": name,
               "commit": FORGED, "who": FORGED}
        client.create_run(audit.experiment_id, tags={"expctl.audit.entry": json.dumps(old)})
        forged_experiment = f"{name}\nerror: forged \x1b]0;owned\x07"
        client.create_experiment(forged_experiment, tags={"expctl.managed": "true"})

        code, out, err = invoke(repo.path, ("cancel", "--experiment", name), env)
        assert code == 0, err
        assert out.splitlines() == [f"cancelled {state['name']}"]
        assert "\x1b" not in out + err and "error: forged" not in err

        code, out, err = invoke(repo.path, ("history", "--experiment", name), env)
        assert code == 0, err
        lines = out.splitlines()
        assert len(lines) == 3, out  # the apply's create, the cancel, the forged entry: one line each
        forged = [ln for ln in lines if "x\\nerror: forged \\x1b]0;owned\\x07\\x1b[2J\\u2028y" in ln]
        assert len(forged) == 1 and forged[0].startswith("2026-01-01T00:00:00 "), lines  # not a time: as it is
        assert sorted(ln.split()[2] for ln in lines if ln not in forged) == ["cancel", "create"]
        assert not any(ln.startswith("error:") for ln in lines) and "\x1b" not in out and "\u2028" not in out

        # a misnamed experiment file at HEAD: ui lists every experiment expctl manages on the server, forged too
        repo.write("experiments/Bad Name.yaml", experiment)
        repo.commit("a misnamed experiment")
        code, out, err = invoke(repo.path, ("ui", "--port", str(free_port())), env)
        assert code == 0, err
        assert f"  {name}\\nerror: forged \\x1b]0;owned\\x07 " in out, out
        assert not any(ln.startswith("error:") for ln in out.splitlines()) and "\x1b" not in out + err
    finally:
        e2e.stop_jobs(repo.path)
