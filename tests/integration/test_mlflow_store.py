"""MlflowStore against real MLflow: the embedded sqlite store and a real ``mlflow server``."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.local.backend import LocalBackend
from expctl.core.errors import TrackingError
from expctl.core.jobenv import tracking_env
from expctl.core.model import FailureClass, JobKind, ObservedRun, Phase, RunSpec, TrackingRef, ValidationGate
from expctl.tracking.mlflow.rest_search import RestSearch
from expctl.tracking.mlflow.session import health_request
from expctl.tracking.mlflow.store import MlflowStore
from tests.support.factories import make_job, make_launch, make_spec
from tests.support.gitrepo import GitRepo
from tests.support.mlflow_server import MlflowServer, free_port

pytestmark = pytest.mark.integration

AUTHOR = "Test User <test@example.com>"


def observed(spec: RunSpec, ref: TrackingRef, phase: Phase, attempt: int = 1, **kw: Any) -> ObservedRun:
    return ObservedRun(run_key=spec.run_key, name=spec.name_for(attempt), experiment=spec.experiment,
                       attempt=attempt, spec_hash=spec.spec_hash, phase=phase, backend="local",
                       mlflow_run_id=ref.run_id, finished_at=time.time() if phase.finished else None, **kw)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> MlflowStore:
    return MlflowStore(f"sqlite:///{(tmp_path / '.expctl' / 'mlflow.db').resolve()}", "local", embedded=True)


@pytest.fixture(params=["sqlite", "server"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MlflowStore:
    if request.param == "sqlite":
        return MlflowStore(f"sqlite:///{tmp_path / '.expctl' / 'mlflow.db'}", "local")
    server: MlflowServer = request.getfixturevalue("mlflow_server")
    return MlflowStore(server.uri, "local")


@pytest.fixture
def experiment(request: pytest.FixtureRequest) -> str:
    """A fresh experiment name per test (the server is shared by the session)."""
    return "t-" + request.node.name.lower().replace("_", "-").replace("[", "-").replace("]", "")[:40]


@pytest.fixture
def client(sqlite_store: MlflowStore) -> Any:
    return sqlite_store.client


def test_ensure_run_twice_is_one_run(store: MlflowStore, experiment: str) -> None:
    spec = make_spec(experiment)
    store.check()
    first = store.ensure_run(spec, 1, AUTHOR)
    again = MlflowStore(store.tracking_uri, "local").ensure_run(spec, 1, AUTHOR)
    assert first == again
    assert first.experiment_name == experiment and first.tracking_uri == store.tracking_uri
    retry = store.ensure_run(spec, 2, AUTHOR)
    assert retry.run_id != first.run_id
    runs = store.client.search_runs([store.client.get_experiment_by_name(experiment).experiment_id])
    assert sorted(r.info.run_id for r in runs) == sorted([first.run_id, retry.run_id])
    # MLflow creates runs RUNNING; expctl spends no third request per run on SCHEDULED (mlflow_runs)
    assert store.client.get_run(first.run_id).info.status == "RUNNING"
    assert store.client.get_run(first.run_id).data.tags["expctl.ready"] == "true"


def test_ensure_run_records_params_tags_and_config(sqlite_store: MlflowStore, client: Any) -> None:
    config = {"model": {"hidden": 64, "layers": [1, 2]}, "optimizer": {"lr": 0.1}, "name": "x" * 7000}
    spec = make_spec("demo", config=config, commit="a" * 40)
    ref = sqlite_store.ensure_run(spec, 1, AUTHOR)
    run = client.get_run(ref.run_id)
    assert run.data.params["model.hidden"] == "64"
    assert run.data.params["model.layers"] == "[1, 2]"
    assert run.data.params["optimizer.lr"] == "0.1"
    assert len(run.data.params["name"]) == 6000
    tags = run.data.tags
    assert tags["mlflow.source.git.commit"] == "a" * 40
    assert tags["expctl.spec_hash"] == spec.spec_hash and tags["expctl.run_key"] == spec.run_key
    assert tags["expctl.experiment"] == "demo" and tags["expctl.backend"] == "local"
    assert tags["expctl.job"] == spec.name == tags["mlflow.runName"] and tags["expctl.attempt"] == "1"
    assert tags["expctl.author"] == AUTHOR == tags["mlflow.user"]
    assert json.loads(tags["expctl.overrides"]) == []
    assert "mlflow.parentRunId" not in tags
    assert tags["expctl.ready"] == "true"
    assert client.list_artifacts(ref.run_id) == [], "no artifact upload per run: the config is in the job's env"
    location = client.get_experiment_by_name("demo").artifact_location
    assert location.startswith((Path(sqlite_store.tracking_uri[10:]).parent / "mlartifacts").as_uri())


def test_many_params_are_batched(sqlite_store: MlflowStore, client: Any) -> None:
    config = {"group": {f"k{i}": i for i in range(250)}}
    ref = sqlite_store.ensure_run(make_spec("wide", config=config), 1, AUTHOR)
    assert len(client.get_run(ref.run_id).data.params) == 250


def test_sweep_points_are_children_of_one_parent(sqlite_store: MlflowStore, client: Any) -> None:
    points = [make_spec("sweep", overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.01)]
    refs = [sqlite_store.ensure_run(spec, 1, AUTHOR) for spec in points]
    parents = {client.get_run(ref.run_id).data.tags["mlflow.parentRunId"] for ref in refs}
    assert len(parents) == 1
    parent = client.get_run(parents.pop())
    assert parent.data.tags["expctl.parent"] == "true"
    assert parent.data.tags["expctl.commit"] == points[0].commit
    assert json.loads(client.get_run(refs[0].run_id).data.tags["expctl.overrides"]) == ["lr=0.1"]
    assert len(sqlite_store.records()) == 2, "the parent run is not a record"
    sqlite_store.sync([observed(points[0], refs[0], Phase.SUCCEEDED), observed(points[1], refs[1], Phase.RUNNING)],
                      points)
    assert client.get_run(parent.info.run_id).info.status == "RUNNING"
    sqlite_store.sync([observed(points[1], refs[1], Phase.SUCCEEDED)], points)
    assert client.get_run(parent.info.run_id).info.status == "FINISHED"


def test_records_and_sync_follow_phases(sqlite_store: MlflowStore, client: Any) -> None:
    specs = {phase: make_spec(f"phase-{phase.value.lower()}") for phase in Phase}
    refs = {phase: sqlite_store.ensure_run(spec, 1, AUTHOR) for phase, spec in specs.items()}
    live = [observed(specs[p], refs[p], p, failure=FailureClass.CODE if p is Phase.FAILED else None,
                     message="node-0 exited with code 3" if p is Phase.FAILED else "",
                     cancelled=p is Phase.CANCELLED) for p in Phase]
    sqlite_store.sync(live, list(specs.values()))
    statuses = {p: client.get_run(refs[p].run_id).info.status for p in Phase}
    assert statuses == {Phase.PENDING: "RUNNING", Phase.RUNNING: "RUNNING", Phase.SUCCEEDED: "FINISHED",
                        Phase.FAILED: "FAILED", Phase.CANCELLED: "KILLED"}
    assert client.get_run(refs[Phase.SUCCEEDED].run_id).info.end_time is not None
    records = {r.experiment: r for r in sqlite_store.records()}
    for phase, spec in specs.items():
        record = records[spec.experiment]
        # a launched run reads RUNNING in MLflow until it finishes (pending is the backend's to say)
        assert record.phase is (Phase.RUNNING if phase is Phase.PENDING else phase) and not record.live
        assert (record.run_key, record.spec_hash, record.attempt) == (spec.run_key, spec.spec_hash, 1)
        assert record.name == spec.name and record.mlflow_run_id == refs[phase].run_id
    assert records["phase-failed"].failure is FailureClass.CODE
    assert records["phase-failed"].message == "node-0 exited with code 3"
    assert records["phase-cancelled"].cancelled
    assert MlflowStore(sqlite_store.tracking_uri, "kubernetes").records() == []
    end = client.get_run(refs[Phase.SUCCEEDED].run_id).info.end_time
    sqlite_store.sync(live, list(specs.values()))  # unchanged: no second write
    assert client.get_run(refs[Phase.SUCCEEDED].run_id).info.end_time == end


def _train_stub(ref: TrackingRef, accuracy: float | None, with_model: bool = True) -> None:
    """What the training code does: log a metric and a model into the run it was handed.

    The process-global tracking URI is reset afterwards: expctl itself must not depend on it.
    """
    import mlflow
    import mlflow.pytorch

    mlflow.set_tracking_uri(ref.tracking_uri)
    try:
        _log_into(ref, accuracy, with_model)
    finally:
        mlflow.set_tracking_uri(None)


def _log_into(ref: TrackingRef, accuracy: float | None, with_model: bool) -> None:
    import mlflow
    import mlflow.pytorch
    import torch

    with mlflow.start_run(run_id=ref.run_id):
        if accuracy is not None:
            mlflow.log_metric("val_accuracy", accuracy * 0.5, step=0)
            mlflow.log_metric("val_accuracy", accuracy, step=1)
        if with_model:
            mlflow.pytorch.log_model(torch.nn.Linear(2, 2), name="model", input_example=torch.zeros(1, 2).numpy(),
                                     pip_requirements=[f"torch=={torch.__version__}"])


GATE = ValidationGate(metric="val_accuracy", threshold=0.8, mode="max", register_as="demo-clf", alias="champion")


def test_gate_pass_registers_the_model_once(sqlite_store: MlflowStore, client: Any) -> None:
    spec = make_spec("gated", validation=GATE, commit="b" * 40)
    ref = sqlite_store.ensure_run(spec, 1, AUTHOR)
    _train_stub(ref, 0.9)
    for _ in range(2):  # idempotent: the second sync registers nothing
        sqlite_store.sync([observed(spec, ref, Phase.SUCCEEDED)], [spec])
    versions = client.search_model_versions("name = 'demo-clf'")
    assert len(versions) == 1
    version = client.get_model_version_by_alias("demo-clf", "champion")
    assert version.version == versions[0].version and version.run_id == ref.run_id
    assert version.tags["expctl.run_key"] == spec.run_key
    assert version.tags["expctl.spec_hash"] == spec.spec_hash
    assert version.tags["mlflow.source.git.commit"] == "b" * 40
    tags = client.get_run(ref.run_id).data.tags
    assert tags["expctl.gate"] == "passed"
    assert "val_accuracy=0.9 >= 0.8" in tags["expctl.gate_reason"] and "champion" in tags["expctl.gate_reason"]


def test_gate_failure_and_missing_metric_are_recorded(sqlite_store: MlflowStore, client: Any) -> None:
    low = make_spec("gated-low", validation=GATE)
    none = make_spec("gated-none", validation=GATE)
    no_model = make_spec("gated-nomodel", validation=GATE)
    refs = {s.experiment: sqlite_store.ensure_run(s, 1, AUTHOR) for s in (low, none, no_model)}
    _train_stub(refs["gated-low"], 0.5)
    _train_stub(refs["gated-none"], None)
    _train_stub(refs["gated-nomodel"], 0.95, with_model=False)
    sqlite_store.sync([observed(s, refs[s.experiment], Phase.SUCCEEDED) for s in (low, none, no_model)],
                      [low, none, no_model])
    tags = {name: client.get_run(ref.run_id).data.tags for name, ref in refs.items()}
    assert tags["gated-low"]["expctl.gate"] == "failed"
    assert tags["gated-low"]["expctl.gate_reason"] == "val_accuracy=0.5 is not >= 0.8"
    assert tags["gated-none"]["expctl.gate"] == "missing-metric"
    assert "val_accuracy" in tags["gated-none"]["expctl.gate_reason"]
    assert tags["gated-nomodel"]["expctl.gate"] == "failed"
    assert "no model" in tags["gated-nomodel"]["expctl.gate_reason"]
    assert client.search_model_versions("name = 'demo-clf'") == []


def test_mark_killed(sqlite_store: MlflowStore, client: Any) -> None:
    ref = sqlite_store.ensure_run(make_spec("killed"), 1, AUTHOR)
    sqlite_store.mark_killed(ref.run_id, by="someone")
    run = client.get_run(ref.run_id)
    assert run.info.status == "KILLED" and run.data.tags["expctl.cancelled"] == "true"
    assert sqlite_store.records()[0].cancelled


@pytest.mark.parametrize("uri", ["http://127.0.0.1:{port}", "nosuchscheme://nowhere",
                                 "http://ci:hunter2@127.0.0.1:{port}", "https://hunter2@127.0.0.1:{port}/?token=hunter2",
                                 "nosuchscheme://ml:hunter2@nowhere/db?password=hunter2"])
def test_unusable_store_is_one_line_error(uri: str) -> None:
    store = MlflowStore(uri.format(port=free_port()), "local")
    with pytest.raises(TrackingError) as info:
        store.check()
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"MLflow at {store.shown_uri} is un")
    assert "hunter2" not in message  # the exception itself carries no credentials, not only what the CLI prints


def test_failures_after_the_check_carry_no_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """MLflow's own errors quote the request URL, user information included: hidden in the exception."""
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store = MlflowStore(f"http://ci:hunter2@127.0.0.1:{free_port()}", "local")
    store.checked = True  # as if the server went away after the check
    with pytest.raises(TrackingError) as info:
        store.ui_experiments()
    assert "hunter2" not in str(info.value) and "MLflow at http://***@127.0.0.1" in str(info.value)
    rest = RestSearch(f"http://127.0.0.1:{free_port()}/?token=hunter2")
    with pytest.raises(TrackingError) as info:
        rest.search_experiments("")
    assert "hunter2" not in str(info.value) and str(info.value).startswith("MLflow at http://127.0.0.1:")


