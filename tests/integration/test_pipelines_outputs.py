"""A dataset produced by another experiment's run, end to end: real git commits, real ``expctl`` processes, the
local backend and a real ``mlflow server``. The importer's job writes files into ``EXPCTL_OUTPUT_DIR``; the apply
that sees it succeed keeps them and their manifest on its MLflow run; the train experiment waits for them, gets
them as ``EXPCTL_INPUT_RAW_URI``, records them as an MLflow dataset input, and is replaced (``upstream-changed``)
when — and only when — the files change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import e2e, jobs
from tests.support.gitrepo import minimal_repo
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

RETRIES = "  retries: {max_attempts: 1}\n"


def importer(rows: int, seed: int = 0) -> str:
    return (f"defaults:\n  - config\n  - _self_\nseed: {seed}\nwrite: {{rows: {rows}}}\nexpctl:\n  kind: local\n"
            f"  command: [python, code/write_outputs.py]\n{RETRIES}  outputs: {{dataset: out-raw}}\n")


TRAIN = ("defaults:\n  - config\n  - _self_\nexpctl:\n  kind: local\n  command: [python, code/train.py]\n"
         f"{RETRIES}  inputs:\n    raw: {{dataset: out-raw}}\n")





def produced(uri: str, run_id: str, tmp: Path) -> dict[str, str]:
    """The files kept on the producer's run, by path (downloaded as a consumer's job would)."""
    from mlflow import MlflowClient

    local = Path(MlflowClient(uri).download_artifacts(run_id, "expctl/outputs/out-raw", str(tmp)))
    return {p.relative_to(local).as_posix(): p.read_text() for p in sorted(local.rglob("*")) if p.is_file()}


def test_an_importer_writes_a_dataset_and_train_consumes_it_replanned_only_when_the_files_change(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    from mlflow import MlflowClient

    uri = mlflow_server.uri
    repo = minimal_repo(tmp_path / "repo", {
        "experiments/out-import.yaml": importer(rows=3), "experiments/out-train.yaml": TRAIN,
        "code/write_outputs.py": jobs.source("write_outputs"), "code/train.py": "print('train')\n",
        ".gitignore": ".expctl/\n"})
    try:
        first = e2e.plan_lines(repo.path, uri)
        (wait,) = first["out-train"]
        assert wait[:2] == ("noop", "waiting") and wait[2].startswith("needs dataset out-raw from out-import-"), wait
        assert wait[2].endswith("(not started)")
        assert "Finished: 2 succeeded." in e2e.apply_wait(repo.path, uri)
        (imp,), (train,) = e2e.runs_by_start(uri, "out-import"), e2e.runs_by_start(uri, "out-train")
        digest = imp.data.tags["expctl.output.digest"]
        assert imp.data.tags["expctl.output.dataset"] == "out-raw" and len(digest) == 20
        assert produced(uri, imp.info.run_id, tmp_path / "dl1") == {
            "readme.txt": "3 rows for out-raw\n", "rows/part-0.txt": "row 0\nrow 1\nrow 2\n"}
        manifest = json.loads(Path(MlflowClient(uri).download_artifacts(
            imp.info.run_id, "expctl/outputs/out-raw.json", str(tmp_path / "m"))).read_text())
        assert manifest["digest"] == digest and [i["path"] for i in manifest["items"]] == [
            "readme.txt", "rows/part-0.txt"]
        assert all(len(i["sha256"]) == 64 and i["size"] > 0 for i in manifest["items"])

        want = f"runs:/{imp.info.run_id}/expctl/outputs/out-raw"
        env = e2e.run_states(repo.path)[train.data.tags["expctl.job"]]["env"]
        assert env["EXPCTL_INPUT_RAW_URI"] == want
        assert e2e.run_states(repo.path)[imp.data.tags["expctl.job"]]["env"]["EXPCTL_OUTPUT_DATASET"] == "out-raw"
        tags = train.data.tags
        assert (tags["expctl.input.raw.uri"], tags["expctl.input.raw.dataset"], tags["expctl.input.raw.digest"],
                tags["expctl.input.raw.producer"], tags["expctl.input.raw.run_id"]) == (
            want, "out-raw", digest, "out-import", imp.info.run_id)
        (dataset_input,) = train.inputs.dataset_inputs
        assert (dataset_input.dataset.name, dataset_input.dataset.digest) == ("out-raw", digest)
        assert train.info.start_time >= imp.info.end_time

        # lineage: the train model → its run → the produced dataset → the importer's run, commit and config
        client = MlflowClient(uri, registry_uri=uri)
        client.create_registered_model("out-model")
        version = client.create_model_version("out-model", f"runs:/{train.info.run_id}/model", run_id=train.info.run_id)
        shown = e2e.expctl(repo.path, "lineage", f"out-model/{version.version}", "-o", "json", tracking_uri=uri)
        (raw,) = json.loads(shown.stdout)["inputs"]
        assert (raw["dataset"], raw["digest"], raw["run_id"], raw["commit"], raw["config"]) == (
            "out-raw", digest, imp.info.run_id, imp.data.tags["expctl.commit"], "experiments/out-import.yaml")
        human = e2e.expctl(repo.path, "lineage", f"out-model/{version.version}", tracking_uri=uri).stdout
        assert f"input     raw: dataset out-raw digest {digest}  {want}" in human, human

        # the importer's run changes but it writes the same files: nothing downstream moves
        repo.write("experiments/out-import.yaml", importer(rows=3, seed=7))
        repo.commit("importer: another seed, the same rows")
        again = e2e.plan_lines(repo.path, uri)
        assert again["out-import"][0][:2] == ("replace", "spec-changed")
        e2e.apply_wait(repo.path, uri)
        new_imp = e2e.runs_by_start(uri, "out-import")[-1]
        assert new_imp.info.run_id != imp.info.run_id and new_imp.data.tags["expctl.output.digest"] == digest
        assert [a for a, _, _ in e2e.plan_lines(repo.path, uri)["out-train"]] == ["noop"]
        assert len(e2e.runs_by_start(uri, "out-train")) == 1

        # the files change: train waits for the new manifest, then is replaced naming old → new
        repo.write("experiments/out-import.yaml", importer(rows=5, seed=7))
        repo.commit("importer: more rows")
        e2e.apply_wait(repo.path, uri)
        newest = e2e.runs_by_start(uri, "out-import")[-1]
        assert newest.data.tags["expctl.output.digest"] != digest
        new_train = e2e.runs_by_start(uri, "out-train")[-1]
        assert new_train.info.run_id != train.info.run_id
        assert new_train.data.tags["expctl.input.raw.uri"] == f"runs:/{newest.info.run_id}/expctl/outputs/out-raw"
        history = json.loads(e2e.expctl(repo.path, "history", "--output", "json", tracking_uri=uri).stdout)
        assert any(e["experiment"] == "out-train" and e["action"] == "replace" and e["reason"] == "upstream-changed"
                   for e in history), history
        old, new = (json.loads(r.data.tags["expctl.inputs"])["raw"] for r in (train, new_train))
        assert (old, new) == (f"out-raw@{digest[:12]}", f"out-raw@{newest.data.tags['expctl.output.digest'][:12]}")
    finally:
        e2e.stop_jobs(repo.path)


@pytest.mark.parametrize(("files", "where", "says"), [
    ({"experiments/lone.yaml": TRAIN}, "experiments/lone.yaml: expctl.inputs.raw.dataset",
     "no experiment produces dataset 'out-raw'"),
    ({"experiments/imp-a.yaml": importer(1), "experiments/imp-b.yaml": importer(2)},
     "experiments/imp-b.yaml: expctl.outputs.dataset", "dataset 'out-raw' is produced by 'imp-a' too"),
    ({"experiments/odd.yaml": importer(1).replace("{dataset: out-raw}", "{dataset: out-raw, path: x}")},
     "experiments/odd.yaml: expctl.outputs.path", "unknown key"),
])
def test_bad_outputs_fail_validate_in_one_line(tmp_path: Path, files: dict[str, str], where: str, says: str) -> None:
    repo = minimal_repo(tmp_path / "repo", {**files, "code/train.py": "print('train')\n"})
    done = e2e.expctl(repo.path, "validate")
    assert done.returncode == 1
    (line,) = [ln for ln in done.stderr.splitlines() if where in ln]
    assert says in line, done.stderr
