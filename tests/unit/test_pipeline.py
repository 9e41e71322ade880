"""Pipelines, pure: the dependency graph (order, cycles, checks), ``each`` expansion, and input resolution."""

from __future__ import annotations

from dataclasses import replace

import pytest

from expctl.core import pipeline
from expctl.core.inputs import InputDecl, ModelVersion, env_name
from expctl.core.model import Action, Change, FailureClass, ObservedRun, Phase, Reason, RetryPolicy, RunSpec
from expctl.core.plan_rules import make_plan
from tests.support.factories import make_job, make_spec

BASE = InputDecl("base", model="pretrain-classifier", alias="champion")
UP = InputDecl("up", experiment="pretrain")
EACH = InputDecl("up", experiment="pretrain", each=True)
NO_RETRY = RetryPolicy(max_attempts=1, on=())


def spec(experiment: str, *inputs: InputDecl, overrides: tuple[str, ...] = ()) -> RunSpec:
    return make_spec(experiment, overrides=overrides, job=make_job(inputs=inputs, retries=NO_RETRY))


def ran(s: RunSpec, phase: Phase, run_id: str = "up-run", message: str = "") -> ObservedRun:
    return ObservedRun(run_key=s.run_key, name=s.name, experiment=s.experiment, attempt=1, spec_hash=s.spec_hash,
                       phase=phase, backend="fake", mlflow_run_id=run_id, message=message, finished_at=1.0,
                       failure=FailureClass.CODE if phase is Phase.FAILED else None)


def test_order_puts_upstreams_first_and_keeps_the_order_of_the_rest() -> None:
    names = ["a", "distil", "evaluate", "finetune", "pretrain", "z"]
    edges = {"finetune": ["pretrain"], "distil": ["finetune"], "evaluate": ["distil", "pretrain"]}
    assert pipeline.order(names, edges) == ["a", "pretrain", "finetune", "distil", "evaluate", "z"]
    assert pipeline.order(names, {}) == names  # no inputs: nothing moves


def test_a_cycle_is_found_and_named() -> None:
    assert pipeline.find_cycle({"a": ["b"], "b": ["c"], "c": ["a"]}) == ["a", "b", "c", "a"]
    assert pipeline.find_cycle({"a": ["a"]}) == ["a", "a"]
    assert pipeline.find_cycle({"a": ["b"], "b": [], "c": ["a", "b"]}) is None


FILES = {"pretrain": "experiments/pretrain.yaml", "finetune": "experiments/finetune.yaml"}


@pytest.mark.parametrize(("inputs", "points", "key", "says"), [
    ({"finetune": (InputDecl("up", experiment="nope"),)}, {}, "expctl.inputs.up.experiment", "no experiment named"),
    ({"finetune": (EACH,)}, {"pretrain": 1}, "expctl.inputs.up.each", "is not a sweep"),
    ({"finetune": (UP,)}, {"pretrain": 3}, "expctl.inputs.up.experiment", "sweep of 3 runs"),
    ({"finetune": (UP,), "pretrain": (InputDecl("back", experiment="finetune"),)}, {"pretrain": 1, "finetune": 1},
     "expctl.inputs.up.experiment", "a cycle of inputs: finetune → pretrain → finetune"),
])
def test_graph_errors_name_file_and_key(inputs: dict[str, tuple[InputDecl, ...]], points: dict[str, int],
                                        key: str, says: str) -> None:
    errors = pipeline.graph_errors(inputs, FILES, points)
    assert len(errors) == 1 and errors[0].key == key and says in str(errors[0])
    assert errors[0].file in FILES.values()


def test_each_makes_one_run_per_upstream_point_with_stable_distinct_keys() -> None:
    points = [spec("pretrain", overrides=(f"lr={lr}",)) for lr in (0.1, 0.2, 0.3)]
    down = spec("evaluate", EACH)
    runs = pipeline.expand_each([*points, down])
    evals = [r for r in runs if r.experiment == "evaluate"]
    assert len(evals) == 3 and len({r.run_key for r in evals}) == 3 and len({r.name for r in evals}) == 3
    assert [dict(r.upstream)["up"] for r in evals] == [p.run_key for p in points]
    assert [r.run_key for r in pipeline.expand_each([*points, down])] == [r.run_key for r in runs]


def test_runs_without_inputs_keep_their_identity() -> None:
    runs = [spec("a"), spec("b", overrides=("x=1",))]
    assert pipeline.expand_each(runs) == runs
    resolved, held = pipeline.resolve(runs, [], {})
    assert resolved == runs and held == {}


