"""A project on the Kubernetes backend for the end-to-end tests: this repository's conf/ and training/ in a
fresh git repository whose ``expctl.yaml`` selects the test namespace, experiments under their own
``experiments/<prefix>/`` (so that runs of two tests never mix in one MLflow server), and ``expctl`` run
in-process through a workspace that opens the backend on the test cluster (fast retries) and keeps it, so
tests can read its request counters."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from kubernetes import client

from expctl.backends.base import Backend
from expctl.backends.kubernetes.backend import KubernetesBackend
from expctl.backends.kubernetes.manifests import KINDS
from expctl.backends.kubernetes.manifests.common import kube_settings, namespaces
from expctl.cli import main
from expctl.config.schema import Settings
from expctl.core.model import JobKind
from expctl.engine.workspace import Workspace
from expctl.tracking.base import Tracker
from tests.support.gitrepo import GitRepo
from tests.support.kube_cluster import Cluster
from tests.support.kube_driver import FAST_RETRY, conditions, patch_status

SELECTOR = "expctl.io/managed-by=expctl"


REPO_URL = "https://git.example.com/team/experiments.git"


class KubeWorkspace(Workspace):
    """The repository's own settings, with the backend opened on the test cluster (fast retries) and MLflow
    on the test server; every backend it opens is kept, so tests can read its request counters."""

    def __init__(self, repo: Path, cluster: Cluster, tracking_uri: str) -> None:
        super().__init__(repo, tracking_uri=tracking_uri)
        self.cluster = cluster
        self.backends: list[KubernetesBackend] = []
        self.wrap: Callable[[KubernetesBackend], Backend] | None = None

    def open_backend(self, name: str, settings: Settings) -> Backend:
        assert name == "kubernetes", name
        kube = settings.kubernetes
        backend = KubernetesBackend.from_kubeconfig(
            str(self.cluster.kubeconfig), namespaces=namespaces(settings), settings=kube_settings(settings),
            qps=kube.qps, burst=kube.burst, write_concurrency=kube.write_concurrency, retry=FAST_RETRY,
        )
        self.backends.append(backend)
        return self.wrap(backend) if self.wrap else backend

    def open_tracker(self, settings: Settings, backend_name: str) -> Tracker:
        tracker = super().open_tracker(settings, backend_name)
        assert getattr(tracker, "tracking_uri", None) == self.tracking_uri
        return tracker


@dataclass
class Project:
    repo: GitRepo
    ws: KubeWorkspace
    cluster: Cluster
    namespace: str
    prefix: str
    mlflow_uri: str

    def exp(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def write_exp(self, name: str, text: str) -> None:
        self.repo.write(f"experiments/{self.prefix}/{name}.yaml", text)

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), obj={"workspace": self.ws})

    def ok(self, *args: str) -> Result:
        result = self.cli(*args)
        assert result.exit_code == 0, f"expctl {' '.join(args)} exited {result.exit_code}:\n{result.output}"
        return result

    def plan(self, *args: str) -> dict[str, Any]:
        result = self.cli("plan", "-o", "json", *args)
        assert result.exit_code == 0, result.output
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def jobs(self) -> dict[str, dict[str, Any]]:
        """Every training job object in the namespace, managed or not, by name."""
        return {o["metadata"]["name"]: o for o in list_jobs(self.cluster, namespace=self.namespace)}

    def managed(self) -> dict[str, dict[str, Any]]:
        return {o["metadata"]["name"]: o for o in list_jobs(self.cluster, SELECTOR, self.namespace)}

    def settle(self, name: str, outcome: str, reason: str = "", message: str = "") -> None:
        kind = self.jobs()[name]["kind"]
        patch_status(self.cluster, self.namespace, JobKind(kind), name, conditions(kind, outcome, reason, message))

    def mlflow_runs(self, view: str = "active") -> list[Any]:
        """The MLflow runs of this project's experiments that carry a run key (sweep parents excluded)."""
        from mlflow import MlflowClient
        from mlflow.entities import ViewType

        mlflow = MlflowClient(self.mlflow_uri)
        ids = [e.experiment_id for e in mlflow.search_experiments(filter_string=f"name LIKE '{self.prefix}/%'")]
        if not ids:
            return []
        kind = ViewType.ACTIVE_ONLY if view == "active" else ViewType.ALL
        runs = mlflow.search_runs(ids, run_view_type=kind, max_results=5000)
        return [r for r in runs if "expctl.run_key" in r.data.tags]

    def runs_per_attempt(self, view: str = "active") -> Counter[tuple[str, str]]:
        return Counter((r.data.tags["expctl.run_key"], r.data.tags["expctl.attempt"]) for r in self.mlflow_runs(view))

    def run_of(self, job: str) -> Any:
        from mlflow import MlflowClient

        run_id = self.jobs()[job]["metadata"]["annotations"]["expctl.io/mlflow-run-id"]
        return MlflowClient(self.mlflow_uri).get_run(run_id)

    def subprocess_apply(self, *args: str) -> subprocess.Popen[str]:
        """``python -m expctl apply -y`` as its own process: $KUBECONFIG and $MLFLOW_TRACKING_URI, like CI."""
        env = {**os.environ, "KUBECONFIG": str(self.cluster.kubeconfig), "MLFLOW_TRACKING_URI": self.mlflow_uri,
               "CI": "1"}
        return subprocess.Popen(
            [sys.executable, "-m", "expctl", "-C", str(self.repo.path), "apply", "-y", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
        )


def list_jobs(cluster: Cluster, selector: str = "", namespace: str | None = None) -> list[dict[str, Any]]:
    """A LIST across all namespaces of every training kind (filtered to one namespace when given)."""
    custom = client.CustomObjectsApi(cluster.api_client())
    items: list[dict[str, Any]] = []
    for kind in JobKind:
        if kind is JobKind.LOCAL:
            continue
        info = KINDS[kind]
        page: Any = custom.list_cluster_custom_object(
            info.group, info.version, info.plural, label_selector=selector
        )
        items += [o for o in page["items"] if namespace in (None, o["metadata"]["namespace"])]
    return items


def make_project(tmp_path: Path, cluster: Cluster, namespace: str, mlflow_uri: str,
                 experiments: dict[str, str], *, examples: bool = False, kube: str = "") -> Project:
    """This project's conf/ and training/ in a fresh git repo, experiments under ``experiments/<prefix>/``."""
    repo = GitRepo(tmp_path / "repo")
    repo.copy_examples()
    prefix = f"lc{uuid.uuid4().hex[:6]}"
    own = repo.path / "experiments" / prefix
    own.mkdir(parents=True)
    for path in sorted((repo.path / "experiments").glob("*.yaml")):
        if examples:
            shutil.move(str(path), own / path.name)
        else:
            path.unlink()
    repo.write("expctl.yaml", (
        "backend: kubernetes\ncode_paths: [training]\nkubernetes:\n"
        f"  namespace: {namespace}\n  repo_url: {REPO_URL}\n  image: python:3.11-slim\n"
        + (kube or "  qps: 50\n  burst: 50\n")
    ))
    project = Project(repo, KubeWorkspace(repo.path, cluster, mlflow_uri), cluster, namespace, prefix, mlflow_uri)
    for name, text in experiments.items():
        project.write_exp(name, text)
    repo.commit("experiments")
    return project

