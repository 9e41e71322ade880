"""Which project a tracked run belongs to: two repositories on one tracking server stay apart.

Pure: no I/O. A *project* is the identity of a repository: ``expctl.yaml``'s ``project:`` when declared, else
the label every run already names its source by (``mlflow.source.name = "<label>#<file>"``: the public remote
URL, or the repository's directory name). Runs, sweep parents, audit records and registered versions written
since carry it as the tag ``expctl.project``. ``owned`` says whether a run (its tags) is the project's: runs of
an older expctl, which lack the tag, are the project's when their source names the repository's label, and a
project declared later keeps its runs (those tagged with the derived label, and those of older expctl). A run
naming no repository in its source (no ``#``) is everyone's, as it always was. ``label_value`` is the project
as a Kubernetes label value.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

TAG = "expctl.project"
PATTERN = r"^[a-z0-9][a-z0-9._/-]{0,99}$"  # a declared project (``expctl.yaml: project:``)


def owned(tags: Mapping[str, str], project: str | None, legacy_label: str | None) -> bool:
    """Whether a run with ``tags`` belongs to ``project`` (None: a reader of every project's runs), whose
    runs of an older expctl name ``legacy_label`` (the repository's derived label) as their source."""
    if project is None:
        return True
    if TAG in tags:  # the derived label too: a project declared later keeps the runs tagged before
        return tags[TAG] in (project, legacy_label)
    source = tags.get("mlflow.source.name", "")
    if "#" not in source:
        return True
    return legacy_label is not None and source.startswith(f"{legacy_label}#")


def label_value(project: str) -> str:
    """The project as a Kubernetes label value (any project id fits: a digest)."""
    return hashlib.sha256(project.encode()).hexdigest()[:16]
