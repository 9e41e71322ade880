"""The diff of the teams' platform objects (pure): create, update, unchanged, prune only when asked, refuse what
expctl did not create; deletes first, in reverse creation order."""

from __future__ import annotations

import pytest

from expctl.backends.kubernetes.team_objects import ORDER, render_teams
from expctl.core.team_platform import PlatformAction, PlatformObject, PruneRefused, Team, plan_platform

VISION = Team("vision", namespace="vision", queue="vision", gpus=8, users=("alice",), max_jobs=3, borrow=True)
NLP = Team("nlp", namespace="nlp", gpus=2)


def actions(desired: list[PlatformObject], observed: list[PlatformObject], prune: bool = False,
            unmanaged: dict[tuple[str, str, str], str] | None = None) -> list[tuple[str, str]]:
    return [(c.action.value, c.obj.shown)
            for c in plan_platform(desired, observed, prune=prune, unmanaged=unmanaged, order=ORDER)]


def test_rendering_gives_each_team_its_objects_and_kueue_only_with_a_queue_and_gpus() -> None:
    shown = sorted(o.shown for o in render_teams([VISION, NLP]))
    assert shown == sorted([
        "ResourceFlavor/expctl-default", "Cohort/expctl", "Namespace/vision", "ServiceAccount/vision/expctl-jobs",
        "Role/vision/expctl-team", "RoleBinding/vision/expctl-team", "ResourceQuota/vision/expctl-team",
        "Role/vision/expctl-team-configmaps", "RoleBinding/vision/expctl-team-configmaps",  # alice applies
        "ClusterQueue/vision", "LocalQueue/vision/vision", "Namespace/nlp", "ServiceAccount/nlp/expctl-jobs",
        "Role/nlp/expctl-team", "RoleBinding/nlp/expctl-team", "ResourceQuota/nlp/expctl-team"])
    # the members may create the git-sync script's ConfigMap that apply makes; the jobs' ServiceAccount may not
    config = {o.kind: o.body for o in render_teams([VISION]) if o.name == "expctl-team-configmaps"}
    assert config["Role"]["rules"] == [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]
    assert config["RoleBinding"]["subjects"] == [
        {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "alice"}]
    quota = next(o for o in render_teams([NLP]) if o.kind == "ResourceQuota")
    assert quota.body["spec"] == {"hard": {"requests.nvidia.com/gpu": "2"}}  # no max_jobs: no count limit


def test_creates_in_order_then_nothing_then_an_update_when_a_team_changes() -> None:
    desired = render_teams([VISION])
    first = actions(desired, [])
    assert [a for a, _ in first] == ["create"] * len(desired)
    assert [s.split("/")[0] for _, s in first][:4] == ["Namespace", "ResourceFlavor", "Cohort", "ClusterQueue"]
    assert {a for a, _ in actions(desired, desired)} == {"unchanged"}
    grown = render_teams([Team(**{**VISION.__dict__, "gpus": 16})])
    changed = [s for a, s in actions(grown, desired) if a == "update"]
    assert changed == ["ClusterQueue/vision", "ResourceQuota/vision/expctl-team"]


def test_objects_no_longer_declared_are_deleted_only_with_prune_and_namespaces_last() -> None:
    both, one = render_teams([VISION, NLP]), render_teams([VISION])
    assert {a for a, s in actions(one, both) if "nlp" in s} == {"would-prune"}
    pruned = [(a, s) for a, s in actions(one, both, prune=True) if a == "delete"]
    assert pruned[-1] == ("delete", "Namespace/nlp") and len(pruned) == 5  # nlp has no members: no ConfigMap Role
    held = {("Namespace", "", "nlp"): "holds objects expctl did not create (pods/x)"}
    assert ("blocked", "Namespace/nlp") in actions(one, both, prune=True, unmanaged=held)


def test_an_existing_object_expctl_did_not_create_is_refused_but_a_namespace_is_used() -> None:
    desired = render_teams([NLP])
    theirs = {("Namespace", "", "nlp"): "exists, not created by expctl", ("Role", "nlp", "expctl-team"): "theirs"}
    got = dict((s, a) for a, s in actions(desired, [], unmanaged=theirs))
    assert got["Namespace/nlp"] == "unchanged" and got["Role/nlp/expctl-team"] == "blocked"
    assert got["RoleBinding/nlp/expctl-team"] == "create"


def test_pruning_with_no_team_declared_is_refused() -> None:
    with pytest.raises(PruneRefused):
        plan_platform([], render_teams([NLP]), prune=True)
    assert all(c.action is PlatformAction.WOULD_PRUNE for c in plan_platform([], render_teams([NLP]), prune=False))