def test_a_uri_with_user_information_reaches_the_server(mlflow_server: MlflowServer, experiment: str) -> None:
    """``/health`` is asked without the user information in the URL (urllib cannot open such a URL; the
    credentials go as Basic auth, which a server without authentication ignores), and runs are created."""
    uri = mlflow_server.uri.replace("http://", "http://ci:hun%40ter2@")
    store = MlflowStore(uri, "local")
    store.check()
    ref = store.ensure_run(make_spec(experiment), 1, AUTHOR)
    assert tracking_env(ref)["MLFLOW_TRACKING_URI"] == mlflow_server.uri  # what the job is handed: no credentials
    run = MlflowStore(mlflow_server.uri, "local").client.get_run(ref.run_id)
    values = [str(v) for v in (*run.data.tags.values(), *run.data.params.values())]
    assert not any(secret in v for v in values for secret in ("hun@ter2", "hun%40ter2"))


def test_health_is_asked_with_basic_auth_never_sent_to_a_redirect() -> None:
    request = health_request("https://ci:hun%40ter2@mlflow.example:8443/base/?x=1")
    assert request.full_url == "https://mlflow.example:8443/base/health"
    assert request.unredirected_hdrs == {"Authorization": "Basic Y2k6aHVuQHRlcjI="} and not request.headers


