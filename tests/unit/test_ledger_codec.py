"""The ledger of settled runs: its encoding round-trips, damage is reported (never a traceback, never silent),
and which runs settle."""

from __future__ import annotations

import base64
import functools
import json
import zlib

import pytest

from expctl.core.model import ObservedRun, Phase, ValidationGate
from expctl.core.project import owned
from expctl.tracking.mlflow import ledger_codec as codec
from expctl.tracking.mlflow.ledger import candidates, settleable
from expctl.tracking.mlflow.rest_search import Run, RunData, RunInfo


def run(run_id: str, status: str = "FINISHED", **tags: str) -> Run:
    base = {"expctl.managed": "true", "expctl.run_key": f"k-{run_id}", "expctl.spec_hash": "h",
            "expctl.attempt": "1", "expctl.job": f"job-{run_id}", "expctl.ready": "true",
            "mlflow.note.content": "a long description " * 20}
    return Run(RunInfo(run_id, "7", status, 1000, 2000, "active"),
               RunData({**base, **tags}, {"lr": "0.1"}, {"loss": 0.5, "nan": float("nan")}))


def test_a_batch_round_trips_without_the_description_and_params() -> None:
    runs = [run(f"r{i}") for i in range(300)]
    tags = codec.encode(3, runs)
    assert list(tags)[-1] == "expctl.ledger.000003"  # the header is written last
    assert all(len(v) <= 8000 for v in tags.values())
    decoded = codec.decode([tags])
    assert decoded.damaged == "" and decoded.next_seq == 4
    back = {r.info.run_id: r for r in decoded.runs}
    assert set(back) == {f"r{i}" for i in range(300)}
    one = back["r7"]
    assert one.info.status == "FINISHED" and one.info.start_time == 1000 and one.info.end_time == 2000
    assert one.info.experiment_id == "7"
    assert one.data.tags["expctl.run_key"] == "k-r7" and one.data.tags["expctl.managed"] == codec.SETTLED
    assert "mlflow.note.content" not in one.data.tags and one.data.params == {}
    assert one.data.metrics["loss"] == 0.5 and one.data.metrics["nan"] != one.data.metrics["nan"]


def test_large_batches_span_many_tags_and_a_later_copy_wins() -> None:
    many = [run(f"r{i}", **{"expctl.failure_message": f"{i} " + "x" * 900}) for i in range(2000)]
    first = codec.encode(0, many)
    assert len(first) > 3
    again = codec.encode(1, [run("r5", status="FAILED")])
    decoded = codec.decode([{**first, **again}])
    assert len(decoded.runs) == 2000 and decoded.next_seq == 2
    assert {r.info.run_id: r for r in decoded.runs}["r5"].info.status == "FAILED"


def test_an_interrupted_batch_without_its_header_is_ignored_and_numbered_past() -> None:
    tags = codec.encode(0, [run("a")])
    partial = {k: v for k, v in codec.encode(1, [run("b")]).items() if k != "expctl.ledger.000001"}
    decoded = codec.decode([{**tags, **partial}])
    assert [r.info.run_id for r in decoded.runs] == ["a"] and decoded.damaged == "" and decoded.next_seq == 2


def _payload(value: object) -> dict[str, str]:
    import hashlib

    text = base64.b64encode(zlib.compress(json.dumps(value).encode())).decode()
    return {"expctl.ledger.000000.0000": text,
            "expctl.ledger.000000": json.dumps({"parts": 1, "sha256": hashlib.sha256(text.encode()).hexdigest()})}


@pytest.mark.parametrize("tags", [
    {"expctl.ledger.000000": "not json"},
    {"expctl.ledger.000000": "[1, 2]"},
    {"expctl.ledger.000000": json.dumps({"parts": 2, "sha256": "0" * 64}), "expctl.ledger.000000.0000": "AAAA"},
    {"expctl.ledger.000000": json.dumps({"parts": 1, "sha256": "0" * 64}), "expctl.ledger.000000.0000": "AAAA"},
    _payload({"not": "a list"}),
    _payload([["id", "1", "FINISHED", 1, 2, {"a": 1}, {}]]),  # a tag that is not a string
    _payload([["id", "1", "FINISHED", "soon", 2, {}, {}]]),
    _payload([["id", "1"]]),
    _payload([[[[[[[[["deep"]]]]]]]]]),
    _payload("[" * 100_000),
])
def test_a_damaged_batch_is_named_not_raised(tags: dict[str, str]) -> None:
    good = codec.encode(1, [run("ok")])
    decoded = codec.decode([{**tags, **good}])
    assert decoded.damaged.startswith("batch 0: ")
    assert [r.info.run_id for r in decoded.runs] == ["ok"]


