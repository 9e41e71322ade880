"""One job environment for every backend: the same names, one precedence rule (pure)."""

from __future__ import annotations

import json

from expctl.backends.kubernetes.manifests.common import env as kube_env
from expctl.core import jobenv
from expctl.core.model import JobKind
from tests.support.factories import make_job, make_launch, make_spec


def launch_with(env: tuple[tuple[str, str], ...]):  # type: ignore[no-untyped-def]
    return make_launch(make_spec("team-a/exp", overrides=("lr=0.1",), job=make_job(env=env), commit="c" * 40),
                       attempt=2, tracking_uri="http://127.0.0.1:5000", run_id="r" * 32)


def test_identity_and_mlflow_variables() -> None:
    launch = launch_with(())
    env = jobenv.job_env(launch, config_file="/shared/run/config.json")
    assert env["EXPCTL_RUN_NAME"] == launch.name and env["EXPCTL_ATTEMPT"] == "2"
    assert env["EXPCTL_RUN_KEY"] == launch.spec.run_key and env["EXPCTL_SPEC_HASH"] == launch.spec.spec_hash
    assert env["EXPCTL_EXPERIMENT"] == "team-a/exp" and env["EXPCTL_GIT_COMMIT"] == "c" * 40
    assert env["EXPCTL_CONFIG_FILE"] == "/shared/run/config.json"
    assert env["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000" and env["MLFLOW_RUN_ID"] == "r" * 32
    assert env["MLFLOW_EXPERIMENT_NAME"] == "team-a/exp"
    assert "EXPCTL_COMMIT" not in env  # one name for the commit, everywhere


def test_expctl_and_mlflow_identity_win_over_the_experiments_env() -> None:
    own = (("MLFLOW_RUN_ID", "mine"), ("EXPCTL_ATTEMPT", "9"), ("MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL", "5"),
           ("BATCH", "64"))
    env = jobenv.job_env(launch_with(own))
    assert env["MLFLOW_RUN_ID"] == "r" * 32 and env["EXPCTL_ATTEMPT"] == "2"
    assert env["MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL"] == "5" and env["BATCH"] == "64"


def test_kubernetes_pods_get_the_same_job_environment() -> None:
    launch = launch_with((("BATCH", "64"), ("MLFLOW_RUN_ID", "mine")))
    assert {e["name"]: e["value"] for e in kube_env(launch)} == jobenv.job_env(launch)


def test_replica_topology_as_an_operator_sets_it() -> None:
    names = jobenv.replica_names(JobKind.PYTORCH, 3)
    assert names == ["master-0", "worker-0", "worker-1"]
    env = jobenv.replica_env(JobKind.PYTORCH, names, 2, "10.0.0.1", 29500)
    assert env == {"MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "3", "RANK": "2",
                   "LOCAL_RANK": "2", "EXPCTL_REPLICA": "worker-1"}
    assert set(env) == set(jobenv.TOPOLOGY)


def test_tf_config_where_asked() -> None:
    names = jobenv.replica_names(JobKind.TF, 2)
    env = jobenv.replica_env(JobKind.TF, names, 1, "h", 1, tf_addresses=["h:1", "h:2"])
    assert json.loads(env["TF_CONFIG"]) == {"cluster": {"chief": ["h:1"], "worker": ["h:2"]},
                                            "task": {"type": "worker", "index": 0}}
    assert "TF_CONFIG" not in jobenv.replica_env(JobKind.PYTORCH, names, 1, "h", 1)
