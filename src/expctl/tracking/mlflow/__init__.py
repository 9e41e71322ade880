"""The MLflow tracker, in MLflow's own store shape: plumbing, features on it, a facade over them.

- ``session``: the plumbing — the client, bounded calls, experiment ids, searches, tag writes, and the
  ledger's bookkeeping (``touched``, ``from_ledger``), as a typed public API (``MlflowSession``).
- Features, each taking a session and importing no other feature (except ``sync`` and ``inputs`` → ``promote``):
  ``runs`` (find-or-create), ``audit``, ``ledger`` (settled runs), ``sync`` (phases → status, the gate),
  ``promote`` (registry and aliases), ``lineage``, ``logs`` (kept logs), ``checkpoints``, ``results``
  (what ``expctl report`` reads), ``datasets`` (dataset inputs), ``outputs`` (the datasets runs produced, on
  their runs), ``inputs`` (which registered version a pipeline's model input names), ``ui`` (what the UI
  shows).
- ``store``: ``MlflowStore``, the facade: the ``Tracker`` methods, composed from the features.
- ``team_stores``: ``TeamStores``, the Tracker when each team's runs are in its own MLflow workspace (one
  ``MlflowStore`` per workspace, views merged, requests routed by experiment or run); ``team_client``: MLflow's
  client bound to a workspace, and moving aliases as a team's job identity.
- Pure helpers: ``tags`` (the MLflow value codec: tags, params, statuses, limits), ``ledger_codec``,
  ``provenance``, ``links``, ``run_index``; edges: ``rest_search`` (plain REST reads, no MLflow import),
  ``sqlite_search`` (the embedded store's searches read from its file, no MLflow import), ``sqlite_registry``
  (the registry and artifact reads of ``lineage`` from that file and the local artifact directory),
  ``http_bounds`` (MLflow's retry loop bounded), ``sqlite`` (the embedded store's settings), ``locations``.
- Teams in MLflow (``expctl teams plan/apply``; no MLflow import): ``teams_access_plan`` (pure: each team's
  workspace, role, members and job identity against what the server holds), ``teams_access`` (the REST
  reconciler, as the platform's admin), ``job_secrets`` (the job identities' secret store, and a job's
  environment or Kubernetes Secret from it).
"""