def test_tracking_uri_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--tracking-uri`` > ``MLFLOW_TRACKING_URI`` > ``expctl.yaml`` > the embedded store (the workspace decides)."""
    from expctl.config.schema import parse_settings
    from expctl.engine.workspace import Workspace

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    ws, named = Workspace(tmp_path), parse_settings({"tracking_uri": "http://s"})
    assert ws.resolve_tracking_uri(parse_settings({})) == f"sqlite:///{tmp_path}/.expctl/mlflow.db" == ws.embedded_uri
    assert ws.resolve_tracking_uri(named) == "http://s"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://env")
    assert ws.resolve_tracking_uri(named) == "http://env"
    assert Workspace(tmp_path, tracking_uri="http://x").resolve_tracking_uri(named) == "http://x"
    assert ws.open_store(named).tracking_uri == "http://env"


def test_distributed_training_through_the_local_backend(mlflow_server: MlflowServer, git_repo: GitRepo) -> None:
    """A real 2-replica gloo run of training/ at a pinned commit, logging to a real mlflow server."""
    commit = git_repo.add_training()
    store = MlflowStore(mlflow_server.uri, "local")
    config = {"seed": 1, "trainer": {"epochs": 4}, "dataset": {"n_samples": 600}, "model": {"hidden": 16}}
    gate = replace(GATE, threshold=0.3, register_as="e2e-clf")
    job = make_job(JobKind.PYTORCH, replicas=2, command=("python", "-m", "training.train"), validation=gate)
    spec = make_spec("e2e-train", config=config, job=job, commit=commit)
    ref = store.ensure_run(spec, 1, AUTHOR)
    launch = replace(make_launch(spec), tracking=ref)
    backend = LocalBackend(git_repo.path / ".expctl", git_repo.path, parallelism=2)
    backend.create(launch)
    deadline = time.monotonic() + 240
    run = backend.observe()[0]
    while not run.phase.finished and time.monotonic() < deadline:
        time.sleep(0.5)
        run = backend.observe()[0]
        store.sync([run], [spec])
    logs = "\n".join(backend.logs(launch.name))
    assert run.phase is Phase.SUCCEEDED, f"{run.message}\n{logs[-3000:]}"
    store.sync([run], [spec])
    assert "[worker-0] rank 1/2:" in logs and "[master-0] epoch 3:" in logs
    mlrun = store.client.get_run(ref.run_id)
    assert mlrun.info.status == "FINISHED"
    assert {"train_loss", "val_loss", "val_accuracy"} <= set(mlrun.data.metrics)
    assert len(store.client.get_metric_history(ref.run_id, "val_accuracy")) == 4
    assert any(key.startswith("system/cpu") for key in mlrun.data.metrics), sorted(mlrun.data.metrics)
    assert mlrun.data.tags["expctl.gate"] == "passed", mlrun.data.tags.get("expctl.gate_reason")
    assert store.client.get_model_version_by_alias("e2e-clf", "champion").run_id == ref.run_id


def test_audit_trail_is_newest_first(sqlite_store: MlflowStore) -> None:
    for i, experiment in enumerate(["a", "b", "a"]):
        sqlite_store.record_audit({"action": "create", "run": f"r{i}", "experiment": experiment,
                                   "time": 1_000_000.0 + i, "attempt": 1, "namespace": None})
    assert [e["run"] for e in sqlite_store.audit_entries()] == ["r2", "r1", "r0"]
    assert [e["run"] for e in sqlite_store.audit_entries(experiment="a", limit=1)] == ["r2"]
    assert sqlite_store.audit_entries(experiment="a")[1]["namespace"] == ""
    assert sqlite_store.records() == [], "audit entries are not runs"


def test_artifact_root_applies_to_embedded_stores_only(tmp_path: Path) -> None:
    embedded = MlflowStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "local", artifact_root=tmp_path / "arts")
    assert embedded.artifact_root == (tmp_path / "arts").resolve().as_uri()
    assert MlflowStore("http://127.0.0.1:1", "local", artifact_root=tmp_path / "arts").artifact_root is None


def test_embedded_store_writes_through_a_write_ahead_log(tmp_path: Path) -> None:
    """expctl's own sqlite file gets WAL (kept in the file) and synchronous=NORMAL on every connection this
    process opens to it; a sqlite store the user named is left with sqlite's defaults."""
    import sqlite3

    import sqlalchemy

    embedded_db, users_db = tmp_path / ".expctl" / "mlflow.db", tmp_path / "users.db"
    MlflowStore(f"sqlite:///{embedded_db}", "local", embedded=True).check()
    MlflowStore(f"sqlite:///{users_db}", "local").check()
    with sqlite3.connect(embedded_db) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    with sqlite3.connect(users_db) as plain:
        assert plain.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    for db, level in ((embedded_db, 1), (users_db, 2)):  # 1 = NORMAL, 2 = FULL (the default)
        engine = sqlalchemy.create_engine(f"sqlite:///{db}")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == level
        engine.dispose()


