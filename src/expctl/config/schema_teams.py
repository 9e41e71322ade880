"""The ``teams:`` block of ``expctl.yaml`` (pydantic, at the user-input boundary): each team's experiment paths,
members, placement per backend (Kubernetes namespace, Kueue queue, priority class; Slurm partition, account,
qos), GPU quota and whether other teams' experiments may consume its runs (``share``). ``check_teams`` holds
the checks across teams (one line each, naming expctl.yaml and the key); ``team_for`` finds the team owning an
experiment file. See docs/teams.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import Field

from expctl.config.schema_types import LABEL, Label, Name, RepoPath, Strict, Word
from expctl.core.errors import ConfigError

MAX_TEAM_GPUS = 1_000_000  # a whole fleet: larger is a typo

# a CODEOWNERS owner: @user, @org/team, or an e-mail address (GitHub's three forms)
OWNER = r"^(@[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:/[A-Za-z0-9][A-Za-z0-9._-]*)?|[^@\s]+@[^@\s]+\.[^@\s]+)$"
Owner = Annotated[str, Field(pattern=OWNER, max_length=256)]


class TeamKubernetesIn(Strict):
    """Where a team's runs go on Kubernetes: its namespace, its Kueue LocalQueue, its priority class; and what
    ``expctl teams apply`` grants there: the users and groups (members, CI identity, as the cluster names them)
    who manage its training jobs, the most training objects at once, whether its ClusterQueue may borrow."""

    namespace: Label
    queue: Name | None = None
    priority_class: Name | None = None
    users: list[Word] = Field([], max_length=1000)
    groups: list[Word] = Field([], max_length=1000)
    max_jobs: int | None = Field(None, ge=1, le=MAX_TEAM_GPUS)  # training objects in its namespace at once
    borrow: bool = False  # its ClusterQueue joins the cohort "expctl" (borrows from and lends to other teams)


class TeamSlurmIn(Strict):
    """Where a team's runs go on Slurm, and who pays: partition, account, qos."""

    partition: Word | None = None
    account: Word | None = None
    qos: Word | None = None


class TeamMlflowIn(Strict):
    """A team's MLflow side: its workspace (default: the team's name) and its members' MLflow user names
    (default: the members' GitHub user names, ``@alice`` → ``alice``, and e-mail addresses; ``@org/team`` is no
    MLflow user)."""

    workspace: Label | None = None
    users: list[Word] | None = Field(None, max_length=1000)


class TeamIn(Strict):
    """One team: the experiment paths it owns, its members, its placement and its GPU quota."""

    name: Annotated[str, Field(pattern=LABEL)]  # a label value, a namespace-like name (vision, nlp)
    paths: list[RepoPath] = Field(min_length=1)
    members: list[Owner] = Field([], max_length=1000)
    reviewers: list[Owner] = Field([], max_length=1000)  # CODEOWNERS owners (default: the members)
    kubernetes: TeamKubernetesIn | None = None
    slurm: TeamSlurmIn | None = None
    gpus: int | None = Field(None, ge=1, le=MAX_TEAM_GPUS)  # quota: GPUs in use at once (None: no quota)
    max_gpus_per_run: int | None = Field(None, ge=1, le=MAX_TEAM_GPUS)
    mlflow: TeamMlflowIn | None = None
    share: bool = False  # other teams' experiments may consume its runs (pipelines: inputs.X.experiment)

    def owns(self, source_file: str) -> bool:
        """Whether the experiment file ``source_file`` is under one of the team's paths."""
        return any(_under(source_file, p) for p in self.paths)

    def owners(self) -> list[str]:
        """Who reviews the team's paths: its reviewers, else its members."""
        return list(self.reviewers or self.members)

    def mlflow_workspace(self) -> str:
        """The team's MLflow workspace: ``mlflow.workspace``, else the team's name."""
        return (self.mlflow.workspace if self.mlflow else None) or self.name

    def mlflow_users(self) -> list[str]:
        """The team's members as MLflow user names: ``mlflow.users``, else from ``members``."""
        if self.mlflow is not None and self.mlflow.users is not None:
            return list(dict.fromkeys(self.mlflow.users))
        return list(dict.fromkeys(m.removeprefix("@") for m in self.members if "/" not in m))


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return path == prefix or path.startswith(prefix + "/")