def test_a_model_input_waits_for_its_alias_then_its_version_is_in_the_spec_hash() -> None:
    down = spec("finetune", BASE)
    plan = make_plan([down], [], commit="c", backend="fake", now=0.0)
    assert [(c.action, c.reason, c.detail) for c in plan.changes] == [
        (Action.NOOP, Reason.WAITING, "needs pretrain-classifier@champion")]
    v3 = ModelVersion("pretrain-classifier", "3", "run-3", "spec3")
    (resolved,), _ = pipeline.resolve([down], [], {BASE.wanted: v3})
    assert resolved.inputs[0].uri == "models:/pretrain-classifier/3" and resolved.spec_hash != down.spec_hash
    (v4,), _ = pipeline.resolve([down], [], {BASE.wanted: replace(v3, version="4", run_id="run-4")})
    assert v4.spec_hash != resolved.spec_hash  # the alias moved: a new identity
    (same,), _ = pipeline.resolve([down], [], {BASE.wanted: replace(v3, run_id="elsewhere")})
    assert same.spec_hash == resolved.spec_hash  # where it is is not what it is


def test_the_alias_moving_replaces_the_downstream_naming_old_and_new() -> None:
    down = spec("finetune", BASE)
    v3 = ModelVersion("pretrain-classifier", "3", "run-3", "spec3")
    (first,), _ = pipeline.resolve([down], [], {BASE.wanted: v3})
    done = replace(ran(first, Phase.SUCCEEDED), inputs=pipeline.labels(first))
    same = make_plan([down], [done], models={BASE.wanted: v3}, commit="c", backend="fake", now=0.0)
    assert [(c.action, c.reason) for c in same.changes] == [(Action.NOOP, Reason.UNCHANGED)]
    moved = make_plan([down], [done], models={BASE.wanted: replace(v3, version="4")}, commit="c",
                      backend="fake", now=0.0)
    assert [(c.action, c.reason, c.detail) for c in moved.changes] == [
        (Action.REPLACE, Reason.UPSTREAM_CHANGED, "base: pretrain-classifier v3 → pretrain-classifier v4")]


def test_an_experiment_input_waits_runs_and_blocks_with_its_upstream() -> None:
    up, down = spec("pretrain"), spec("finetune", UP)

    def line(*observed: ObservedRun) -> tuple[Action, Reason, str]:
        changes = make_plan([up, down], list(observed), commit="c", backend="fake", now=0.0).changes
        c = next(c for c in changes if c.experiment == "finetune")
        return c.action, c.reason, c.detail

    assert line() == (Action.NOOP, Reason.WAITING, f"needs {up.name} (not started)")
    assert line(ran(up, Phase.RUNNING)) == (Action.NOOP, Reason.WAITING, f"needs {up.name} (running)")
    assert line(ran(up, Phase.FAILED, message="exit 1")) == (
        Action.BLOCKED, Reason.UPSTREAM_FAILED, f"upstream {up.name} failed: exit 1")
    assert line(ran(up, Phase.SUCCEEDED))[:2] == (Action.CREATE, Reason.MISSING)
    (_, resolved), _ = pipeline.resolve([up, down], [ran(up, Phase.SUCCEEDED)], {})
    assert resolved.inputs[0].uri == "runs:/up-run" and resolved.inputs[0].spec_hash == up.spec_hash


def test_a_chain_resolves_in_order_and_an_unrelated_upstream_change_keeps_downstream_identity() -> None:
    up, mid = spec("pretrain"), spec("finetune", UP)
    last = spec("distil", InputDecl("teacher", experiment="finetune"))
    (_, mid_r, _), held = pipeline.resolve([up, mid, last], [ran(up, Phase.SUCCEEDED)], {})
    assert held[last.run_key].detail == f"needs {mid.name} (not started)"
    observed = [ran(up, Phase.SUCCEEDED), ran(mid_r, Phase.SUCCEEDED, run_id="mid-run")]
    (_, _, last_r), held = pipeline.resolve([up, mid, last], observed, {})
    assert not held and last_r.inputs[0].uri == "runs:/mid-run"
    # the upstream's MLflow run id differs (a rerun elsewhere), its spec is the same: nothing downstream moves
    again = [ran(up, Phase.SUCCEEDED, run_id="other"), ran(mid_r, Phase.SUCCEEDED, run_id="mid-2")]
    assert [r.spec_hash for r in pipeline.resolve([up, mid, last], again, {})[0]] == \
        [up.spec_hash, mid_r.spec_hash, last_r.spec_hash]


