"""The use cases: what each command does, end to end, and the composition root that opens the edges.

- ``workspace``: where expctl works (repository, state directory, tracking URI) and **the only constructor of
  backends and of the MLflow store** (``open_backend``, ``open_tracker``, ``open_store``).
- ``plan``: compute a plan end to end (``expctl plan``): desired runs from git, observed runs from a backend
  joined with the tracker's view.
- ``apply``: ``expctl apply`` and ``--wait``: lock → observe → plan → confirm → audit → writes → wait.
- ``writes``: a plan's writes in a bounded pool (deletes first; find-or-create the MLflow run, then the job).
- ``wait``: where each desired run stands while ``--wait`` polls, and when waiting is over.
- ``resume``: which checkpoint a retried attempt starts from.
- ``outputs``: the datasets runs produced (``outputs:``), recorded by the apply that sees the producer succeed.
- ``logs``: finished runs' log tails kept in the tracker; ``logs`` reads live or kept.
- ``operate``: status, cancel, describe, history, UI links, lineage (the operator commands' library).
- ``pipeline_view``: what the operator commands show of pipelines: held runs (``status``), a run's inputs and
  dependents (``describe``), an experiment's dependents (``cancel --cascade``).
- ``cancel_journal``: cancels MLflow does not know yet (it failed after the job was stopped), replayed by the
  next cancel or apply: recorded exactly once.
- ``teams``: ``teams codeowners`` and ``teams status``; ``team_platform``: ``teams plan`` / ``teams apply``
  (lock, audit, ``--prune``) over each backend's reconciler of the teams' platform objects (the seam);
  ``team_mlflow``: their MLflow side (workspaces, roles, job identities) when the teams declare ``mlflow:``.
- ``identity``: who acts (the commit author, the CI actor, the local user).
- ``ui_server``: ``expctl ui``'s MLflow server child process.
- ``report``: ``expctl report``'s collection (desired runs at the commit and its parent ⋈ observed ⋈ tracked
  metrics, champion, kept logs); ``report_plots``: its plots (the only matplotlib importer);
  ``github_publish``: the report as a kept comment and a commit status (the only PyGithub importer).

Imports everything below it (backends, tracking, config, data, core); the CLI is its only importer.
"""
