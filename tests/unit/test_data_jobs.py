"""What a job gets of its datasets (env on both backends, the data-digest annotation) and what it reads."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from expctl.backends.kubernetes.manifests import KubeSettings, render_manifest
from expctl.core.errors import ExpctlError
from expctl.core.jobenv import dataset_env
from expctl.core.model import DatasetRef, JobKind
from expctl.data.declare import Batch, Dataset, Split
from expctl.data.materialize import Materializer
from expctl.job import reader as job_reader
from expctl.job.reader import ManifestMismatch, label_names, load_manifest_file, read_split
from tests.support.factories import make_job, make_launch, make_spec

REF = DatasetRef("points", "d1g3st", "/somewhere/.expctl/manifests/d1g3st.json", (("b1", "b", 3),))
SPEC = replace(make_spec("exp", job=make_job(JobKind.PYTORCH, 1)), datasets=(REF,), data_digest="d1g3st")


def test_the_kubernetes_job_reads_its_manifest_from_mlflow_and_is_annotated_with_the_data_digest() -> None:
    manifest = render_manifest(make_launch(SPEC, run_id="r" * 32), KubeSettings())
    container = manifest["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["EXPCTL_DATASET_MANIFEST_URI"] == f"runs:/{'r' * 32}/expctl/datasets/points.json"
    assert (env["EXPCTL_DATASET_NAME"], env["EXPCTL_DATASET_DIGEST"], env["EXPCTL_DATA_DIGEST"]) == (
        "points", "d1g3st", "d1g3st")
    assert "EXPCTL_DATASET_MANIFEST" not in env  # this machine's path means nothing in a pod
    assert manifest["metadata"]["annotations"]["expctl.io/data-digest"] == "d1g3st"


def test_the_local_job_also_gets_this_machines_copy() -> None:
    env = dataset_env(make_launch(SPEC), local=True)
    assert env["EXPCTL_DATASET_MANIFEST"] == REF.manifest_file
    assert json.loads(env["EXPCTL_DATASETS"])[0]["manifest"] == REF.manifest_file


def test_a_run_without_datasets_gets_nothing() -> None:
    plain = make_spec("exp")
    assert dataset_env(make_launch(plain), local=True) == {}
    manifest = render_manifest(make_launch(plain), KubeSettings())
    assert "expctl.io/data-digest" not in manifest["metadata"]["annotations"]


@pytest.fixture
def manifest(tmp_path: Path) -> dict[str, object]:
    for label, rows in (("a", ("1, 2", "3 4")), ("b", ("5,6", "7,8"))):
        for i, text in enumerate(rows):
            (tmp_path / "b1" / label).mkdir(parents=True, exist_ok=True)
            (tmp_path / "b1" / label / f"{i}.txt").write_text(text + "\n")
    decl = Dataset("points", "folders", (Batch("b1", "b1", weight=2.0),), split=Split(0, 1.0, 0.0, 0.0))
    built, _ = Materializer(str(tmp_path), None).materialize(decl)
    return json.loads(built.text())  # type: ignore[no-any-return]


def test_the_reader_returns_exactly_the_items_of_a_split(manifest: dict[str, object]) -> None:
    train = read_split(manifest, "train")
    assert train.features == [[1.0, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]
    assert (train.labels, train.weights) == (["a", "a", "b", "b"], [2.0] * 4)
    assert read_split(manifest, "test").labels == [] and label_names(manifest) == ["a", "b"]


def test_the_reader_refuses_data_that_changed_after_the_plan(manifest: dict[str, object], tmp_path: Path) -> None:
    (tmp_path / "b1" / "b" / "1.txt").write_text("7,9\n")
    with pytest.raises(ManifestMismatch, match=r"b1/b/1\.txt changed since the manifest was made"):
        read_split(manifest, "train")


def test_records_use_x_or_every_numeric_field_but_the_label(tmp_path: Path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.csv").write_text("w,label,v,note\n1,x,2,hi\n")
    (tmp_path / "t" / "b.jsonl").write_text('{"x": [0.5, 1.5], "label": "y", "w": 9}\n')
    csv_m, _ = Materializer(str(tmp_path), None).materialize(Dataset("c", "csv", (Batch("t", "t"),),
                                                                     split=Split(0, 1.0, 0.0, 0.0)))
    json_m, _ = Materializer(str(tmp_path), None).materialize(Dataset("j", "jsonl", (Batch("t", "t"),),
                                                                      split=Split(0, 1.0, 0.0, 0.0)))
    assert read_split(json.loads(csv_m.text()), "train").features == [[2.0, 1.0]]  # v, w: sorted field names
    assert read_split(json.loads(json_m.text()), "train").features == [[0.5, 1.5]]


# -- bounded reads in the job: special files, sizes, lines -------------------------------------------------------

def test_a_manifest_that_is_a_fifo_or_too_big_is_one_line_not_a_hang(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    fifo = tmp_path / "manifest.json"
    os.mkfifo(fifo)
    with pytest.raises(ExpctlError, match=r"manifest\.json: not a regular file \(a FIFO, socket or device\)"):
        load_manifest_file(fifo)  # no writer: an open that blocked would hang here
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"items": ["x" * 100]}))
    monkeypatch.setattr(job_reader, "MANIFEST_LIMIT", 64)
    with pytest.raises(ExpctlError, match=r"big\.json: \d+ bytes: more than the 64 bytes a dataset manifest"):
        load_manifest_file(big)
    (tmp_path / "list.json").write_text("[]")
    with pytest.raises(ExpctlError, match=r"list\.json: not a JSON object"):
        load_manifest_file(tmp_path / "list.json")


def _jsonl_manifest(tmp_path: Path, lines: list[str]) -> dict[str, object]:
    (tmp_path / "t").mkdir(exist_ok=True)
    (tmp_path / "t" / "a.jsonl").write_text("".join(line + "\n" for line in lines))
    built, _ = Materializer(str(tmp_path), None).materialize(Dataset("j", "jsonl", (Batch("t", "t"),),
                                                                     split=Split(0, 1.0, 0.0, 0.0)))
    return json.loads(built.text())  # type: ignore[no-any-return]


def test_a_jsonl_line_longer_than_the_limit_is_refused_while_streaming(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = _jsonl_manifest(tmp_path, ['{"x": [1], "label": "a"}', '{"x": [2], "label": "b"}'])
    (tmp_path / "t" / "a.jsonl").write_text('{"x": [1], "label": "a"}\n{"x": [' + "2," * 200 + '2]}\n')
    monkeypatch.setattr(job_reader, "LINE_LIMIT", 100)
    with pytest.raises(ExpctlError, match=r"a\.jsonl: line 2 is longer than 100 bytes"):
        read_split(manifest, "train")


def test_rows_are_streamed_once_per_file_and_a_vanished_row_is_a_mismatch(tmp_path: Path) -> None:
    rows = [json.dumps({"x": [float(i)], "label": "ab"[i % 2]}) for i in range(5)]
    manifest = _jsonl_manifest(tmp_path, [rows[0], "", *rows[1:]])  # a blank line: rows numbered as the plan did
    assert read_split(manifest, "train").features == [[0.0], [1.0], [2.0], [3.0], [4.0]]
    (tmp_path / "t" / "a.jsonl").write_text("\n".join(rows[:3]) + "\n")
    with pytest.raises(ManifestMismatch, match=r"t/a\.jsonl row 3 is gone"):
        read_split(manifest, "train")


def test_a_data_file_that_became_a_fifo_or_an_oversized_example_is_refused(
        manifest: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(job_reader, "FILE_LIMIT", 4)
    with pytest.raises(ExpctlError, match=r"0\.txt: more than the 4 bytes an example file may have"):
        read_split(manifest, "train")
    monkeypatch.undo()
    target = tmp_path / "b1" / "a" / "0.txt"
    target.unlink()
    os.mkfifo(target)
    with pytest.raises(ExpctlError, match=r"0\.txt: not a regular file"):
        read_split(manifest, "train")
