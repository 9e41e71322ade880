"""What the Slurm backend hands to sbatch and how it reads squeue back (pure, table-driven)."""

from __future__ import annotations

import pytest

from expctl.backends.slurm import script as sc
from expctl.config.job_spec import to_job_spec
from expctl.config.schema import ExpctlBlock, parse_settings
from expctl.core.model import FailureClass, JobKind, Phase, Resources
from tests.support.factories import make_job, make_launch, make_spec


def launch(**job: object):  # type: ignore[no-untyped-def]
    spec = make_spec("team-a/exp", overrides=("lr=0.1",), job=make_job(JobKind.PYTORCH, **job), commit="c" * 40)
    return make_launch(spec, attempt=2)


def test_sbatch_options_map_the_job() -> None:
    one = launch(replicas=3, resources=Resources(cpu="1500m", memory="2Gi", gpus=4), timeout_seconds=3601)
    args = sc.sbatch_args(one, "/shared/runs/x", sc.Placement("gpu", "team-a", "high"))
    assert args == [
        "--parsable", f"--job-name={one.name}",
        f"--comment=expctl:run_key={one.spec.run_key},spec_hash={one.spec.spec_hash},attempt=2",
        "--nodes=3", "--ntasks-per-node=1", "--no-requeue", "--output=/shared/runs/x/batch.log",
        "--chdir=/shared/runs/x", "--gres=gpu:4", "--cpus-per-task=2", "--mem=2048M", "--time=61",
        "--partition=gpu", "--account=team-a", "--qos=high",
    ]
    bare = sc.sbatch_args(launch(resources=Resources()), "/r", sc.Placement())
    assert not [a for a in bare if a.startswith(("--gres", "--mem", "--cpus", "--time", "--partition"))]


@pytest.mark.parametrize(("quantity", "mb"), [("2Gi", 2048), ("512Mi", 512), ("1G", 954), ("100M", 96),
                                              ("1048576", 1), ("1.5Gi", 1536)])
def test_memory_in_mebibytes(quantity: str, mb: int) -> None:
    assert sc.memory_mb(quantity) == mb


def test_identity_round_trips_through_the_comment() -> None:
    one = launch()
    assert sc.parse_comment(sc.comment(one)) == {"run_key": one.spec.run_key, "spec_hash": one.spec.spec_hash,
                                                 "attempt": "2"}
    assert sc.parse_comment("") is None and sc.parse_comment("nightly backup") is None
    assert sc.parse_comment("expctl:run_key=x") is None


@pytest.mark.parametrize(("state", "reason", "exit_code", "phase", "failure", "message"), [
    ("PENDING", "Resources", 0, Phase.PENDING, None, "Pending: Resources"),
    ("PENDING", "Priority", 0, Phase.PENDING, None, "Pending: Priority"),
    ("RUNNING", "None", 0, Phase.RUNNING, None, ""),
    ("COMPLETING", "None", 0, Phase.RUNNING, None, "completing"),
    ("SUSPENDED", "Preempted", 0, Phase.PENDING, None, "suspended by Slurm (SUSPENDED, reason Preempted)"),
    ("REQUEUED", "None", 0, Phase.PENDING, None, "Pending"),
    ("COMPLETED", "None", 0, Phase.SUCCEEDED, None, ""),
    ("FAILED", "NonZeroExitCode", 768, Phase.FAILED, FailureClass.CODE, "exit code 3"),
    ("TIMEOUT", "TimeLimit", 0, Phase.FAILED, FailureClass.CODE, "TIMEOUT"),
    ("OUT_OF_MEMORY", "OutOfMemory", 0, Phase.FAILED, FailureClass.CODE, "OUT_OF_MEMORY"),
    ("NODE_FAIL", "NodeDown", 0, Phase.FAILED, FailureClass.INFRASTRUCTURE, "NODE_FAIL"),
    ("BOOT_FAIL", "None", 0, Phase.FAILED, FailureClass.INFRASTRUCTURE, "BOOT_FAIL"),
    ("PREEMPTED", "None", 0, Phase.FAILED, FailureClass.INFRASTRUCTURE, "PREEMPTED"),
    ("CANCELLED", "None", 15, Phase.CANCELLED, None, "CANCELLED"),
])
def test_slurm_states(state: str, reason: str, exit_code: int, phase: Phase, failure: FailureClass | None,
                      message: str) -> None:
    verdict = sc.verdict({"job_state": state, "state_reason": reason, "exit_code": exit_code})
    assert (verdict.phase, verdict.failure) == (phase, failure)
    assert message in verdict.message