def test_model_inputs_are_looked_up_once_and_env_names_are_upper_case() -> None:
    assert pipeline.model_inputs([spec("a", BASE), spec("b", BASE, UP)]) == [BASE]
    assert env_name("base") == "EXPCTL_INPUT_BASE_URI" and env_name("Teacher_2") == "EXPCTL_INPUT_TEACHER_2_URI"


def test_on_a_gated_backend_a_consumer_is_submitted_after_its_live_upstream_with_the_same_identity() -> None:
    up, down = spec("pretrain"), spec("finetune", UP)

    def line(*observed: ObservedRun) -> Change:
        changes = make_plan([up, down], list(observed), commit="c", backend="slurm", now=0.0).changes
        return next(c for c in changes if c.experiment == "finetune")

    assert line().reason is Reason.WAITING  # not submitted yet: nothing to wait on
    pending = line(ran(up, Phase.PENDING))
    assert (pending.action, pending.detail) == (Action.CREATE, f"starts after {up.name} succeeds")
    assert pending.desired is not None and pipeline.after(pending.desired) == [up.name]
    assert pending.desired.inputs[0].uri == "runs:/up-run"
    done = line(ran(up, Phase.SUCCEEDED))
    assert done.desired is not None and pipeline.after(done.desired) == [] and done.detail == ""
    assert done.spec_hash == pending.spec_hash  # submitted early or late: one identity
    # the upstream failed for good: the consumer Slurm never starts is the upstream's fault
    stuck = replace(ran(pending.desired, Phase.PENDING, run_id="down-run"), after_failed=True)
    blocked = line(ran(up, Phase.FAILED, message="exit 1"), stuck)
    assert (blocked.action, blocked.reason) == (Action.BLOCKED, Reason.UPSTREAM_FAILED)


def test_a_consumer_whose_upstream_attempt_failed_is_submitted_again_after_the_retry() -> None:
    retry = RetryPolicy(max_attempts=2, on=(FailureClass.CODE,), backoff_seconds=0)
    up = replace(spec("pretrain"), job=replace(spec("pretrain").job, retries=retry))
    down = spec("finetune", UP)
    first = ran(up, Phase.FAILED, message="exit 1")
    (_, early), _ = pipeline.resolve([up, down], [replace(first, phase=Phase.PENDING)], {}, gated=True)
    stuck = replace(ran(early, Phase.PENDING, run_id="down-run"), after_failed=True)
    # the retry is not submitted yet: the consumer waits
    waiting = make_plan([up, down], [first, stuck], commit="c", backend="slurm", now=10.0).changes
    assert [(c.experiment, c.action) for c in waiting] == [("pretrain", Action.RETRY), ("finetune", Action.NOOP)]
    second = replace(ran(up, Phase.PENDING, run_id="up-run-2"), attempt=2, name=f"{up.name}-r2")
    again = make_plan([up, down], [first, second, stuck], commit="c", backend="slurm", now=10.0).changes
    c = next(c for c in again if c.experiment == "finetune")
    assert (c.action, c.reason, c.attempt, c.deletes) == (Action.REPLACE, Reason.UPSTREAM_CHANGED, 2, (stuck.name,))
    assert c.desired is not None and pipeline.after(c.desired) == [f"{up.name}-r2"]
    assert c.desired.inputs[0].uri == "runs:/up-run-2"


def test_a_held_consumer_is_released_after_its_upstream_succeeded_and_never_after_it_failed() -> None:
    up, down = spec("pretrain"), spec("finetune", UP)
    waiting = replace(ran(down, Phase.PENDING, run_id="down-run"), held_by=(up.name,))
    assert pipeline.releasable(pipeline.held_outcome([ran(up, Phase.RUNNING), waiting])) == []
    assert pipeline.releasable(pipeline.held_outcome([ran(up, Phase.SUCCEEDED), waiting])) == [down.name]
    assert pipeline.releasable([ran(up, Phase.SUCCEEDED), replace(waiting, cancelled=True)]) == []
    failed = pipeline.held_outcome([ran(up, Phase.FAILED), waiting])[1]
    assert failed.after_failed and failed.message == f"never started: upstream {up.name} failed"
    assert pipeline.releasable([ran(up, Phase.SUCCEEDED), failed]) == []
    # a held consumer never started: a change upstream replaces it without --replace-running
    solo = spec("solo")
    held = replace(ran(solo, Phase.PENDING), held_by=(up.name,))
    plan = make_plan([replace(solo, spec_hash="other")], [held], commit=solo.commit, backend="fake", now=1e12)
    assert [c.action for c in plan.changes] == [Action.REPLACE]


