"""Team GPU quotas in the plan (pure): starts beyond a team's quota wait, named ``quota: T used/quota GPUs``."""

from __future__ import annotations

from expctl.core import views
from expctl.core.model import Action, ObservedRun, Phase, Reason, Resources, RunSpec
from expctl.core.plan_rules import make_plan
from expctl.core.quota import Quotas, in_use
from tests.support.factories import make_job, make_spec

QUOTAS = Quotas({"vision": 8}, {"vision/a": "vision", "vision/b": "vision", "nlp/c": "nlp"})


def spec(experiment: str, gpus: int, replicas: int = 1, seed: int = 0) -> RunSpec:
    team = QUOTAS.teams.get(experiment)
    job = make_job(replicas=replicas, resources=Resources(gpus=gpus), team=team)
    return make_spec(experiment, overrides=(f"seed={seed}",), job=job)


def running(s: RunSpec, phase: Phase = Phase.RUNNING) -> ObservedRun:
    return ObservedRun(s.run_key, s.name_for(1), s.experiment, 1, s.spec_hash, phase, "local",
                       replicas=s.job.replicas, gpus=s.job.resources.gpus, overrides=s.overrides)


def plan(desired: list[RunSpec], observed: list[ObservedRun], quotas: Quotas | None = QUOTAS) -> dict[str, str]:
    p = make_plan(desired, observed, commit="c" * 40, backend="local", now=0.0, quotas=quotas)
    return {c.experiment + "/" + c.overrides[0]: f"{c.action.value}:{c.reason.value}:{c.detail}" for c in p.changes}


def test_starts_are_admitted_in_plan_order_until_the_quota_is_used() -> None:
    runs = [spec("vision/a", 2, replicas=2, seed=1), spec("vision/a", 4, seed=2), spec("vision/b", 1, seed=3)]
    got = plan(runs, [])
    assert got == {"vision/a/seed=1": "create:missing:", "vision/a/seed=2": "create:missing:",
                   "vision/b/seed=3": "noop:waiting:quota: vision 8/8 GPUs"}


def test_running_and_queued_runs_hold_gpus_and_finished_ones_free_them() -> None:
    old = [spec("vision/a", 4, seed=1), spec("vision/a", 2, seed=2)]
    new = spec("vision/b", 4, seed=3)
    observed = [running(old[0]), running(old[1], Phase.PENDING)]
    assert plan([*old, new], observed)["vision/b/seed=3"] == "noop:waiting:quota: vision 6/8 GPUs"
    observed[0] = running(old[0], Phase.SUCCEEDED)
    assert plan([*old, new], observed)["vision/b/seed=3"] == "create:missing:"


def test_a_held_run_keeps_later_runs_of_its_team_waiting_but_not_other_teams_or_cpu_runs() -> None:
    runs = [spec("vision/a", 8, seed=1), spec("vision/a", 1, seed=2), spec("vision/b", 0, seed=3),
            spec("nlp/c", 64, seed=4)]
    got = plan(runs, [running(spec("vision/b", 2, seed=9))])
    assert got["vision/a/seed=1"] == "noop:waiting:quota: vision 2/8 GPUs"
    assert got["vision/a/seed=2"] == "noop:waiting:quota: vision 2/8 GPUs"
    assert got["vision/b/seed=3"] == "create:missing:"  # asks for no GPU
    assert got["nlp/c/seed=4"] == "create:missing:"  # nlp declares no quota


def test_without_quotas_nothing_waits() -> None:
    assert plan([spec("vision/a", 8, seed=1), spec("vision/a", 8, seed=2)], [], quotas=None) == {
        "vision/a/seed=1": "create:missing:", "vision/a/seed=2": "create:missing:"}


def test_a_replace_frees_the_gpus_of_the_run_it_replaces() -> None:
    first = spec("vision/a", 8, seed=1)
    observed = [running(first)]
    changed = make_spec("vision/a", overrides=("seed=1",), config={"lr": 0.5},
                        job=make_job(resources=Resources(gpus=8), team="vision"))
    p = make_plan([changed], observed, commit="c" * 40, backend="local", now=0.0, replace_running=True,
                  quotas=QUOTAS)
    assert [c.action for c in p.changes] == [Action.REPLACE]


def test_the_human_plan_says_waiting_and_why() -> None:
    runs = [spec("vision/a", 8, seed=1), spec("vision/a", 8, seed=2)]
    p = make_plan(runs, [], commit="c" * 40, backend="local", now=0.0, quotas=QUOTAS)
    held = [ln for ln in views.human(p).splitlines() if ln.strip().startswith("waiting")]
    assert len(held) == 1 and held[0].endswith("(quota: vision 8/8 GPUs)"), held
    assert views.summary_line(p) == ("Plan: 1 to create, 0 to retry, 0 to replace, 0 to delete. (0 unchanged, "
                                     "1 waiting for their team's GPU quota)")
    assert views.summary(p)["waiting_quota"] == 1
    assert [c.reason for c in p.changes] == [Reason.MISSING, Reason.WAITING]


def test_in_use_counts_live_unfinished_runs_of_known_teams() -> None:
    a, c = spec("vision/a", 2, replicas=3, seed=1), spec("nlp/c", 4, seed=2)
    gone = running(a)
    observed = [running(a), running(c), running(spec("other/x", 4)), ObservedRun(
        **{**gone.__dict__, "name": "x-2", "live": False})]
    assert in_use(observed, QUOTAS) == {"vision": 6, "nlp": 4}