def test_batch_script_derives_the_topology_from_slurm() -> None:
    one = launch(replicas=2, env=(("GREETING", "it's me"),))
    script = sc.batch_script(one, "/shared/runs/x", "/shared/checkouts/c", ["python", "-m", "training.train"])
    assert script.startswith("#!/bin/bash\n")
    assert "export GREETING='it'\"'\"'s me'" in script
    assert f"export EXPCTL_GIT_COMMIT={'c' * 40}" in script
    assert "export EXPCTL_CONFIG_FILE=/shared/runs/x/config.json" in script
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in script and "NodeAddr" in script
    assert "RANK=$SLURM_PROCID WORLD_SIZE=$SLURM_NTASKS LOCAL_RANK=$SLURM_LOCALID" in script
    assert "names=(master-0 worker-0)" in script
    assert "--output=/shared/runs/x/task-%t.log" in script and "python -m training.train" in script


def test_placement_from_the_experiment_its_tenant_or_the_defaults() -> None:
    settings = parse_settings({"slurm": {"workdir": "/shared", "partition": "cpu", "qos": "normal", "tenants": [
        {"path": "experiments/team-a", "account": "team-a", "partition": "gpu"}]}})
    block = ExpctlBlock.model_validate({"slurm": {"qos": "high"}})
    sched = to_job_spec(block, settings, "experiments/team-a/e.yaml").scheduling
    assert (sched.partition, sched.account, sched.qos) == ("gpu", "team-a", "high")
    sched = to_job_spec(ExpctlBlock(), settings, "experiments/other.yaml").scheduling
    assert (sched.partition, sched.account, sched.qos) == ("cpu", None, "normal")


def test_later_squeue_json_formats_read_the_same() -> None:
    """Slurm 23.02+ prints states as lists and numbers as {set, number} (data v0.0.39+)."""
    later = {"job_state": ["FAILED"], "state_reason": "NonZeroExitCode",
             "exit_code": {"status": ["NON_ZERO_EXIT"], "return_code": {"set": True, "infinite": False, "number": 3},
                           "signal": {"id": {"set": False, "infinite": False, "number": 0}, "name": ""}},
             "end_time": {"set": True, "infinite": False, "number": 1700000000}}
    verdict = sc.verdict(later)
    assert (verdict.phase, verdict.failure) == (Phase.FAILED, FailureClass.CODE) and "exit code 3" in verdict.message
    assert sc.end_time(later) == 1700000000.0 and sc.end_time({"end_time": 1700000001}) == 1700000001.0
    assert sc.verdict({"job_state": ["PENDING"], "state_reason": "Resources"}).message == "Pending: Resources"


@pytest.mark.parametrize(("output", "unreachable"), [
    ("sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)", True),
    ("slurm_load_jobs error: Unable to contact slurm controller (connect failure)", True),
    ("squeue: error: Socket timed out on send/recv operation", True),
    ("sbatch: error: Batch job submission failed: Invalid partition name specified", False),
    ("sbatch: error: Batch job submission failed: Requested node configuration is not available", False),
    ("scancel: error: Kill job error on job id 12: Invalid job id specified", False),
])
def test_an_unreachable_controller_is_told_apart(output: str, unreachable: bool) -> None:
    """An unreachable slurmctld stops an apply (BackendUnavailable); a refused job fails only itself."""
    from expctl.backends.slurm.script import controller_unreachable

    assert controller_unreachable(output) is unreachable


def test_the_batch_script_holds_no_password_of_the_tracking_uri() -> None:
    spec = make_spec("team-a/exp", job=make_job(JobKind.PYTORCH), commit="c" * 40)
    one = make_launch(spec, tracking_uri="http://ci:hunter2@mlflow:5000")
    script = sc.batch_script(one, "/shared/runs/x", "/shared/checkouts/c", ["python", "-m", "training.train"])
    assert "hunter2" not in script and "export MLFLOW_TRACKING_URI=http://mlflow:5000" in script
    settings = parse_settings({"tracking_uri": "postgresql://ml:hunter2@db/mlflow", "slurm": {"workdir": "/shared"}})
    rendered = sc.render_jobs([spec], settings)
    assert "hunter2" not in rendered and "export MLFLOW_TRACKING_URI=postgresql://ml@db/mlflow" in rendered


def test_a_producer_writes_its_outputs_into_its_run_directory_on_the_shared_workdir() -> None:
    producer = launch(outputs="blobs-raw")
    script = sc.batch_script(producer, "/shared/runs/x", "/shared/checkouts/c", ["python", "imp.py"])
    assert "export EXPCTL_OUTPUT_DIR=/shared/runs/x/outputs" in script
    assert "export EXPCTL_OUTPUT_DATASET=blobs-raw" in script
    plain = sc.batch_script(launch(), "/shared/runs/x", "/shared/checkouts/c", ["python", "train.py"])
    assert "EXPCTL_OUTPUT" not in plain