BEST = InputDecl("top", experiment="pretrain", best="val_accuracy")


def scored(s: RunSpec, value: float | None, phase: Phase = Phase.SUCCEEDED) -> ObservedRun:
    return replace(ran(s, phase, run_id=f"run-{s.run_key[:6]}"),
                   metrics=() if value is None else (("val_accuracy", value),))


def test_best_picks_the_succeeded_point_with_the_best_final_metric_once_the_sweep_finished() -> None:
    lo, hi, c = sorted((spec("pretrain", overrides=(f"optimizer.lr={lr}",)) for lr in ("0.1", "0.2", "0.3")),
                       key=lambda s: s.run_key)
    down = spec("finetune", BEST)
    assert pipeline.graph_errors({"finetune": (BEST,)}, FILES, {"pretrain": 3}) == []  # best on a sweep: fine
    _, held = pipeline.resolve([lo, hi, c, down], [scored(lo, 0.8), scored(hi, None, Phase.RUNNING)], {})
    assert held[down.run_key].reason is Reason.WAITING and hi.name in held[down.run_key].detail
    observed = [scored(lo, 0.8), scored(hi, 0.9), scored(c, 0.99, Phase.FAILED)]  # c failed for good: no pick
    (*_, got), held = pipeline.resolve([lo, hi, c, down], observed, {})
    assert not held and got.inputs[0].run_id == observed[1].mlflow_run_id and got.inputs[0].spec_hash == hi.spec_hash
    mode_min = replace(down, job=make_job(inputs=(replace(BEST, mode="min"),)))
    assert pipeline.resolve([lo, hi, c, mode_min], observed, {})[0][-1].inputs[0].spec_hash == lo.spec_hash
    # a new best is a new identity (upstream-changed, old → new); a tie goes to the lowest run key
    tie = [scored(lo, 0.95), scored(hi, 0.95), scored(c, 0.7, Phase.FAILED)]
    (*_, moved), _ = pipeline.resolve([lo, hi, c, down], tie, {})
    assert moved.spec_hash != got.spec_hash and moved.inputs[0].spec_hash == lo.spec_hash
    assert pipeline.labels(got) != pipeline.labels(moved)


def test_best_is_blocked_when_no_point_succeeded_with_the_metric() -> None:
    a, b = (spec("pretrain", overrides=(f"optimizer.lr={lr}",)) for lr in ("0.1", "0.2"))
    down = spec("finetune", BEST)
    _, held = pipeline.resolve([a, b, down], [scored(a, None), scored(b, 0.9, Phase.FAILED)], {})
    assert held[down.run_key].action is Action.BLOCKED and "no run succeeded with a val_accuracy" in \
        held[down.run_key].detail


def test_a_live_run_gets_the_metrics_the_tracker_recorded() -> None:
    from expctl.core.diff import join_observed

    up = spec("pretrain")
    live = replace(ran(up, Phase.SUCCEEDED), metrics=())
    (joined,) = join_observed([live], [replace(live, live=False, metrics=(("val_accuracy", 0.9),))])
    assert joined.live and joined.metrics == (("val_accuracy", 0.9),)


def test_an_input_from_another_teams_experiment_needs_that_team_to_share() -> None:
    inputs = {"finetune": (UP,)}
    teams = {"pretrain": "vision", "finetune": "nlp"}
    (error,) = pipeline.graph_errors(inputs, FILES, {"pretrain": 1}, teams, shared=())
    assert (error.file, error.key) == ("experiments/finetune.yaml", "expctl.inputs.up.experiment")
    assert "team vision, which does not share its runs (share: true" in str(error) and "\n" not in str(error)
    assert pipeline.graph_errors(inputs, FILES, {"pretrain": 1}, teams, shared={"vision"}) == []
    assert pipeline.graph_errors(inputs, FILES, {"pretrain": 1}, {"pretrain": "nlp", "finetune": "nlp"}) == []
    assert pipeline.graph_errors(inputs, FILES, {"pretrain": 1}) == []  # no teams declared


def test_the_experiment_whose_gate_registers_a_consumed_model_is_ordered_first() -> None:
    inputs = {"finetune": (BASE,)}
    edges = pipeline.with_producers(pipeline.edges_of(inputs), inputs, {"pretrain-classifier": {"pretrain"}})
    assert edges == {"finetune": ["pretrain"]}
    assert pipeline.order(["finetune", "other", "pretrain"], edges) == ["pretrain", "finetune", "other"]
    assert pipeline.with_producers({}, inputs, {}) == {"finetune": []}
