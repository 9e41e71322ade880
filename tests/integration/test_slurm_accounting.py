"""Teams on a real Slurm cluster with accounting (slurmdbd on a private MariaDB, ``slurm_accounting_cluster``):
``apply_slurm_teams`` creates each team's account, QOS (``GrpTRES=gres/gpu=N``) and association, a second apply
changes nothing, a new quota modifies the QOS; a job over the QOS's GPUs waits with Slurm's reason
``QOSGrpGRES``, seen in ``squeue`` and in ``expctl status`` — and ``expctl apply`` submits a team's runs over
the quota its QOS holds, leaving them to Slurm (held by the plan only while ``sacctmgr`` fails); ``sacctmgr``
failing (slurmdbd stopped, or an account with running jobs to delete) is one line saying how many changes were
made before it.
On the session's cluster, which has no accounting, only partitions are checked, and the report says so.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.slurm.accounting import NO_ACCOUNTING_NOTE, SlurmTeam, apply_slurm_teams, plan_slurm_teams
from expctl.core.errors import BackendError
from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer
from tests.support.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.integration


def show(cluster: SlurmCluster, what: str, fmt: str, *where: str) -> list[list[str]]:
    """``sacctmgr -P -n show WHAT [where ...] format=FMT`` as rows of fields."""
    out = cluster.run("sacctmgr", "-P", "-n", "show", what, *(("where", *where) if where else ()), f"format={fmt}")
    return [line.split("|") for line in out.splitlines() if line]


def wait_until(what: str, check: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def test_reconcile_creates_then_is_a_no_op_then_modifies(slurm_accounting_cluster: SlurmCluster) -> None:
    cluster, env = slurm_accounting_cluster, slurm_accounting_cluster.env
    team = SlurmTeam("vision", account="vision", partition="main", qos="vision-gpu", gpus=2, max_gpus_per_run=2)

    made = apply_slurm_teams([team], env=env)
    assert made.accounting and not made.problems
    assert [(c.action, c.kind, c.name) for c in made.changes] == [
        ("create", "qos", "vision-gpu"), ("create", "account", "vision"), ("create", "association", "vision/root")]
    assert show(cluster, "qos", "name,description,grptres,maxtresperjob", "name=vision-gpu") == [
        ["vision-gpu", "expctl team vision", "gres/gpu=2", "gres/gpu=2"]]
    assert show(cluster, "account", "account,description,organization", "name=vision") == [
        ["vision", "expctl team vision", "expctl"]]
    assert sorted(show(cluster, "assoc", "account,user,qos,defaultqos", "account=vision")) == [
        ["vision", "", "vision-gpu", "vision-gpu"], ["vision", "root", "vision-gpu", "vision-gpu"]]

    assert apply_slurm_teams([team], env=env).changes == ()  # converged: a second apply does nothing

    bigger = SlurmTeam("vision", account="vision", partition="main", qos="vision-gpu", gpus=3, max_gpus_per_run=2)
    (change,) = apply_slurm_teams([bigger], env=env).changes
    assert str(change) == "modify qos vision-gpu (team vision): GrpTRES gres/gpu=2 -> gres/gpu=3"
    assert show(cluster, "qos", "name,grptres", "name=vision-gpu") == [["vision-gpu", "gres/gpu=3"]]
    assert plan_slurm_teams([bigger], env=env).changes == ()

    # the team is no longer declared: kept without --prune, deleted with it (account, then its QOS)
    kept = plan_slurm_teams([], env=env)
    assert kept.changes == () and {(c.kind, c.name) for c in kept.kept} == {("account", "vision"),
                                                                            ("qos", "vision-gpu")}
    pruned = apply_slurm_teams([], prune=True, env=env)
    assert [(c.action, c.kind) for c in pruned.changes] == [("delete", "account"), ("delete", "qos")]
    assert show(cluster, "account", "account", "name=vision") == []
    assert show(cluster, "qos", "name", "name=vision-gpu") == []


def test_an_account_expctl_did_not_create_is_left_alone(slurm_accounting_cluster: SlurmCluster) -> None:
    cluster, env = slurm_accounting_cluster, slurm_accounting_cluster.env
    cluster.run("sacctmgr", "-i", "add", "account", "physics", "Description=the physicists", "Organization=lab")
    report = apply_slurm_teams([SlurmTeam("physics", account="physics", qos="physics-gpu", gpus=1)],
                               prune=True, env=env)
    assert [(c.action, c.kind) for c in report.changes] == [("create", "qos")]
    assert any("account physics (team physics) exists and is not expctl's" in n for n in report.notes)
    assert show(cluster, "account", "account,description,organization", "name=physics") == [
        ["physics", "the physicists", "lab"]]
    apply_slurm_teams([], prune=True, env=env)  # the QOS goes; the lab's account stays
    assert show(cluster, "account", "account", "name=physics") == [["physics"]]
    assert show(cluster, "qos", "name", "name=physics-gpu") == []


def _quota_project(tmp_path: Path) -> Any:
    waiter = e2e.experiment(quick=True, expctl="  resources: {cpu: '1', gpus: 1}\n")
    repo = e2e.make_project(tmp_path / "repo", {"waiter": waiter})
    repo.write("expctl.yaml", f"backend: slurm\ncode_paths: [training]\nslurm:\n  workdir: {tmp_path / 'shared'}\n"
                              "  account: nlp\n  qos: nlp-gpu\n")
    repo.commit("nlp's runs on Slurm")
    return repo


def test_a_job_over_the_teams_gpu_quota_waits_with_qosgrpgres(slurm_accounting_cluster: SlurmCluster,
                                                              mlflow_server: MlflowServer, tmp_path: Path) -> None:
    cluster, env = slurm_accounting_cluster, slurm_accounting_cluster.env
    apply_slurm_teams([SlurmTeam("nlp", account="nlp", partition="main", qos="nlp-gpu", gpus=2)], env=env)
    repo = _quota_project(tmp_path)
    try:
        # the team's two GPUs are held (the cluster has four, so only the QOS can make the next job wait)
        hog = cluster.run("sbatch", "--parsable", "-A", "nlp", "--qos=nlp-gpu", "--gres=gpu:2",
                          f"--chdir={tmp_path}", "-o", "/dev/null", "--wrap", "sleep 600").strip()
        wait_until("the hog to run", lambda: cluster.run("squeue", "-h", "-j", hog, "-o", "%T").strip() == "RUNNING")
        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=mlflow_server.uri, **env)
        assert applied.returncode == 0, applied.stderr

        def waiter() -> list[str]:
            return cluster.run("squeue", "-h", "-A", "nlp", "-t", "PENDING", "-o", "%i %r").split()

        wait_until("the waiter's reason", lambda: waiter()[1:] == ["QOSGrpGRES"])
        proc = e2e.expctl(repo.path, "status", "-o", "json", tracking_uri=mlflow_server.uri, **env)
        assert proc.returncode == 0, proc.stderr
        (row,) = json.loads(proc.stdout)
        assert row["state"] == "Pending" and row["reason"] == "Pending: QOSGrpGRES", row

        # a failure half-way: the new team's QOS is made, then Slurm refuses to delete an account with jobs
        with pytest.raises(BackendError) as err:
            apply_slurm_teams([SlurmTeam("cv", qos="cv-gpu", gpus=1)], prune=True, env=env)
        assert str(err.value) == ("sacctmgr failed to delete account nlp: no team declares it: Error with request: "
                                  "Job(s) active, cancel job(s) before remove (1 of 3 changes made before it; "
                                  "rerun to finish)")
        assert show(cluster, "qos", "name", "name=cv-gpu") == [["cv-gpu"]]
        assert show(cluster, "account", "account", "name=nlp") == [["nlp"]]
    finally:
        cluster.run("scancel", "-A", "nlp")
    wait_until("nlp's jobs to end", lambda: cluster.run("squeue", "-h", "-A", "nlp", "-t", "PD,R,CG") == "")
    assert [c.kind for c in apply_slurm_teams([], prune=True, env=env).changes] == ["account", "qos", "qos"]


def test_sacctmgr_failing_is_one_line_and_nothing_reported_done(slurm_accounting_cluster: SlurmCluster) -> None:
    cluster, env = slurm_accounting_cluster, slurm_accounting_cluster.env
    cluster.stop_accounting()
    try:
        with pytest.raises(BackendError) as err:
            apply_slurm_teams([SlurmTeam("cv", account="cv", qos="cv-gpu", gpus=1)], env=env)
    finally:
        cluster.start_accounting()
    message = str(err.value)
    assert "\n" not in message and message.startswith("sacctmgr -P -n show qos"), message
    assert "Connection refused" in message, message
    assert show(cluster, "qos", "name", "name=cv-gpu") == []


def test_without_accounting_only_partitions_are_checked(slurm_cluster: SlurmCluster) -> None:
    teams = [SlurmTeam("vision", account="vision", partition="main", qos="vision-gpu", gpus=2)]
    report = plan_slurm_teams(teams, env=slurm_cluster.env)
    assert not report.accounting and report.changes == () and report.notes == (NO_ACCOUNTING_NOTE,)
    assert report.lines() == [f"slurm: {NO_ACCOUNTING_NOTE}"]
    assert apply_slurm_teams(teams, env=slurm_cluster.env).changes == ()

    lost = [SlurmTeam("nlp", account="nlp", partition="gpu-a100")]
    assert plan_slurm_teams(lost, env=slurm_cluster.env).problems == (
        "partition gpu-a100 of team nlp does not exist (sinfo lists: gpu, main)",)
    with pytest.raises(BackendError, match=r"^slurm: partition gpu-a100 of team nlp does not exist"):
        apply_slurm_teams(lost, env=slurm_cluster.env)


def test_a_missing_slurm_client_is_one_line(tmp_path: Path) -> None:
    """No Slurm client on PATH: one line, not a traceback."""
    with pytest.raises(BackendError, match="sinfo not found"):
        plan_slurm_teams([SlurmTeam("a", partition="p")], env={"PATH": str(tmp_path)})


def _teams_project(tmp_path: Path, gpus: int, project: str = "accounting") -> Any:
    repo = e2e.make_project(tmp_path / "repo", {"speech/a": e2e.experiment(quick=True)})
    # a project of its own (declared): other tests' repositories on the session's server are named "repo" too
    repo.write("expctl.yaml", f"project: {project}\nbackend: slurm\ncode_paths: [training]\n"
                              f"slurm:\n  workdir: {tmp_path / 'shared'}\n"
                              "teams:\n  - name: speech\n    paths: [experiments/speech]\n    members: ['@carol']\n"
                              f"    slurm: {{partition: main, account: speech, qos: speech-gpu}}\n    gpus: {gpus}\n")
    repo.commit(f"speech: {gpus} GPUs")
    return repo


def test_expctl_teams_plan_and_apply_reconcile_slurm_accounting(slurm_accounting_cluster: SlurmCluster,
                                                                 mlflow_server: MlflowServer,
                                                                 tmp_path: Path) -> None:
    """The CLI route: ``expctl teams plan`` lists the sacctmgr changes, ``teams apply -y`` makes them (each one
    audited, under the apply lock), a second plan has nothing to do, a new quota is one update."""
    cluster, env, uri = slurm_accounting_cluster, slurm_accounting_cluster.env, mlflow_server.uri
    project = f"accounting-{uuid.uuid4().hex[:8]}"
    repo = _teams_project(tmp_path, 2, project)
    planned = e2e.expctl(repo.path, "teams", "plan", tracking_uri=uri, **env)
    assert planned.returncode == 0, planned.stderr
    assert [ln.split()[1:3] for ln in planned.stdout.splitlines() if ln.startswith("  +")] == [
        ["create", "QOS/speech-gpu"], ["create", "Account/speech"], ["create", "Association/speech/root"]]
    applied = e2e.expctl(repo.path, "teams", "apply", "-y", tracking_uri=uri, **env)
    assert applied.returncode == 0 and "Applied: 3 of 3 changes." in applied.stdout, applied.stdout + applied.stderr
    assert show(cluster, "qos", "name,grptres", "name=speech-gpu") == [["speech-gpu", "gres/gpu=2"]]
    again = e2e.expctl(repo.path, "teams", "plan", tracking_uri=uri, **env)
    assert again.returncode == 0 and "No changes." in again.stdout, again.stdout + again.stderr
    history = e2e.expctl(repo.path, "history", "--team", "speech", "-o", "json", tracking_uri=uri, **env)
    head = repo.git("rev-parse", "HEAD").strip()  # the session's server holds other tests' entries of a team speech
    assert sorted(e["action"] for e in json.loads(history.stdout) if e["commit"] == head) == ["team-create"] * 3, \
        history.stdout

    repo = _teams_project(tmp_path / "more", 3, project)
    raised = e2e.expctl(repo.path, "teams", "apply", "-y", tracking_uri=uri, **env)
    assert "Applied: 1 of 1 changes." in raised.stdout, raised.stdout + raised.stderr
    assert show(cluster, "qos", "name,grptres", "name=speech-gpu") == [["speech-gpu", "gres/gpu=3"]]
    apply_slurm_teams([], prune=True, env=env)  # leave the shared accounting cluster as it was


def test_expctl_teams_plan_without_accounting_says_so(slurm_cluster: SlurmCluster, mlflow_server: MlflowServer,
                                                      tmp_path: Path) -> None:
    repo = _teams_project(tmp_path, 2)
    planned = e2e.expctl(repo.path, "teams", "plan", tracking_uri=mlflow_server.uri, **slurm_cluster.env)
    assert planned.returncode == 0, planned.stderr
    assert "No changes." in planned.stdout and f"note: {NO_ACCOUNTING_NOTE}" in planned.stdout, planned.stdout


def _qos_project(tmp_path: Path, hold: Path) -> GitRepo:
    """Team vision (1 GPU, its own QOS) with two 1-GPU runs that hold until ``hold`` exists."""
    repo = GitRepo(tmp_path / "repo")
    teams = ("teams:\n  - name: vision\n    paths: [experiments/vision]\n    gpus: 1\n"
             "    slurm: {partition: main, account: vision, qos: vision-gpu}\n")
    for rel, text in {
        ".gitignore": ".expctl/\n", "code/job.py": jobs.source("replica_lines"),
        "conf/config.yaml": "seed: 0\nlines: 1\nrelease: \"\"\nexpctl:\n  kind: PyTorchJob\n"
                            "  command: [python, code/job.py]\n  resources: {gpus: 1}\n",
        "expctl.yaml": f"project: qos-{uuid.uuid4().hex[:8]}\nbackend: slurm\ncode_paths: [code]\n"
                       f"slurm:\n  workdir: {tmp_path / 'shared'}\n{teams}",
        "experiments/vision/vit.yaml": f"defaults:\n  - config\n  - _self_\nrelease: {hold}\n"
                                       "hydra:\n  sweeper:\n    params:\n      seed: 1,2\n",
    }.items():
        repo.write(rel, text)
    repo.commit("vision: 1 GPU, enforced by its QOS")
    return repo


@pytest.mark.timeout(600)
def test_a_team_whose_qos_holds_its_quota_has_its_runs_submitted_and_waiting_in_slurm(
        slurm_accounting_cluster: SlurmCluster, mlflow_server: MlflowServer, tmp_path: Path) -> None:
    """With sacctmgr failing expctl holds the run over the quota (as without accounting); once Slurm's accounting
    holds the team's QOS, ``expctl apply`` submits both runs and Slurm holds the second (``QOSGrpGRES``), which
    ``expctl status`` shows; the plan's note says which applies."""
    cluster, env, uri = slurm_accounting_cluster, slurm_accounting_cluster.env, mlflow_server.uri
    hold = tmp_path / "hold"
    repo = _qos_project(tmp_path, hold)
    try:
        teams = e2e.expctl(repo.path, "teams", "apply", "-y", tracking_uri=uri, **env)
        assert teams.returncode == 0, teams.stdout + teams.stderr
        cluster.stop_accounting()
        try:
            held = e2e.expctl(repo.path, "plan", tracking_uri=uri, **env)
        finally:
            cluster.start_accounting()
        assert held.returncode == 0, held.stderr
        assert "(quota: vision 1/1 GPUs)" in held.stdout, held.stdout
        assert "; expctl holds runs over the teams' GPU quotas" in held.stdout, held.stdout

        applied = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri, **env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert "Plan: 2 to create" in applied.stdout and "quota: vision" not in applied.stdout, applied.stdout
        assert ("note: team vision's GPU quota is Slurm's to enforce (qos vision-gpu, GrpTRES=gres/gpu=1)"
                in applied.stdout), applied.stdout

        def states() -> list[str]:
            return sorted(cluster.run("squeue", "-h", "-A", "vision", "-o", "%T %r").splitlines())

        wait_until("one run running and one waiting for its QOS", lambda: states() == ["PENDING QOSGrpGRES",
                                                                                       "RUNNING None"])
        status = e2e.expctl(repo.path, "status", "-o", "json", tracking_uri=uri, **env)
        assert status.returncode == 0, status.stderr
        rows = sorted(json.loads(status.stdout), key=lambda r: str(r["state"]))
        assert [r["state"] for r in rows] == ["Pending", "Running"], rows
        assert rows[0]["reason"] == "Pending: QOSGrpGRES", rows
    finally:
        hold.touch()
        cluster.run("scancel", "-A", "vision")
    wait_until("vision's jobs to end", lambda: cluster.run("squeue", "-h", "-A", "vision", "-t", "PD,R,CG") == "")
    apply_slurm_teams([], prune=True, env=env)  # leave the shared accounting cluster as it was
