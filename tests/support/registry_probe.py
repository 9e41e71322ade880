"""Prints which backend modules (and the Kubernetes client) importing the registry and the settings schema
pulled in: ``python -m tests.support.registry_probe`` must print ``[]`` (backends are imported lazily)."""

import sys

import expctl.config.schema
import expctl.core.backend_registry as registry

registry.names()
assert expctl.config.schema
print(sorted(m for m in sys.modules if m.startswith(("expctl.backends.", "kubernetes"))))
