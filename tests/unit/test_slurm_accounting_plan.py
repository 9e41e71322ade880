"""The pure planning of Slurm accounting (``slurm.accounting_plan``): desired teams against what ``sacctmgr``
lists, as golden pairs of live state and the expected ``sacctmgr -i`` commands."""

from __future__ import annotations

from collections.abc import Sequence

from expctl.backends.slurm.accounting_plan import (
    Change,
    LiveAccount,
    LiveAccounting,
    LiveQos,
    SlurmTeam,
    parse_live,
    plan_accounting,
)

VISION = SlurmTeam("vision", account="vision", partition="gpu", qos="vision-gpu", gpus=8, max_gpus_per_run=4)
OURS = LiveAccount("expctl team vision", "expctl", ("vision-gpu",), "vision-gpu", ("ci",))
OUR_QOS = LiveQos("expctl team vision", {"gres/gpu": "8"}, {"gres/gpu": "4"})


def argvs(changes: Sequence[Change]) -> list[tuple[str, ...]]:
    return [c.argv for c in changes]


def test_parse_live_reads_the_three_listings() -> None:
    live = parse_live(
        "normal|Normal QOS default||\nvision-gpu|expctl team vision|cpu=4,gres/gpu=8|gres/gpu=4\n",
        "root|default root account|root\nvision|expctl team vision|expctl\n",
        "root||normal|\nroot|root|normal|\nvision||vision-gpu|vision-gpu\nvision|ci|vision-gpu|vision-gpu\n")
    assert live.qos["vision-gpu"] == LiveQos("expctl team vision", {"cpu": "4", "gres/gpu": "8"}, {"gres/gpu": "4"})
    assert live.qos["normal"].grp_tres == {}
    assert live.accounts["vision"] == OURS
    assert live.accounts["root"].ours is False and live.accounts["root"].users == ("root",)


def test_an_empty_cluster_gets_qos_then_account_then_associations() -> None:
    plan = plan_accounting([VISION], LiveAccounting(), {"vision": ["ci", "ada"]})
    assert argvs(plan.changes) == [
        ("add", "qos", "vision-gpu", "Description=expctl team vision", "GrpTRES=gres/gpu=8",
         "MaxTRESPerJob=gres/gpu=4"),
        ("add", "account", "vision", "Description=expctl team vision", "Organization=expctl",
         "QOS=vision-gpu", "DefaultQOS=vision-gpu"),
        ("add", "user", "ci", "account=vision"),
        ("add", "user", "ada", "account=vision"),
    ]
    assert plan.kept == () and plan.notes == ()


def test_a_converged_cluster_plans_nothing() -> None:
    live = LiveAccounting({"vision-gpu": OUR_QOS}, {"vision": OURS})
    assert plan_accounting([VISION], live, {"vision": ["ci"]}).changes == ()


def test_changed_limits_modify_only_what_differs() -> None:
    live = LiveAccounting({"vision-gpu": LiveQos("expctl team vision", {"gres/gpu": "4"}, {"gres/gpu": "4"})},
                          {"vision": OURS})
    (change,) = plan_accounting([VISION], live, {"vision": ["ci"]}).changes
    assert change.argv == ("modify", "qos", "where", "name=vision-gpu", "set", "GrpTRES=gres/gpu=8")
    assert str(change) == "modify qos vision-gpu (team vision): GrpTRES gres/gpu=4 -> gres/gpu=8"


def test_no_quota_unsets_the_limit() -> None:
    unlimited = SlurmTeam("vision", account="vision", qos="vision-gpu")
    live = LiveAccounting({"vision-gpu": OUR_QOS}, {"vision": OURS})
    (change,) = plan_accounting([unlimited], live, {"vision": ["ci"]}).changes
    assert change.argv[-2:] == ("GrpTRES=gres/gpu=-1", "MaxTRESPerJob=gres/gpu=-1")


def test_a_new_qos_name_is_set_on_the_account_and_the_old_one_kept_without_prune() -> None:
    renamed = SlurmTeam("vision", account="vision", qos="vision-gpu2", gpus=8, max_gpus_per_run=4)
    live = LiveAccounting({"vision-gpu": OUR_QOS}, {"vision": OURS})
    plan = plan_accounting([renamed], live, {"vision": ["ci"]})
    assert [(c.action, c.kind, c.name) for c in plan.changes] == [("create", "qos", "vision-gpu2"),
                                                                   ("modify", "account", "vision")]
    assert plan.changes[1].argv[-2:] == ("QOS=vision-gpu2", "DefaultQOS=vision-gpu2")
    assert [(c.action, c.kind, c.name) for c in plan.kept] == [("delete", "qos", "vision-gpu")]
    pruned = plan_accounting([renamed], live, {"vision": ["ci"]}, prune=True)
    assert pruned.changes[-1].argv == ("delete", "qos", "vision-gpu") and pruned.kept == ()


def test_members_join_and_leave_by_association() -> None:
    live = LiveAccounting({"vision-gpu": OUR_QOS}, {"vision": OURS})
    plan = plan_accounting([VISION], live, {"vision": ["ada"]}, prune=True)
    assert argvs(plan.changes) == [("add", "user", "ada", "account=vision"),
                                   ("delete", "user", "where", "name=ci", "account=vision")]


def test_only_expctls_objects_are_touched() -> None:
    theirs = LiveAccounting({"vision-gpu": LiveQos("site QOS", {}, {}), "old": LiveQos("hand made", {}, {})},
                            {"vision": LiveAccount("physics", "lab"), "lab": LiveAccount("x", "lab")})
    plan = plan_accounting([VISION], theirs, {"vision": ["ci"]}, prune=True)
    assert plan.changes == ()
    assert plan.notes == (
        "qos vision-gpu (team vision) exists and is not expctl's (description 'site QOS'): left as it is",
        "account vision (team vision) exists and is not expctl's (organization 'lab'): left as it is")


def test_undeclared_teams_are_deleted_account_before_qos_with_prune_only() -> None:
    live = LiveAccounting({"vision-gpu": OUR_QOS}, {"vision": OURS})
    kept = plan_accounting([], live, {})
    assert kept.changes == () and [c.argv for c in kept.kept] == [("delete", "account", "vision"),
                                                                  ("delete", "qos", "vision-gpu")]
    assert argvs(plan_accounting([], live, {}, prune=True).changes) == [c.argv for c in kept.kept]


def test_a_team_without_account_or_qos_needs_nothing() -> None:
    assert plan_accounting([SlurmTeam("nlp", partition="main")], LiveAccounting(), {"nlp": ["ci"]}).changes == ()


def test_names_are_compared_as_slurm_stores_them_in_lower_case() -> None:
    live = LiveAccounting({"vision-gpu": OUR_QOS}, {"vision": OURS})
    loud = SlurmTeam("vision", account="Vision", qos="Vision-GPU", gpus=8, max_gpus_per_run=4)
    assert plan_accounting([loud], live, {"vision": ["ci"]}, prune=True).changes == ()
