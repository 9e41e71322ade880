"""Datasets in every run's identity, end to end: real files, real git, real ``expctl`` processes, real MLflow.

Adding a batch (a committed change of the dataset declaration) replans exactly the runs that use the dataset,
as ``replace`` with reason data-changed; an unchanged dataset replans nothing; the same files under two
different absolute roots give the same manifest digest; broken declarations are one-line errors and nothing
is written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from expctl.config.desired_state import load_desired
from expctl.config.source import snapshot
from tests.support import e2e
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.mlflow_server import MlflowServer

pytestmark = pytest.mark.integration

QUICK = "expctl:\n  kind: local\n  command: [python, -c, 'pass']\n  retries: {max_attempts: 1}\n"
SHAPES = ("name: shapes\nformat: folders\nsplit: {seed: 1, train: 0.6, validation: 0.2, test: 0.2}\n"
          "batches:\n  - {name: b1, source: shapes/b1}\n")
TABLES = "name: tables\nformat: csv\nbatches:\n  - {name: t1, source: tables/t1.csv}\n"


def experiment(data: str | None, sweep: str = "") -> str:
    defaults = "defaults:\n  - config\n" + (f"  - data: {data}\n" if data else "") + "  - _self_\n"
    if sweep:
        sweep = f"hydra:\n  sweeper:\n    params:\n      optimizer.lr: {sweep}\n"
    return defaults + sweep + QUICK


def write_data(root: Path) -> None:
    for batch, labels in (("b1", ("cat", "dog")), ("b2", ("cat", "bird"))):
        for label in labels:
            for i in range(3):
                target = root / "shapes" / batch / label / f"{i}.txt"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(f"{batch}-{label}-{i}")
    (root / "tables").mkdir(parents=True, exist_ok=True)
    (root / "tables" / "t1.csv").write_text("x,label\n1,a\n2,b\n")


def data_repo(path: Path, prefix: str) -> GitRepo:
    repo = minimal_repo(path, {
        "conf/data/shapes.yaml": SHAPES,
        "conf/data/tables.yaml": TABLES,
        f"experiments/{prefix}-one.yaml": experiment("shapes"),
        f"experiments/{prefix}-sweep.yaml": experiment("shapes", sweep="0.1,0.2"),
        f"experiments/{prefix}-tables.yaml": experiment("tables"),
        f"experiments/{prefix}-plain.yaml": experiment(None),
        ".gitignore": ".expctl/\n/data/\n",
        "expctl.yaml": "code_paths: [code]\ndata_root: data\nlocal:\n  parallelism: 4\n",
    })
    write_data(path / "data")
    return repo


def plan(repo: Path, uri: str) -> list[tuple[str, str, str]]:
    data = e2e.plan_json(repo, tracking_uri=uri)
    return sorted((c["experiment"], c["action"], c["reason"]) for c in data["changes"])


def test_adding_a_batch_replans_exactly_the_runs_that_use_the_dataset(tmp_path: Path,
                                                                      mlflow_server: MlflowServer) -> None:
    prefix = "dataflow"
    repo = data_repo(tmp_path / "repo", prefix)
    uri = mlflow_server.uri
    try:
        applied = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "120", tracking_uri=uri)
        assert applied.returncode == 0, applied.stderr
        assert "Finished: 5 succeeded." in applied.stdout
        unchanged = [(f"{prefix}-{e}", "noop", "unchanged") for e in ("one", "plain", "sweep", "sweep", "tables")]
        assert plan(repo.path, uri) == unchanged  # an unchanged dataset replans nothing

        repo.write("conf/data/shapes.yaml", SHAPES + "  - {name: b2, source: shapes/b2}\n")
        repo.commit("shapes: add batch b2")
        assert plan(repo.path, uri) == [
            (f"{prefix}-one", "replace", "data-changed"), (f"{prefix}-plain", "noop", "unchanged"),
            (f"{prefix}-sweep", "replace", "data-changed"), (f"{prefix}-sweep", "replace", "data-changed"),
            (f"{prefix}-tables", "noop", "unchanged")]

        # the tracked lineage: the run records its dataset digest, a dataset input and the manifest artifact
        runs = e2e.mlflow_runs(uri, [f"{prefix}-one"])
        (run,) = runs
        ref = json.loads(run.data.tags["expctl.datasets"])
        assert list(ref) == ["shapes"]
        assert [d.dataset.name for d in run.inputs.dataset_inputs] == ["shapes"]
        assert run.inputs.dataset_inputs[0].dataset.digest == ref["shapes"][:36]
        from mlflow import MlflowClient

        local = Path(MlflowClient(uri).download_artifacts(run.info.run_id, "expctl/datasets/shapes.json",
                                                          str(tmp_path)))
        manifest = json.loads(local.read_text())
        assert manifest["digest"] == ref["shapes"] and len(manifest["items"]) == 6
    finally:
        e2e.stop_jobs(repo.path)


def test_the_digest_is_the_same_on_two_machines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two checkouts at different absolute paths, their data under two different roots (EXPCTL_DATA_ROOT)."""
    first = data_repo(tmp_path / "machine-a" / "repo", "m")
    second = tmp_path / "machine-b" / "somewhere" / "clone"
    subprocess.run(["git", "clone", "-q", str(first.path), str(second)], check=True)
    shutil.copytree(first.path / "data", tmp_path / "machine-b" / "datasets")
    shutil.rmtree(first.path / "data")
    shutil.copytree(tmp_path / "machine-b" / "datasets", tmp_path / "machine-a" / "mounted")

    def hashes(repo: Path, root: Path) -> dict[str, tuple[str, str]]:
        monkeypatch.setenv("EXPCTL_DATA_ROOT", str(root))
        runs = load_desired(snapshot(repo)).runs
        return {r.name: (r.spec_hash, r.data_digest) for r in runs}

    here = hashes(first.path, tmp_path / "machine-a" / "mounted")
    there = hashes(second, tmp_path / "machine-b" / "datasets")
    assert here == there
    assert sum(1 for _, digest in here.values() if digest) == 4


