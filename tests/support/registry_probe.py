"""Prints which backend modules (and the Kubernetes client) importing the registry and the settings schema
pulled in beyond the backends' settings models: ``python -m tests.support.registry_probe`` must print ``[]``
(backends are imported lazily; ``config.schema`` loads only each backend's light ``settings`` module)."""

import sys

import expctl.config.schema
import expctl.core.backend_registry as registry

registry.names()
assert expctl.config.schema
settings = {info.settings.partition(":")[0] for info in registry.BACKENDS.values() if info.settings}
allowed = settings | {module.rpartition(".")[0] for module in settings}  # and their (empty) packages
assert settings <= set(sys.modules), "Settings is built from every backend's settings model"
print(sorted(m for m in sys.modules if m.startswith(("expctl.backends.", "kubernetes")) and m not in allowed))