def team_for(teams: Sequence[TeamIn], source_file: str) -> TeamIn | None:
    """The team owning ``source_file`` (paths never overlap: ``check_teams`` refused that)."""
    return next((t for t in teams if t.owns(source_file)), None)


def team_of_experiment(teams: Sequence[TeamIn], experiment: str) -> str | None:
    """The name of the team owning experiment ``experiment`` (its file ``experiments/<experiment>.yaml``)."""
    found = team_for(teams, f"experiments/{experiment}.yaml") or team_for(teams, f"experiments/{experiment}.yml")
    return found.name if found else None


def check_teams(teams: Sequence[TeamIn], file: str, *, tenants: bool) -> None:
    """The checks across teams; raises one ConfigError naming ``file`` and the key.

    Refused: two teams with one name; a path claimed twice (by two teams, or one under another); two teams in
    one namespace, Slurm account or MLflow workspace (their runs and quotas would mix); ``tenants:`` beside
    ``teams:``.
    A member may belong to several teams (a lead reviewing for two): that is allowed.
    """
    if not teams:
        return
    if tenants:
        raise ConfigError("tenants are replaced by teams: move each tenant's path and namespace/queue (and "
                          "slurm.tenants' partition/account/qos) into its team (docs/teams.md)", file=file,
                          key="tenants")
    names: dict[str, int] = {}
    claimed: list[tuple[str, int, int]] = []
    for i, team in enumerate(teams):
        first = names.setdefault(team.name, i)
        if first != i:
            raise ConfigError(f"a second team named {team.name!r} (the first is teams.{first})", file=file,
                              key=f"teams.{i}.name")
        for j, path in enumerate(team.paths):
            for other_path, ti, pj in claimed:
                if _under(path, other_path) or _under(other_path, path):
                    owner = "this team" if ti == i else f"team {teams[ti].name}"
                    raise ConfigError(f"path {path!r} overlaps {other_path!r} of {owner} (teams.{ti}.paths.{pj}): "
                                      "an experiment belongs to exactly one team", file=file,
                                      key=f"teams.{i}.paths.{j}")
            claimed.append((path, i, j))
        if team.gpus is not None and team.max_gpus_per_run is not None and team.max_gpus_per_run > team.gpus:
            raise ConfigError(f"{team.max_gpus_per_run} is over the team's quota of {team.gpus} GPUs (such a run "
                              "could never start)", file=file, key=f"teams.{i}.max_gpus_per_run")
    _unshared(teams, file, "kubernetes", "namespace")
    _unshared(teams, file, "slurm", "account")
    workspaces: dict[str, int] = {}
    for i, team in enumerate(teams):
        first = workspaces.setdefault(team.mlflow_workspace(), i)
        if first != i:
            raise ConfigError(f"MLflow workspace {team.mlflow_workspace()!r} is team {teams[first].name}'s already: "
                              "each team has its own", file=file, key=f"teams.{i}.mlflow.workspace")


def _unshared(teams: Sequence[TeamIn], file: str, block: str, key: str) -> None:
    seen: dict[str, int] = {}
    for i, team in enumerate(teams):
        value = getattr(getattr(team, block), key, None)
        if value is None:
            continue
        first = seen.setdefault(value, i)
        if first != i:
            raise ConfigError(f"{key} {value!r} is team {teams[first].name}'s already (teams.{first}.{block}."
                              f"{key}): each team has its own", file=file, key=f"teams.{i}.{block}.{key}")