BROKEN = [
    ("missing path", {"conf/data/shapes.yaml": SHAPES.replace("shapes/b1", "shapes/nope")},
     "experiments/e.yaml: data: dataset 'shapes': batches[0] (b1): ", "no such file or directory"),
    ("empty result after filters",
     {"conf/data/shapes.yaml": SHAPES + "filters:\n  - {field: label, in: [unicorn]}\n"},
     "experiments/e.yaml: data: dataset 'shapes': no items left after the filters", ""),
    ("unknown combination rule", {"conf/data/shapes.yaml": SHAPES + "combine: zip\n"},
     "experiments/e.yaml: data.combine: input should be 'union' (got 'zip')", ""),
    ("unknown key", {"conf/data/shapes.yaml": SHAPES + "dedup: true\n"},
     "experiments/e.yaml: data.dedup: unknown key (did you mean 'dedupe'?)", ""),
    ("unreadable file", {"conf/data/shapes.yaml": "name: shapes\nformat: jsonl\nbatches:\n"
                                                  "  - {name: r, source: records}\n"},
     "experiments/e.yaml: data: dataset 'shapes': batches[0] (r): bad.jsonl: cannot read: line 2 is not JSON", ""),
    ("empty held-out split", {
        "conf/data/shapes.yaml": SHAPES.replace("validation: 0.2, test: 0.2", "validation: 0.4, test: 0"),
        "experiments/e.yaml": experiment("shapes") + "  validation: {metric: accuracy, threshold: 0.5, split: test}\n"},
     "experiments/e.yaml: expctl.validation.split: the held-out split 'test' of dataset 'shapes' has no items", ""),
    ("promotion without a registered model", {
        "conf/data/shapes.yaml": SHAPES,
        "experiments/e.yaml": experiment("shapes") + "  validation: {metric: a, threshold: 0.5, split: test, "
                                                     "promote: {alias: champion}}\n"},
     "experiments/e.yaml: expctl.validation: value error, promote needs register_as", ""),
]


@pytest.mark.parametrize(("files", "expected", "also"), [c[1:] for c in BROKEN], ids=[c[0] for c in BROKEN])
def test_broken_dataset_declarations(tmp_path: Path, files: dict[str, str], expected: str, also: str) -> None:
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": experiment("shapes"), "experiments/ok.yaml":
                                            experiment(None), ".gitignore": ".expctl/\n", **files})
    write_data(repo.path)
    (repo.path / "records").mkdir()
    (repo.path / "records" / "bad.jsonl").write_text('{"label": "a"}\n{oops\n')
    before = sorted(str(p.relative_to(repo.path)) for p in repo.path.rglob("*") if ".git" not in p.parts)
    for command in (["validate"], ["apply", "-y"]):
        proc = subprocess.run([sys.executable, "-m", "expctl", *command], cwd=repo.path, capture_output=True,
                              text=True, env=e2e.clean_env(), timeout=120, check=False)
        assert proc.returncode == 1, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, lines
        assert lines[0].startswith("error: " + expected) and also in lines[0], lines[0]
        assert proc.stdout == ""
    after = sorted(str(p.relative_to(repo.path)) for p in repo.path.rglob("*") if ".git" not in p.parts)
    assert after == before  # nothing written: no .expctl/, no manifest, no hash cache, no run
    assert not os.path.exists(repo.path / ".expctl")



def test_a_dataset_served_over_http_is_read_and_its_credentials_are_never_recorded(tmp_path: Path) -> None:
    """An fsspec URL source (here http, from a loopback server): each file's URL is built from the listing
    (was ``http://http://…``), its content hashed at every plan (a web server gives no version to cache by), and
    the URL's user information reaches no manifest, cache or output."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    served = tmp_path / "served"
    write_data(served)
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            return

    handler = functools.partial(Quiet, directory=str(served))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://reader:hunter2@127.0.0.1:{server.server_address[1]}"
        shapes = (f"name: shapes\nformat: folders\nbatches:\n  - {{name: b1, source: '{url}/shapes/b1/'}}\n"
                  f"  - {{name: b2, source: '{url}/shapes/b2/*/0.txt'}}\n")
        repo = minimal_repo(tmp_path / "repo", {"conf/data/shapes.yaml": shapes,
                                                "experiments/web.yaml": experiment("shapes"),
                                                ".gitignore": ".expctl/\n"})
        first = e2e.plan_json(repo.path)
        (spec_hash,) = {c["spec_hash"] for c in first["changes"]}  # the dataset's digest is part of it
        (served / "shapes" / "b2" / "cat" / "0.txt").write_text("changed on the server")
        second = e2e.expctl(repo.path, "plan", "--output", "json")
        assert second.returncode == 0, second.stderr
        assert {c["spec_hash"] for c in json.loads(second.stdout)["changes"]} != {spec_hash}
        written = [p for p in (repo.path / ".expctl").rglob("*") if p.is_file()]
        assert any(p.suffix == ".json" for p in written)  # the manifests
        assert not [p for p in written if b"hunter2" in p.read_bytes()]
        assert "hunter2" not in json.dumps(first) + second.stdout + second.stderr
    finally:
        server.shutdown()
        server.server_close()