def test_the_workspace_marks_only_its_default_store_as_embedded(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from expctl.config.schema import Settings
    from expctl.engine.workspace import Workspace

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Workspace(tmp_path).open_tracker(Settings(), "local")
    assert isinstance(tracker, MlflowStore) and tracker.embedded
    named = Workspace(tmp_path, tracking_uri=f"sqlite:///{tmp_path / 'other.db'}").open_tracker(Settings(), "local")
    assert isinstance(named, MlflowStore) and not named.embedded


class RacingStore(MlflowStore):
    """Two of these act in lock-step between search and create: the race two concurrent applies can have."""

    def __init__(self, uri: str, barrier: threading.Barrier) -> None:
        super().__init__(uri, "local")
        self.barrier = barrier

    def search(self, experiment_ids: list[str], filter_string: str, order: str = "ASC") -> list[Any]:
        if "expctl.run_key" in filter_string:
            self.barrier.wait(timeout=60)
        return super().search(experiment_ids, filter_string, order)


def test_concurrent_ensure_run_converges_to_one_run(sqlite_store: MlflowStore, client: Any) -> None:
    spec = make_spec("racy")
    sqlite_store.check()
    experiment_id = sqlite_store.experiment_id(spec.experiment)
    barrier = threading.Barrier(2)
    stores = [RacingStore(sqlite_store.tracking_uri, barrier) for _ in range(2)]
    refs: list[TrackingRef] = []
    threads = [threading.Thread(target=lambda s=s: refs.append(s.ensure_run(spec, 1, AUTHOR))) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(refs) == 2 and refs[0] == refs[1], "both applies must hand the job the same run"
    assert [r.info.run_id for r in client.search_runs([experiment_id])] == [refs[0].run_id]


def test_ui_server_command_serves_the_embedded_store(sqlite_store: MlflowStore) -> None:
    import os
    import signal
    import subprocess
    import urllib.request

    from expctl.tracking.mlflow.locations import ui_server_command

    sqlite_store.check()
    assert ui_server_command("http://mlflow.example:5000", 5000) == (None, {}, "http://mlflow.example:5000")
    command, env, url = ui_server_command(sqlite_store.tracking_uri, free_port())
    assert command is not None
    proc = subprocess.Popen(command, env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)


@pytest.mark.parametrize(
    ("gate", "metrics", "outcome", "reason"),
    [
        (ValidationGate("acc", 0.8), {"acc": 0.8}, "passed", "acc=0.8 >= 0.8"),
        (ValidationGate("acc", 0.8), {"acc": 0.79}, "failed", "acc=0.79 is not >= 0.8"),
        (ValidationGate("loss", 0.5, mode="min"), {"loss": 0.4}, "passed", "loss=0.4 <= 0.5"),
        (ValidationGate("loss", 0.5, mode="min"), {"loss": float("nan")}, "failed", "loss is NaN"),
        (ValidationGate("acc", 0.8), {"loss": 1.0}, "missing-metric",
         "the run logged no metric 'acc' (logged: loss)"),
    ],
)
def test_gate_decision(gate: ValidationGate, metrics: dict[str, float], outcome: str, reason: str) -> None:
    from expctl.core.gate import evaluate

    assert (evaluate(gate, metrics).outcome, evaluate(gate, metrics).reason) == (outcome, reason)


def test_flatten_params_and_parent_status() -> None:
    from expctl.tracking.mlflow.tags import flatten_params, parent_status

    assert flatten_params({"a": {"b": 1, "c": [1, "x"], "d": {}}, "e": None, "f": True}) == {
        "a.b": "1", "a.c": '[1, "x"]', "a.d": "{}", "e": "null", "f": "true"}
    assert parent_status(["FINISHED", "RUNNING"]) == "RUNNING"
    assert parent_status(["FINISHED", "FAILED"]) == "FAILED"
    assert parent_status(["FINISHED", "KILLED"]) == "FINISHED"
    assert parent_status(["KILLED"]) == "KILLED"


def test_view_knows_every_run_so_ensure_run_needs_no_request(sqlite_store: MlflowStore, client: Any) -> None:
    points = [make_spec("viewed", overrides=(f"lr={lr}",), config={"lr": lr}) for lr in (0.1, 0.2)]
    sqlite_store.check()
    first = sqlite_store.ensure_run(points[0], 1, AUTHOR, sqlite_store.view())
    # a crash between create_run and log_batch: a run without params and without expctl.ready
    half = client.create_run(sqlite_store.experiment_id("viewed"), tags={
        "expctl.managed": "true", "expctl.backend": "local", "expctl.run_key": points[1].run_key,
        "expctl.spec_hash": points[1].spec_hash, "expctl.attempt": "1", "expctl.job": points[1].name})
    calls: list[str] = []

    class Counting:
        def __init__(self, real: Any) -> None:
            self.real = real

        def __getattr__(self, name: str) -> Any:
            calls.append(name)
            return getattr(self.real, name)

    class CountingStore(MlflowStore):
        """Every client method used, once ``counting`` is set."""

        counting = False

        @property
        def client(self) -> Any:
            real = super().client
            return Counting(real) if self.counting else real

    fresh = CountingStore(sqlite_store.tracking_uri, "local")
    view = fresh.view()
    assert {r.name for r in view.records} == {points[0].name, points[1].name}
    fresh.counting = True
    assert fresh.ensure_run(points[0], 1, AUTHOR, view) == first
    assert calls == [], "a run in the view costs no request"
    resumed = fresh.ensure_run(points[1], 1, AUTHOR, view)
    assert resumed.run_id == half.info.run_id and calls == ["log_batch"], calls
    assert client.get_run(half.info.run_id).data.params == {"lr": "0.2", "override.lr": "0.2"}
    assert client.get_run(half.info.run_id).data.tags["expctl.ready"] == "true"


def test_audit_record_intent_recovery_and_history(sqlite_store: MlflowStore) -> None:
    from expctl.core import audit
    from expctl.core.model import Action, Change, Plan, Reason

    specs = [make_spec("audited", overrides=(f"lr={i}",)) for i in range(3)]
    changes = [Change(Action.CREATE, Reason.MISSING, s.experiment, s.run_key, s.name, s.overrides, s.spec_hash,
                      1, s) for s in specs]
    plan = Plan("c" * 40, "local", tuple(changes), "fp")
    sqlite_store.check()
    intent = sqlite_store.begin_audit(audit.new_record(plan, changes, AUTHOR, "ci-bot"))
    (open_one,) = sqlite_store.view().open_audits
    assert open_one == intent and open_one.record_id == intent.record_id
    assert sqlite_store.audit_entries() == [], "an intent lists nothing as applied yet"
    live = [ObservedRun(specs[0].run_key, specs[0].name, "audited", 1, specs[0].spec_hash, Phase.PENDING, "local")]
    sqlite_store.complete_audit(audit.recover(open_one, live))
    assert sqlite_store.view().open_audits == []
    (entry,) = sqlite_store.audit_entries()
    assert (entry["run"], entry["who"], entry["actor"], entry["fingerprint"]) == (specs[0].name, AUTHOR, "ci-bot",
                                                                                 "fp")
    assert sqlite_store.records() == [], "audit records are not runs"
