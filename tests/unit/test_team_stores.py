"""``TeamStores`` routes each request to its team's MLflow workspace (pure routing, on in-memory stores from
``tests/support/fakes.py``; the real server is ``tests/integration/test_team_workspaces.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from expctl.core.errors import TrackingError
from expctl.tracking.mlflow.team_stores import DEFAULT, TeamStores
from tests.support.factories import make_spec
from tests.support.fakes import FakeWorkspaceStore

TEAMS = {"vision/resnet": "vision", "nlp/bert": "language"}


def stores() -> tuple[TeamStores, dict[str | None, FakeWorkspaceStore]]:
    made: dict[str | None, FakeWorkspaceStore] = {}

    def make(workspace: str | None) -> Any:
        made[workspace] = FakeWorkspaceStore(workspace)
        return made[workspace]
    return TeamStores(make, ["vision", "language"], TEAMS.get), made


def test_a_run_is_created_in_its_teams_workspace_with_that_workspaces_part_of_the_view() -> None:
    router, made = stores()
    view = router.view()
    ref = router.ensure_run(make_spec("vision/resnet"), 1, "ci", view)
    assert ref.run_id.startswith("vision-") and made["vision"].views_given == [view.index["vision"]]
    other = router.ensure_run(make_spec("misc/x"), 1, "ci", view)  # of no team: the default workspace
    assert other.run_id.startswith("default-") and made[None].views_given == [view.index[DEFAULT]]
    assert [r.experiment for r in router.view().records] == ["misc/x", "vision/resnet"]


def test_a_request_about_one_run_goes_to_the_workspace_that_holds_it() -> None:
    router, made = stores()
    created = made["language"].ensure_run(make_spec("nlp/bert"), 1, "ci")  # another process's: not in a view here
    router.mark_killed(created.run_id, by="olga")  # asked in turn: the default and vision refuse it
    assert made["language"].killed == [created.run_id] and not made["vision"].killed and not made[None].killed
    with pytest.raises(TrackingError, match="RESOURCE_DOES_NOT_EXIST"):
        router.mark_killed("language-run9999")  # no workspace holds it


def test_sync_splits_observed_and_desired_runs_by_workspace() -> None:
    router, made = stores()
    vision, nlp = make_spec("vision/resnet"), make_spec("nlp/bert")
    for spec in (vision, nlp):
        router.ensure_run(spec, 1, "ci")
    seen: dict[str, list[str]] = {}
    for key, store in made.items():
        def sync(observed: Any, desired: Any, view: Any = None, key: str | None = key) -> None:
            seen[str(key)] = sorted(s.experiment for s in [*observed, *desired])
        store.sync = sync  # type: ignore[method-assign]
    router.sync(router.view().records, [vision, nlp])
    assert seen == {"vision": ["vision/resnet", "vision/resnet"], "language": ["nlp/bert", "nlp/bert"]}


def test_a_model_is_looked_for_in_the_team_workspaces_first_then_the_default() -> None:
    router, made = stores()
    made[None].models["clf@champion"] = "default's"
    made["language"].models["clf@champion"] = "language's"
    assert router.model_version("clf@champion") == "language's"  # type: ignore[arg-type]
    assert router.model_version("none@champion") is None  # type: ignore[arg-type]


def test_the_router_has_every_capability_the_one_store_has() -> None:
    """The engine asks a tracker what it can (``isinstance`` of ``tracking.base``'s protocols): a capability the
    one store has and the router lacked would be silently skipped once teams are in workspaces."""
    import inspect

    from expctl.tracking import base
    from expctl.tracking.mlflow.store import MlflowStore

    router, _ = stores()
    capabilities = [c for _, c in inspect.getmembers(base, inspect.isclass)
                    if getattr(c, "_is_runtime_protocol", False)]
    assert capabilities, "no runtime protocols found in tracking.base"
    for capability in capabilities:
        members = {m for m in [*vars(capability), *getattr(capability, "__annotations__", {})] if not m.startswith("_")}
        if all(hasattr(MlflowStore, m) for m in members - {"log_tail_bytes"}):  # an attribute of the instance
            assert isinstance(router, capability), capability.__name__
