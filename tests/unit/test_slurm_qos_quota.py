"""Whose GPU quota Slurm enforces (pure decision, ``slurm.qos_quota``) and the plan that follows: a team whose
QOS holds its quota is left to Slurm (its runs are all submitted), every other team is held by expctl as
without accounting — and the plan says in a note which applies."""

from __future__ import annotations

from pathlib import Path

from expctl.backends.slurm.qos_quota import NO_ACCOUNTING, QosQuotas, enforced_by_qos, parse_gpu_limits
from expctl.config.desired_state import Desired
from expctl.config.schema import parse_settings
from expctl.config.source import Snapshot
from expctl.core import views
from expctl.core.model import Resources
from expctl.core.team_platform import Team
from expctl.engine.plan import PlanOptions, make_plan_of
from tests.support.factories import make_job, make_spec
from tests.support.fakes import FakeBackend, FakeQosLimits, FakeQuotaBackend

TEAMS = [Team("vision", qos="vision-gpu", gpus=2), Team("nlp", qos="NLP-gpu", gpus=4),
         Team("speech", gpus=1), Team("cv", qos="cv-gpu", gpus=1), Team("audio", qos="audio-gpu"),
         Team("ocr", qos="ocr-gpu", gpus=3)]
LIMITS = {"vision-gpu": "2", "nlp-gpu": "2", "audio-gpu": None, "ocr-gpu": None}
HELD = "expctl holds its runs over its GPU quota"


def test_only_a_team_whose_qos_holds_its_quota_is_left_to_slurm() -> None:
    got = enforced_by_qos(TEAMS, LIMITS)
    assert got.teams == {"vision"}
    assert got.notes == (
        "team vision's GPU quota is Slurm's to enforce (qos vision-gpu, GrpTRES=gres/gpu=2): its runs are "
        "submitted and those over it wait in Slurm (QOSGrpGRES)",
        f"qos nlp-gpu of team nlp limits gres/gpu to 2, not its quota 4 (expctl teams apply sets it): {HELD}",
        f"team speech declares no Slurm qos: {HELD}",
        f"qos cv-gpu of team cv is not in Slurm's accounting (expctl teams apply makes it): {HELD}",
        f"qos ocr-gpu of team ocr limits gres/gpu to nothing, not its quota 3 (expctl teams apply sets it): {HELD}",
    )  # audio has no quota: nothing to say


def test_without_accounting_or_with_sacctmgr_failing_expctl_holds_every_team() -> None:
    assert enforced_by_qos(TEAMS, None).teams == set()
    assert enforced_by_qos(TEAMS, None).notes == (NO_ACCOUNTING,)
    failing = enforced_by_qos(TEAMS, LIMITS, failure="sacctmgr -P -n show qos failed: Connection refused")
    assert failing.teams == set()
    assert failing.notes == ("sacctmgr -P -n show qos failed: Connection refused; expctl holds runs over the "
                             "teams' GPU quotas",)
    assert enforced_by_qos([Team("audio", qos="audio-gpu")], None).notes == ()


def test_gpu_limits_are_read_from_grptres_by_lower_case_name() -> None:
    text = "normal|\nVision-GPU|cpu=4,gres/gpu=2\nbig|gres/gpu:a100=8\n"
    assert parse_gpu_limits(text) == {"normal": None, "vision-gpu": "2", "big": None}


def test_sacctmgr_is_asked_once_per_command_and_only_when_a_team_has_a_quota() -> None:
    read = FakeQosLimits(LIMITS)
    quotas = QosQuotas(read)
    assert quotas.of([Team("audio", qos="audio-gpu")]).notes == () and read.calls == 0
    assert quotas.of(TEAMS).teams == {"vision"}
    assert quotas.of(TEAMS).teams == {"vision"} and read.calls == 1

    failing = FakeQosLimits(LIMITS, failure="sacctmgr not found: is this a Slurm login node (slurm-client)?")
    quotas = QosQuotas(failing)
    assert quotas.of(TEAMS).notes[0].startswith("sacctmgr not found")
    assert quotas.of(TEAMS).teams == set() and failing.calls == 1


def desired() -> Desired:
    settings = parse_settings({"backend": "slurm", "slurm": {"workdir": "/shared"}, "teams": [
        {"name": "vision", "paths": ["experiments/vision"], "gpus": 1, "slurm": {"qos": "vision-gpu"}}]})
    job = make_job(resources=Resources(gpus=1), team="vision")
    runs = [make_spec("vision/a", (f"seed={i}",), job=job) for i in (1, 2)]
    return Desired(Snapshot(Path("."), "c" * 40, "c" * 40), settings, runs)


def actions(backend: FakeBackend | str) -> list[str]:
    return [f"{c.action.value}:{c.detail}" for c in make_plan_of(desired(), [], backend, PlanOptions(), 0.0).changes]


def test_the_plan_submits_every_run_of_a_team_slurm_holds_and_says_so() -> None:
    slurm = FakeQuotaBackend(enforced=["vision"], notes=["team vision's GPU quota is Slurm's to enforce"])
    plan = make_plan_of(desired(), [], slurm, PlanOptions(), 0.0)
    assert [c.action.value for c in plan.changes] == ["create", "create"]
    assert slurm.asked == [["vision"]]
    assert plan.notes == ("team vision's GPU quota is Slurm's to enforce",)
    assert views.human(plan).endswith("\nnote: team vision's GPU quota is Slurm's to enforce\n")
    assert views.as_dict(plan)["notes"] == list(plan.notes)


def test_a_team_slurm_does_not_hold_waits_in_the_plan_as_before() -> None:
    assert actions(FakeQuotaBackend(notes=[NO_ACCOUNTING])) == ["create:", "noop:quota: vision 1/1 GPUs"]
    assert actions("slurm") == ["create:", "noop:quota: vision 1/1 GPUs"]  # no scheduler to ask: held
