"""expctl's error hierarchy: every user-facing failure is one of these, printed as one line by the CLI.

Library exceptions (Hydra, OmegaConf, kubernetes, MLflow, git) are wrapped at their boundary,
chained with ``from`` so that ``EXPCTL_DEBUG=1`` still shows where they came from.
"""

from __future__ import annotations


class ExpctlError(Exception):
    """A failure the user can act on. ``str()`` is the one-line message."""

    exit_code = 1

    def __init__(self, message: str, *, file: str | None = None, key: str | None = None) -> None:
        self.message = message
        self.file = file
        self.key = key
        super().__init__(self.render())

    def render(self) -> str:
        where = ": ".join(part for part in (self.file, self.key) if part)
        return f"{where}: {self.message}" if where else self.message


class ConfigError(ExpctlError):
    """A committed config is wrong: YAML, composition, sweep, or the expctl block."""


class ConfigErrors(ExpctlError):
    """Several config errors at once: validation reports all of them."""

    def __init__(self, errors: list[ConfigError]) -> None:
        self.errors = errors
        super().__init__("\n".join(e.render() for e in errors))


class SourceError(ExpctlError):
    """The git repository or revision cannot be read."""


class BackendError(ExpctlError):
    """A backend (local processes, Kubernetes, Slurm) refused or failed an operation."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached at all (connection refused or timed out, 5xx/429 after every retry, the
    Slurm controller not answering): an apply stops starting changes instead of failing each one slowly."""


class TrackingError(ExpctlError):
    """The MLflow tracking store is unreachable or refused an operation."""


class StalePlanError(ExpctlError):
    """A saved plan no longer matches what is observed."""


class LockError(ExpctlError):
    """Another apply holds the lock."""


def truncate(text: str, limit: int = 300) -> str:
    """One line, at most ``limit`` characters: for server payloads quoted in messages."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"
