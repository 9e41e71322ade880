"""Backends run jobs and report what exists: one folder per backend, each behind one small Protocol.

- ``base``: the ``Backend`` Protocol every backend keeps (``tests/contract/backend_suite.py`` proves it).
- ``local/``: each replica a subprocess here (``backend``, ``state``, ``table``, ``procs``, ``logs``, ``gpus``).
- ``kubernetes/``: Kubeflow training jobs (``backend``, ``lease``, ``pods``, ``logs``, ``retry``, ``status``),
  ``manifests/`` (pure rendering, and ``checks`` of desired runs), the only ``kubernetes`` importers.
- ``slurm/``: one batch job per attempt (``backend``; ``script`` pure; ``record``, its durable records).
- each backend's ``settings``: the model of its block of ``expctl.yaml`` (light: ``config.schema`` loads it).
- shared, so that no backend imports another (an import-linter contract): ``files`` (atomic JSON, exit
  records, log offsets), ``job_record`` (the identity local's and Slurm's records start with), ``locks``,
  ``worktrees``.

Which backends exist, and what each declares, is ``core.backend_registry``: the only place that names them.
"""
