"""Why a run is replaced: "data-changed" when its datasets' digest moved, "spec-changed" otherwise (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from expctl.core.desired import spec_hash
from expctl.core.model import Action, DatasetRef, ObservedRun, Phase
from expctl.core.plan_rules import make_plan
from tests.support.factories import make_job, make_spec

OLD = DatasetRef("shapes", "d1", "")
NEW = DatasetRef("shapes", "d2", "")
SPEC = replace(make_spec("exp"), datasets=(NEW,), data_digest="all-d2")


def seen(spec_hash: str, data_digest: str | None, phase: Phase = Phase.SUCCEEDED) -> ObservedRun:
    return ObservedRun(run_key=SPEC.run_key, name=SPEC.name, experiment="exp", attempt=1, spec_hash=spec_hash,
                       phase=phase, backend="fake", data_digest=data_digest)


@pytest.mark.parametrize(("observed", "action", "reason"), [
    (seen(SPEC.spec_hash, "all-d2"), Action.NOOP, "unchanged"),
    (seen("old", "all-d1"), Action.REPLACE, "data-changed"),
    (seen("old", "all-d2"), Action.REPLACE, "spec-changed"),
    (seen("old", None), Action.REPLACE, "spec-changed"),  # launched before expctl recorded data digests
    (seen("old", "all-d1", Phase.RUNNING), Action.BLOCKED, "data-changed"),
], ids=["same data", "data moved", "only the spec moved", "unknown data digest", "running: blocked"])
def test_reason(observed: ObservedRun, action: Action, reason: str) -> None:
    (change,) = make_plan([SPEC], [observed], commit="c", backend="fake", now=0.0).changes
    assert (change.action, change.reason) == (action, reason)
    if reason == "data-changed" and action is Action.REPLACE:
        assert change.detail == "shapes: all-d1 → all-d2"


def test_the_data_digest_stands_in_for_the_declaration_in_the_spec_hash() -> None:
    job = make_job()
    plain = spec_hash({"lr": 1}, job, "code")
    assert plain == spec_hash({"lr": 1}, job, "code", "")  # runs without datasets keep their hashes
    with_data = spec_hash({"lr": 1, "data": {"batches": ["b1"]}}, job, "code", "d1")
    rewritten = spec_hash({"lr": 1, "data": {"batches": ["b1"], "note": "reformatted"}}, job, "code", "d1")
    assert with_data == rewritten != spec_hash({"lr": 1, "data": {"batches": ["b1"]}}, job, "code", "d2")
