"""What ``expctl teams apply`` keeps on Kubernetes for each team, rendered (pure, no client): its Namespace; a
ServiceAccount for its jobs; a Role + RoleBinding letting its users and groups (members, CI identity) manage
training jobs in its namespace only, and a second pair (``CONFIG_ROLE``, without the jobs' ServiceAccount) letting
them get and create the ConfigMap the jobs' git-sync script is mounted from (``apply`` creates it); a
ResourceQuota (GPU requests, count of training objects); and with a Kueue queue, a LocalQueue → the team's
ClusterQueue with its GPU ``nominalQuota`` on the shared ResourceFlavor (in the cohort ``expctl``, with a Cohort
object, when the team may borrow). Every object carries expctl's managed-by
label, the team, and the digest of its body (``expctl.io/spec-hash``). When the teams declare ``mlflow:``, a
team's namespace also holds its MLflow job identity, the Secret ``JOB_SECRET`` its jobs read with ``envFrom``
(its body holds a password: handed to the API only, never printed).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from expctl.backends.kubernetes.manifests.common import JOBS_ACCOUNT, MANAGED_BY, MANAGER, SPEC_HASH
from expctl.backends.kubernetes.manifests.common import TEAM as TEAM_LABEL
from expctl.core.team_platform import JOB_SECRET, PlatformObject, Team, digest_of

KUEUE = "kueue.x-k8s.io/v1beta2"
RBAC = "rbac.authorization.k8s.io/v1"
GPU = "nvidia.com/gpu"
FLAVOR = "expctl-default"
COHORT = "expctl"
ROLE = "expctl-team"
CONFIG_ROLE = "expctl-team-configmaps"  # the members' only: the jobs' ServiceAccount needs no ConfigMaps
# creation order: what others refer to first (deletes go in reverse)
ORDER = ("Namespace", "ResourceFlavor", "Cohort", "ClusterQueue", "ServiceAccount", "Secret", "Role",
         "RoleBinding", "ResourceQuota", "LocalQueue")
TRAINING = {"kubeflow.org": ("pytorchjobs", "tfjobs", "mpijobs"), "trainer.kubeflow.org": ("trainjobs",)}

API_VERSION = {"Namespace": "v1", "ServiceAccount": "v1", "Secret": "v1", "ResourceQuota": "v1", "Role": RBAC,
               "RoleBinding": RBAC, "ResourceFlavor": KUEUE, "Cohort": KUEUE, "ClusterQueue": KUEUE,
               "LocalQueue": KUEUE}


def render_teams(teams: Sequence[Team]) -> list[PlatformObject]:
    """Every object of every team that declares a Kubernetes namespace (and the shared Kueue ones they use)."""
    out: list[PlatformObject] = []
    kueue = [t for t in teams if t.namespace and t.queue and t.gpus]
    if kueue:
        out.append(_obj("ResourceFlavor", FLAVOR, "", "", {"spec": {}}))
    if any(t.borrow for t in kueue):
        out.append(_obj("Cohort", COHORT, "", "", {"spec": {}}))
    for team in teams:
        if team.namespace:
            out.extend(_team_objects(team, team.namespace))
    return out


def _team_objects(team: Team, ns: str) -> list[PlatformObject]:
    rules: list[dict[str, Any]] = [
        {"apiGroups": [group], "resources": list(plurals),
         "verbs": ["get", "list", "watch", "create", "patch", "update", "delete"]}
        for group, plurals in TRAINING.items()]
    rules += [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list", "watch",
                                                                               "deletecollection"]},
              {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "create", "update"]},
              {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["get", "list", "watch"]}]
    members = ([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": u} for u in team.users]
               + [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g} for g in team.groups])
    subjects = [*members, {"kind": "ServiceAccount", "name": JOBS_ACCOUNT, "namespace": ns}]
    hard: dict[str, str] = {}
    if team.gpus:
        hard[f"requests.{GPU}"] = str(team.gpus)
    if team.max_jobs:
        hard.update({f"count/{p}.{g}": str(team.max_jobs) for g, plurals in TRAINING.items() for p in plurals})
    out = [_obj("Namespace", ns, "", team.name, {}),
           _obj("ServiceAccount", JOBS_ACCOUNT, ns, team.name, {}),
           _obj("Role", ROLE, ns, team.name, {"rules": rules}),
           _obj("RoleBinding", ROLE, ns, team.name, {
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": ROLE},
               "subjects": subjects})]
    if members:
        out += [_obj("Role", CONFIG_ROLE, ns, team.name, {"rules": [
                    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create"]}]}),
                _obj("RoleBinding", CONFIG_ROLE, ns, team.name, {
                    "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": CONFIG_ROLE},
                    "subjects": members})]
    if team.job_env:
        out.append(_obj("Secret", JOB_SECRET, ns, team.name, {"type": "Opaque", "stringData": dict(team.job_env)}))
    if hard:
        out.append(_obj("ResourceQuota", "expctl-team", ns, team.name, {"spec": {"hard": hard}}))
    if team.queue and team.gpus:
        spec: dict[str, Any] = {
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}},
            "resourceGroups": [{"coveredResources": [GPU], "flavors": [
                {"name": FLAVOR, "resources": [{"name": GPU, "nominalQuota": team.gpus}]}]}]}
        if team.borrow:
            spec["cohortName"] = COHORT
        out.append(_obj("ClusterQueue", team.name, "", team.name, {"spec": spec}))
        out.append(_obj("LocalQueue", team.queue, ns, team.name, {"spec": {"clusterQueue": team.name}}))
    return out


def _obj(kind: str, name: str, namespace: str, team: str, content: dict[str, Any]) -> PlatformObject:
    digest = digest_of({"kind": kind, "name": name, "namespace": namespace, "team": team, **content})
    labels = {MANAGED_BY: MANAGER, **({TEAM_LABEL: team} if team else {})}
    meta: dict[str, Any] = {"name": name, "labels": labels, "annotations": {SPEC_HASH: digest}}
    if namespace:
        meta["namespace"] = namespace
    body = {"apiVersion": API_VERSION[kind], "kind": kind, "metadata": meta, **content}
    return PlatformObject(kind, name, namespace, team, digest, body)
