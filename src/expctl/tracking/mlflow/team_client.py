"""MLflow's client for one team: every call in the team's workspace (``InWorkspace``), and aliases moved as the
team's job identity (``TeamAliases``). MLflow's client takes the workspace from a context variable (or the
process-wide ``MLFLOW_WORKSPACE``) and its credentials from the process environment only, so two teams' stores in
one process set the workspace around each call, and an alias move goes through plain REST as the identity."""

from __future__ import annotations

from typing import Any

from expctl.tracking.mlflow.rest_search import RestSearch


class InWorkspace:
    """An ``MlflowClient`` whose every call is made in one MLflow workspace: MLflow's client takes the workspace
    from a context variable (or the process-wide ``MLFLOW_WORKSPACE``), so two teams' stores in one process set
    it around each call of theirs, in the calling thread, and never touch the environment."""

    def __init__(self, client: Any, workspace: str) -> None:
        self._client, self.workspace = client, workspace

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return found
        from mlflow.utils.workspace_context import ServerWorkspaceContext

        def in_workspace(*args: Any, **kwargs: Any) -> Any:
            with ServerWorkspaceContext(self.workspace):
                return found(*args, **kwargs)
        return in_workspace


class TeamAliases:
    """MLflow's client, but an alias is moved as the team's job identity (plain REST, in the store's workspace):
    the platform's reconciler registers a team's model, only the team moves its aliases."""

    def __init__(self, client: Any, rest: RestSearch) -> None:
        self._client, self._rest = client, rest

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._rest.post("registered-models/alias", {"name": name, "alias": alias, "version": str(version)},
                        f"move alias {name}@{alias} (as {self._rest.identity_name})")
