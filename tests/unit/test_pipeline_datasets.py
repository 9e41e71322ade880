"""Pipelines, pure: a dataset one experiment's run produced (``outputs:``) as another's input — the checks of the
declarations against each other, waiting, blocking, and the manifest digest as the consumer's identity."""

from __future__ import annotations

from dataclasses import replace

import pytest

from expctl.core import pipeline
from expctl.core.inputs import DATASET, InputDecl
from expctl.core.model import Action, ObservedRun, Phase, Reason, RetryPolicy, RunSpec
from expctl.core.plan_rules import make_plan
from tests.support.factories import make_job, make_spec

RAW = InputDecl("raw", dataset="blobs-raw")
NO_RETRY = RetryPolicy(max_attempts=1, on=())
FILES = {"importer": "experiments/importer.yaml", "train": "experiments/train.yaml",
         "other": "experiments/other.yaml"}


def spec(experiment: str, *inputs: InputDecl, outputs: str | None = None) -> RunSpec:
    return make_spec(experiment, job=make_job(inputs=inputs, outputs=outputs, retries=NO_RETRY))


def ran(s: RunSpec, phase: Phase, digest: str | None = None, run_id: str = "imp-run") -> ObservedRun:
    return ObservedRun(run_key=s.run_key, name=s.name, experiment=s.experiment, attempt=1, spec_hash=s.spec_hash,
                       phase=phase, backend="fake", mlflow_run_id=run_id, message="exit 1" if phase is Phase.FAILED
                       else "", finished_at=1.0, output_digest=digest)


@pytest.mark.parametrize(("inputs", "outputs", "points", "file", "key", "says"), [
    ({"train": (RAW,)}, {}, {}, "experiments/train.yaml", "expctl.inputs.raw.dataset",
     "no experiment produces dataset 'blobs-raw'"),
    ({"train": (RAW,)}, {"importer": "blobs-raw", "other": "blobs-raw"}, {}, "experiments/other.yaml",
     "expctl.outputs.dataset", "dataset 'blobs-raw' is produced by 'importer' too"),
    ({}, {"importer": "blobs-raw", "other": "blobs-raw"}, {}, "experiments/other.yaml",
     "expctl.outputs.dataset", "a dataset has one producer"),
    ({"train": (RAW,)}, {"importer": "blobs-raw"}, {"importer": 3}, "experiments/train.yaml",
     "expctl.inputs.raw.dataset", "a sweep of 3 runs"),
    ({"train": (RAW,), "importer": (InputDecl("back", experiment="train"),)}, {"importer": "blobs-raw"}, {},
     "experiments/importer.yaml", "expctl.inputs.back.experiment", "a cycle of inputs: importer → train → importer"),
])
def test_dataset_graph_errors_name_file_and_key(inputs: dict[str, tuple[InputDecl, ...]], outputs: dict[str, str],
                                                points: dict[str, int], file: str, key: str, says: str) -> None:
    errors = pipeline.graph_errors(inputs, FILES, points, outputs=outputs)
    assert len(errors) == 1, errors
    assert (errors[0].file, errors[0].key) == (file, key) and says in str(errors[0]) and "\n" not in str(errors[0])


def test_a_dataset_from_another_teams_experiment_needs_that_team_to_share() -> None:
    teams = {"importer": "data", "train": "vision"}
    (error,) = pipeline.graph_errors({"train": (RAW,)}, FILES, {}, teams, (), {"importer": "blobs-raw"})
    assert error.key == "expctl.inputs.raw.dataset" and "team data" in str(error)
    assert pipeline.graph_errors({"train": (RAW,)}, FILES, {}, teams, {"data"}, {"importer": "blobs-raw"}) == []


def test_the_producer_is_an_edge_ordering_it_first() -> None:
    edges = pipeline.edges_of({"train": (RAW,)}, {"importer": "blobs-raw"})
    assert edges == {"train": ["importer"]}
    assert pipeline.order(["train", "importer"], edges) == ["importer", "train"]


def test_a_dataset_input_waits_for_the_recorded_manifest_and_blocks_when_its_producer_failed() -> None:
    up, down = spec("importer", outputs="blobs-raw"), spec("train", RAW)

    def line(*observed: ObservedRun) -> tuple[Action, Reason, str]:
        changes = make_plan([up, down], list(observed), commit="c", backend="fake", now=0.0).changes
        c = next(c for c in changes if c.experiment == "train")
        return c.action, c.reason, c.detail

    assert line() == (Action.NOOP, Reason.WAITING, f"needs dataset blobs-raw from {up.name} (not started)")
    assert line(ran(up, Phase.RUNNING)) == (Action.NOOP, Reason.WAITING,
                                            f"needs dataset blobs-raw from {up.name} (running)")
    assert line(ran(up, Phase.SUCCEEDED)) == (Action.NOOP, Reason.WAITING,
                                              f"needs dataset blobs-raw from {up.name} (not recorded yet)")
    assert line(ran(up, Phase.FAILED)) == (Action.BLOCKED, Reason.UPSTREAM_FAILED, f"upstream {up.name} failed: exit 1")
    assert line(ran(up, Phase.SUCCEEDED, digest="d1" * 10))[:2] == (Action.CREATE, Reason.MISSING)
    (_, resolved), held = pipeline.resolve([up, down], [ran(up, Phase.SUCCEEDED, digest="d1" * 10)], {})
    (got,) = resolved.inputs
    assert not held
    assert (got.kind, got.source, got.producer, got.digest) == (DATASET, "blobs-raw", "importer", "d1" * 10)
    assert got.uri == "runs:/imp-run/expctl/outputs/blobs-raw" and got.label == "blobs-raw@d1d1d1d1d1d1"


def test_the_digest_is_the_identity_a_new_manifest_replaces_the_consumer_the_same_one_does_not() -> None:
    up, down = spec("importer", outputs="blobs-raw"), spec("train", RAW)
    first = pipeline.resolve([up, down], [ran(up, Phase.SUCCEEDED, digest="a" * 20)], {})[0][1]
    rerun = pipeline.resolve([up, down], [ran(up, Phase.SUCCEEDED, digest="a" * 20, run_id="other")], {})[0][1]
    assert rerun.spec_hash == first.spec_hash  # another run writing the same files: nothing moves downstream
    launched = replace(ran(first, Phase.SUCCEEDED, run_id="train-run"), inputs=pipeline.labels(first))
    moved = make_plan([up, down], [ran(up, Phase.SUCCEEDED, digest="b" * 20), launched], commit="c",
                      backend="fake", now=0.0)
    (change,) = [c for c in moved.changes if c.experiment == "train"]
    assert (change.action, change.reason, change.detail) == (
        Action.REPLACE, Reason.UPSTREAM_CHANGED, "raw: blobs-raw@aaaaaaaaaaaa → blobs-raw@bbbbbbbbbbbb")


def test_declaring_outputs_changes_only_that_experiments_spec_hash() -> None:
    assert spec("importer").spec_hash == make_spec("importer", job=make_job(retries=NO_RETRY)).spec_hash
    assert spec("importer", outputs="blobs-raw").spec_hash != spec("importer").spec_hash
