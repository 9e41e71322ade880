"""The backend seam: observe, create, delete, logs. Every backend passes tests/contract/ suite.

Writes are idempotent by the deterministic object name: creating a name that exists with the same spec hash
succeeds, deleting a name that is gone succeeds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from expctl.core.model import Launch, ObservedRun
from expctl.core.quota import EnforcedQuotas
from expctl.core.team_platform import Team


@runtime_checkable
class Backend(Protocol):
    name: str

    def observe(self) -> list[ObservedRun]:
        """Every object this backend manages (all attempts), with its phase."""
        ...

    def create(self, launch: Launch) -> None:
        """Start one attempt; an existing object with the same name and spec hash counts as success."""
        ...

    def delete(self, name: str) -> None:
        """Stop and remove one object; a missing object counts as success."""
        ...

    def cancel(self, name: str, by: str) -> None:
        """Stop one object and mark it cancelled durably, so that apply does not relaunch it."""
        ...

    def logs(self, name: str, replica: str | None = None, follow: bool = False) -> Iterator[str]:
        """Lines of the object's logs (one replica, or all with a prefix)."""
        ...


@runtime_checkable
class ReplicaNames(Protocol):
    """An optional capability: a backend that names a run's replicas (what ``logs(name, replica=...)`` accepts)."""

    def replicas(self, name: str) -> list[str]: ...


@runtime_checkable
class Releases(Protocol):
    """An optional capability: a backend that holds a pipeline's consumer until its upstream succeeded
    (``ObservedRun.held_by``) and releases it when asked (False: not held any more)."""

    def release(self, name: str) -> bool: ...


@runtime_checkable
class ProducesOutputs(Protocol):
    """An optional capability: a backend whose jobs write ``outputs:`` into a directory expctl can read (this
    machine's, or a shared file system), so the apply that sees a run succeed records what it wrote."""

    def output_dir(self, name: str) -> str | None:
        """The output directory of the attempt ``name`` (None: none here)."""
        ...


@runtime_checkable
class UploadsOutputs(Protocol):
    """An optional capability: a backend whose producer jobs store their ``outputs:`` as artifacts of their own
    MLflow run (Kubernetes: no directory expctl reads), so the apply records the dataset from the run."""

    def uploads_outputs(self, name: str) -> bool:
        """Whether the attempt ``name`` stored its outputs on its run (``expctl/outputs/<NAME>/``)."""
        ...


@runtime_checkable
class EnforcesQuotas(Protocol):
    """An optional capability: a backend whose scheduler may enforce some teams' GPU quotas itself (Slurm with
    accounting: the team's QOS). The plan does not hold those teams' runs; it asks once per command."""

    def enforced_quotas(self, teams: Sequence[Team]) -> EnforcedQuotas: ...
