"""Pipelines end to end: real git commits, real ``expctl`` processes, the local backend and a real ``mlflow
server`` with its Model Registry. An experiment consumes another's run, each point of a sweep, or a registered
model by alias; it waits until the input exists, gets it as ``EXPCTL_INPUT_<NAME>_URI``, records it on its MLflow
run, and is replaced (``upstream-changed``) when — and only when — what it consumed changes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

JOB = "  kind: local\n  command: [python, code/train.py]\n  retries: {max_attempts: 1}\n"


def experiment(seed: int = 0, inputs: str = "", sweep: str = "") -> str:
    text = f"defaults:\n  - config\n  - _self_\nseed: {seed}\nexpctl:\n{JOB}"
    if inputs:
        text += f"  inputs:\n{inputs}"
    if sweep:
        text += f"hydra:\n  sweeper:\n    params:\n      {sweep}\n"
    return text





def job_env(repo: GitRepo, run: Any) -> dict[str, str]:
    env: dict[str, str] = e2e.run_states(repo.path)[run.data.tags["expctl.job"]]["env"]
    return env


def test_a_chain_waits_runs_in_order_and_replans_only_when_its_upstream_changes(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    uri = mlflow_server.uri
    repo = minimal_repo(tmp_path / "repo", {
        "experiments/chain-pre.yaml": experiment(),
        "experiments/chain-fine.yaml": experiment(inputs="    up: {experiment: chain-pre}\n"),
        "experiments/chain-eval.yaml": experiment(inputs="    points: {experiment: chain-sweep, each: true}\n"),
        "experiments/chain-sweep.yaml": experiment(sweep="seed: 1,2"),
        "code/train.py": "print('train')\n", ".gitignore": ".expctl/\n"})
    try:
        first = e2e.plan_json(repo.path, uri)["changes"]
        order = [c["experiment"] for c in first]  # dependency order: each upstream before its consumers
        assert order.index("chain-pre") < order.index("chain-fine")
        assert order.index("chain-sweep") < order.index("chain-eval")
        lines = e2e.plan_lines(repo.path, uri)
        assert lines["chain-fine"] == [("noop", "waiting", lines["chain-fine"][0][2])]
        assert lines["chain-fine"][0][2].startswith("needs chain-pre-") and "(not started)" in lines["chain-fine"][0][2]
        assert [a for a, _, _ in lines["chain-eval"]] == ["noop", "noop"]  # one per upstream point
        shown = e2e.expctl(repo.path, "status", "-o", "json", tracking_uri=uri)
        held = [(r["experiment"], r["state"], r["reason"]) for r in json.loads(shown.stdout)]
        assert ("chain-fine", "Waiting", lines["chain-fine"][0][2]) in held, held

        out = e2e.apply_wait(repo.path, uri)  # the --wait loop launches each consumer once its upstream succeeded
        assert "Finished: 6 succeeded." in out, out
        (pre,), (fine,) = e2e.runs_by_start(uri, "chain-pre"), e2e.runs_by_start(uri, "chain-fine")
        assert fine.data.tags["expctl.input.up.uri"] == f"runs:/{pre.info.run_id}"
        assert fine.data.tags["expctl.input.up.spec_hash"] == pre.data.tags["expctl.spec_hash"]
        assert job_env(repo, fine)["EXPCTL_INPUT_UP_URI"] == f"runs:/{pre.info.run_id}"
        assert fine.info.start_time >= pre.info.end_time
        described = e2e.expctl(repo.path, "describe", fine.data.tags["expctl.job"], "-o", "json", tracking_uri=uri)
        (up,) = json.loads(described.stdout)["inputs"]
        assert (up["name"], up["wants"], up["resolved"]["uri"]) == ("up", "chain-pre", f"runs:/{pre.info.run_id}")
        human = e2e.expctl(repo.path, "describe", pre.data.tags["expctl.job"], tracking_uri=uri).stdout
        assert "dependents:        chain-fine" in human, human
        points = {r.info.run_id for r in e2e.runs_by_start(uri, "chain-sweep")}
        evals = e2e.runs_by_start(uri, "chain-eval")
        assert {job_env(repo, r)["EXPCTL_INPUT_POINTS_URI"] for r in evals} == {f"runs:/{p}" for p in points}

        # an unrelated change (a file outside every code path, an experiment nobody consumes) replans nothing
        repo.write("notes.md", "unrelated\n")
        repo.write("experiments/chain-other.yaml", experiment(seed=5))
        repo.commit("unrelated")
        again = e2e.plan_lines(repo.path, uri)
        assert {e: [a for a, _, _ in lines] for e, lines in again.items() if e != "chain-other"} == {
            "chain-pre": ["noop"], "chain-fine": ["noop"], "chain-sweep": ["noop", "noop"],
            "chain-eval": ["noop", "noop"]}
        assert {r for lines in again.values() for _, r, _ in lines} == {"unchanged", "missing"}

        # the upstream changes: it is replaced, its consumer waits for the new run, then is replaced naming both
        repo.write("experiments/chain-pre.yaml", experiment(seed=1))
        repo.commit("pretrain: another seed")
        moved = e2e.plan_lines(repo.path, uri)
        assert moved["chain-pre"][0][:2] == ("replace", "spec-changed")
        assert moved["chain-fine"][0][:2] == ("noop", "waiting") and "(not started)" in moved["chain-fine"][0][2]
        assert [a for a, _, _ in moved["chain-eval"]] == ["noop", "noop"]  # its upstream did not change
        out = e2e.apply_wait(repo.path, uri)
        assert "chain-fine" in out
        new_pre = e2e.runs_by_start(uri, "chain-pre")[-1]
        new_fine = e2e.runs_by_start(uri, "chain-fine")[-1]
        assert new_fine.data.tags["expctl.input.up.uri"] == f"runs:/{new_pre.info.run_id}"
        history = e2e.expctl(repo.path, "history", "--output", "json", tracking_uri=uri)
        assert "upstream-changed" in history.stdout, history.stdout
        old, new = (json.loads(r.data.tags["expctl.inputs"])["up"] for r in (fine, new_fine))
        assert old != new and old.startswith("chain-pre@") and new.startswith("chain-pre@")
    finally:
        e2e.stop_jobs(repo.path)


def register(uri: str, name: str, run_id: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    try:
        client.create_registered_model(name)
    except Exception:  # it exists: a second version
        pass
    version = client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    client.set_registered_model_alias(name, "champion", str(version.version))
    return str(version.version)


def test_best_takes_the_sweep_point_with_the_best_final_metric_and_a_new_best_replaces_the_consumer(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    uri = mlflow_server.uri
    curve = "  kind: local\n  command: [python, code/log_curve.py]\n  retries: {max_attempts: 1}\n"
    repo = minimal_repo(tmp_path / "repo", {
        "experiments/best-sweep.yaml": experiment(sweep="optimizer.lr: 0.1,0.01,0.001").replace(JOB, curve),
        "experiments/best-fine.yaml": experiment(
            inputs="    top: {experiment: best-sweep, best: {metric: acc, mode: max}}\n"),
        "code/log_curve.py": jobs.source("log_curve"), "code/train.py": "print('train')\n",
        ".gitignore": ".expctl/\n"})
    try:
        assert "Finished: 4 succeeded." in e2e.apply_wait(repo.path, uri)  # log_curve: lr 0.01 has the best acc
        sweep, (fine,) = e2e.runs_by_start(uri, "best-sweep"), e2e.runs_by_start(uri, "best-fine")
        (best,) = [r for r in sweep if "optimizer.lr=0.01" in json.loads(r.data.tags["expctl.overrides"])]
        assert fine.data.tags["expctl.input.top.uri"] == f"runs:/{best.info.run_id}"
        assert fine.data.tags["expctl.input.top.spec_hash"] == best.data.tags["expctl.spec_hash"]
        assert fine.info.start_time >= max(r.info.end_time for r in sweep)  # after the whole sweep

        repo.write("experiments/best-sweep.yaml",  # 0.01 is gone: 0.1 and 0.001 tie at 0.8 (lowest run key)
                   experiment(sweep="optimizer.lr: 0.1,0.001").replace(JOB, curve))
        repo.commit("drop the best point")
        (line,) = e2e.plan_lines(repo.path, uri)["best-fine"]  # the other points are unchanged: no run of them again
        assert line[:2] == ("replace", "upstream-changed") and line[2].startswith("top: best-sweep@"), line
        e2e.apply_wait(repo.path, uri)
        (new,) = [r for r in e2e.runs_by_start(uri, "best-fine") if r.info.run_id != fine.info.run_id]
        assert new.data.tags["expctl.input.top.spec_hash"] != best.data.tags["expctl.spec_hash"]
        assert new.data.tags["expctl.input.top.spec_hash"] in {r.data.tags["expctl.spec_hash"] for r in sweep}
    finally:
        e2e.stop_jobs(repo.path)


def test_a_model_input_waits_for_its_alias_and_a_moved_alias_replaces_the_consumer(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    uri, model = mlflow_server.uri, "pipeline-base"
    repo = minimal_repo(tmp_path / "repo", {
        "experiments/alias-src.yaml": experiment(sweep="seed: 1,2"),
        "experiments/alias-fine.yaml": experiment(inputs=f"    base: {{model: {model}@champion}}\n"),
        "code/train.py": "print('train')\n", ".gitignore": ".expctl/\n"})
    try:
        assert e2e.plan_lines(repo.path, uri)["alias-fine"] == [("noop", "waiting", f"needs {model}@champion")]
        shown = e2e.expctl(repo.path, "plan", tracking_uri=uri)
        assert f"needs {model}@champion" in shown.stdout, shown.stdout
        done = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)  # no --wait: nothing here moves the alias
        assert done.returncode == 0 and "Plan: 2 to create" in done.stdout, done.stdout + done.stderr
        assert e2e.runs_by_start(uri, "alias-fine") == []
        first, second = e2e.runs_by_start(uri, "alias-src")
        v1 = register(uri, model, first.info.run_id)
        assert e2e.plan_lines(repo.path, uri)["alias-fine"][0][:2] == ("create", "missing")
        e2e.apply_wait(repo.path, uri)
        (fine,) = e2e.runs_by_start(uri, "alias-fine")
        assert fine.data.tags["expctl.input.base.uri"] == f"models:/{model}/{v1}"
        assert fine.data.tags["expctl.input.base.spec_hash"] == first.data.tags["expctl.spec_hash"]
        assert job_env(repo, fine)["EXPCTL_INPUT_BASE_URI"] == f"models:/{model}/{v1}"
        assert e2e.plan_lines(repo.path, uri)["alias-fine"][0][:2] == ("noop", "unchanged")
        register(uri, "pipeline-fine", fine.info.run_id)  # lineage walks the chain: fine → its base → its run
        shown = e2e.expctl(repo.path, "lineage", "pipeline-fine@champion", "-o", "json", tracking_uri=uri)
        (base,) = json.loads(shown.stdout)["inputs"]
        assert (base["name"], base["model"], base["version"]) == ("base", model, v1)
        assert base["lineage"]["run"]["id"] == first.info.run_id
        assert base["lineage"]["commit"] == first.data.tags["expctl.commit"]
        human = e2e.expctl(repo.path, "lineage", "pipeline-fine@champion", tracking_uri=uri).stdout
        assert f"input     base: {model} version {v1}  models:/{model}/{v1}" in human, human

        v2 = register(uri, model, second.info.run_id)  # the champion moves
        assert e2e.plan_lines(repo.path, uri)["alias-fine"] == [
            ("replace", "upstream-changed", f"base: {model} v{v1} → {model} v{v2}")]
        e2e.apply_wait(repo.path, uri)
        assert e2e.runs_by_start(uri, "alias-fine")[-1].data.tags["expctl.input.base.uri"] == f"models:/{model}/{v2}"
    finally:
        e2e.stop_jobs(repo.path)


@pytest.mark.parametrize(("files", "where", "says"), [
    ({"experiments/cyc-a.yaml": experiment(inputs="    b: {experiment: cyc-b}\n"),
      "experiments/cyc-b.yaml": experiment(inputs="    a: {experiment: cyc-a}\n")},
     "experiments/cyc-a.yaml: expctl.inputs.b.experiment", "a cycle of inputs: cyc-a → cyc-b → cyc-a"),
    ({"experiments/lone.yaml": experiment(inputs="    up: {experiment: nowhere}\n")},
     "experiments/lone.yaml: expctl.inputs.up.experiment", "no experiment named 'nowhere'"),
    ({"experiments/one.yaml": experiment(), "experiments/ev.yaml": experiment(
        inputs="    up: {experiment: one, each: true}\n")},
     "experiments/ev.yaml: expctl.inputs.up.each", "'one' is not a sweep"),
    ({"experiments/al.yaml": experiment(inputs="    base: {model: m@latest}\n")},
     "experiments/al.yaml: expctl.inputs.base.model", "reserved"),
])
def test_bad_inputs_fail_validate_in_one_line(tmp_path: Path, files: dict[str, str], where: str, says: str) -> None:
    repo = minimal_repo(tmp_path / "repo", {**files, "code/train.py": "print('train')\n"})
    done = e2e.expctl(repo.path, "validate")
    assert done.returncode == 1
    (line,) = [ln for ln in done.stderr.splitlines() if where in ln]
    assert says in line, done.stderr