def test_a_hand_edited_part_fails_its_checksum() -> None:
    tags = codec.encode(0, [run("a"), run("b")])
    key = "expctl.ledger.000000.0000"
    tags[key] = tags[key][:-8] + ("A" * 8 if not tags[key].endswith("A" * 8) else "B" * 8)
    assert "checksum" in codec.decode([tags]).damaged


def test_a_compression_bomb_is_refused() -> None:
    import hashlib

    text = base64.b64encode(zlib.compress(b" " * (300 * 1024 * 1024), 9)).decode()
    parts = [text[i : i + 8000] for i in range(0, len(text), 8000)]
    tags = {f"expctl.ledger.000000.{i:04d}": p for i, p in enumerate(parts)}
    digest = hashlib.sha256(text.encode()).hexdigest()
    tags["expctl.ledger.000000"] = json.dumps({"parts": len(parts), "sha256": digest})
    assert "size limit" in codec.decode([tags]).damaged


def observed(phase: Phase) -> ObservedRun:
    return ObservedRun(run_key="k", name="job", experiment="e", attempt=1, spec_hash="h", phase=phase,
                       backend="local", live=True, mlflow_run_id="r")


@pytest.mark.parametrize(("the_run", "live", "gated", "touched", "settles"), [
    (run("r"), None, False, False, True),
    (run("r", status="FAILED"), None, False, False, True),
    (run("r", status="KILLED"), None, True, False, True),  # a gate judges succeeded runs only
    (run("r", status="RUNNING"), None, False, False, False),
    (run("r"), None, False, True, False),  # written by this apply: settles at the next one
    (run("r", **{"expctl.ready": "false"}), None, False, False, False),  # params not logged yet
    (run("r", **{"expctl.parent": "true"}), None, False, False, False),  # parents: with their points
    (run("r", **{"expctl.audit.state": "intent"}), None, False, False, False),
    (run("r", **{"expctl.managed": "settled"}), None, False, False, False),
    (run("r"), observed(Phase.RUNNING), False, False, False),  # the job still runs
    (run("r"), observed(Phase.SUCCEEDED), False, False, False),  # its logs are not kept yet
    (run("r", **{"expctl.logs": "kept"}), observed(Phase.SUCCEEDED), False, False, True),
    (run("r"), None, True, False, False),  # its gate has not judged it yet
    (run("r", **{"expctl.gate": "passed"}), None, True, False, True),
    (run("r", **{"expctl.validates": "e"}), None, False, False, False),  # a validation run decides a gate
])
def test_which_runs_settle(the_run: Run, live: ObservedRun | None, gated: bool, touched: bool,
                           settles: bool) -> None:
    assert settleable(the_run, live, gated, touched) is settles


def parent(run_id: str, status: str = "FINISHED", **tags: str) -> Run:
    return Run(RunInfo(run_id, "7", status, 1000, 2000, "active"),
               RunData({"expctl.managed": "true", "expctl.parent": "true", "expctl.experiment": "e", **tags}, {}, {}))


def point(run_id: str, of: str, status: str = "FINISHED") -> Run:
    return run(run_id, status, **{"mlflow.parentRunId": of})


