"""What the Kubernetes backend refuses of desired runs, found by rendering them (pure, a few µs per run).

``render_errors`` is this backend's ``run_checks`` in ``core.backend_registry``: ``config.desired_state`` runs
every backend's checks through ``backend_registry.run_errors``, whatever the backend, so that whatever
``apply`` or ``render`` would refuse on any backend is refused by ``validate`` and ``plan`` first, before
anything is written.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

from expctl.backends.kubernetes.manifests import KINDS, render_manifest
from expctl.backends.kubernetes.manifests.common import kube_settings, namespaces
from expctl.core.errors import ConfigError
from expctl.core.model import Launch, RunSpec, TrackingRef

if TYPE_CHECKING:
    from expctl.config.schema import Settings

_ANNOTATIONS_MAX_BYTES = 256 * 1024  # the apiserver's limit on an object's annotations
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def render_errors(runs: Sequence[RunSpec], settings: Settings) -> list[ConfigError]:
    """Render every run's manifest as the Kubernetes backend would: one error per (file, key, message)."""
    ks = kube_settings(settings)
    allowed = namespaces(settings)
    found: dict[tuple[str, str | None, str], ConfigError] = {}

    def fail(run: RunSpec, key: str | None, message: str) -> None:
        found.setdefault((run.source_file, key, message), ConfigError(message, file=run.source_file, key=key))

    for run in runs:
        if run.job.kind not in KINDS:
            continue
        launch = Launch(spec=run, attempt=1, name=run.name,
                        tracking=TrackingRef(settings.tracking_uri or "", "0" * 32, run.experiment))
        try:
            manifest = render_manifest(launch, ks)
        except (ValueError, TypeError, KeyError) as exc:
            fail(run, "expctl", f"cannot render the {run.job.kind.value} manifest: {exc}")
            continue
        meta = manifest["metadata"]
        if meta["namespace"] not in allowed:
            fail(run, "expctl.namespace", f"namespace {meta['namespace']!r} is not one expctl may write to "
                                          f"(expctl.yaml allows: {', '.join(allowed)})")
        size = sum(len(k) + len(v.encode()) for k, v in meta.get("annotations", {}).items())
        if size > _ANNOTATIONS_MAX_BYTES:
            fail(run, "hydra.sweeper.params", f"the run's overrides are too long for Kubernetes annotations "
                                              f"({size:,} bytes, limit {_ANNOTATIONS_MAX_BYTES:,})")
        for label, value in meta.get("labels", {}).items():
            if len(value) > 63 or not _LABEL_VALUE.match(value):
                fail(run, None, f"label {label}={value!r} is not a valid Kubernetes label value")
    return list(found.values())