@pytest.mark.parametrize(("runs", "touched", "from_ledger", "settling"), [
    ([parent("p"), point("a", "p"), point("b", "p")], set(), set(), ["a", "b", "p"]),  # with its last points
    ([parent("p"), point("a", "p"), point("b", "p", "RUNNING")], set(), set(), ["a"]),  # a point still runs
    ([parent("p"), point("a", "p"), point("b", "p")], set(), {"a"}, ["b", "p"]),  # a point settled before
    ([parent("p"), point("a", "p")], {"a"}, set(), []),  # a point written now: both settle next time
    ([parent("p"), point("a", "p")], {"p"}, set(), ["a"]),  # the parent written now (its summary)
    ([parent("p", "RUNNING"), point("a", "p")], set(), set(), ["a"]),  # not synced to its points yet
    ([parent("p")], set(), set(), ["p"]),  # no point left in MLflow
    ([parent("p", **{"expctl.managed": "settled"})], set(), set(), []),
    ([parent("p")], set(), {"p"}, []),  # already in the ledger
])
def test_a_sweeps_parent_settles_with_its_points(runs: list[Run], touched: set[str], from_ledger: set[str],
                                                  settling: list[str]) -> None:
    chosen = candidates(runs, [], [], touched, from_ledger)
    assert sorted(r.info.run_id for r in chosen) == settling


@pytest.mark.parametrize("by_platform", [False, True])
def test_a_succeeded_run_a_gate_judges_waits_for_its_verdict(by_platform: bool) -> None:
    """Also when the platform's validation job decides: its metrics and verdict are written on the training
    run after the training finished, so that run stays open until then."""
    from tests.support.factories import make_spec

    gate = ValidationGate("accuracy", 0.5, split="test" if by_platform else None)
    desired = [make_spec("e", validation=gate)]
    waiting, judged = run("a", **{"expctl.experiment": "e"}), run("b", **{"expctl.experiment": "e",
                                                                             "expctl.gate": "passed"})
    failed = run("c", "FAILED", **{"expctl.experiment": "e"})  # a gate judges succeeded runs only
    assert sorted(r.info.run_id for r in candidates([waiting, judged, failed], [], desired, set(), set())) == \
        ["b", "c"]


def test_two_writers_of_one_batch_number_keep_both_batches() -> None:
    """Two applies settling into one ledger at once both read next_seq 4: their batches must not overwrite
    each other's tags (a lost batch would lose settled runs: plans would launch them again)."""
    first, second = codec.encode(4, [run("a"), run("b")], "0123abcd"), codec.encode(4, [run("c")], "89abcdef")
    assert not set(first) & set(second)
    assert list(first)[-1] == "expctl.ledger.000004-0123abcd"
    old = codec.encode(3, [run("z")])  # a batch of the first format (no writer) is still read
    decoded = codec.decode([{**old, **first, **second}])
    assert decoded.damaged == "" and decoded.next_seq == 5
    assert sorted(r.info.run_id for r in decoded.runs) == ["a", "b", "c", "z"]
    with pytest.raises(ValueError, match="hex digits"):
        codec.encode(5, [], "../../x")
    broken = {**first, "expctl.ledger.000004-0123abcd.0000": "AAAA"}
    assert codec.decode([broken]).damaged.startswith("batch 4-0123abcd: ")


def test_an_apply_settles_the_runs_of_its_own_repository_only() -> None:
    """Another project's runs wait for that project's applies: only they see its jobs and know its gates."""
    mine = run("a", **{"mlflow.source.name": "github.com/org/vision#experiments/a.yaml"})
    theirs = run("b", **{"mlflow.source.name": "github.com/org/speech#experiments/a.yaml"})
    elsewhere = run("c", **{"mlflow.source.name": "github.com/org/vision-2#experiments/a.yaml"})
    top = parent("p", **{"mlflow.source.name": "github.com/org/vision#experiments/a.yaml"})
    vision = functools.partial(owned, project="github.com/org/vision", legacy_label="github.com/org/vision")
    chosen = candidates([mine, theirs, elsewhere, top], [], [], set(), set(), vision)
    assert sorted(r.info.run_id for r in chosen) == ["a", "p"]
    tagged = run("d", **{"expctl.project": "vision", "mlflow.source.name": "github.com/org/vision#a.yaml"})
    other = run("e", **{"expctl.project": "speech", "mlflow.source.name": "github.com/org/vision#a.yaml"})
    declared = functools.partial(owned, project="vision", legacy_label="github.com/org/vision")
    assert [r.info.run_id for r in candidates([mine, theirs, tagged, other], [], [], set(), set(), declared)] == \
        ["a", "d"]
    assert len(candidates([mine, theirs, elsewhere], [], [], set(), set())) == 3  # no repository: every run
