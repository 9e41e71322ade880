"""A git commit becomes desired runs: the user-input boundary.

- ``source``: read experiments, ``conf/`` and ``expctl.yaml`` from a commit (or the working tree).
- ``safe_yaml``: the one YAML loader (bounded, strict); ``prescan``: every config file parsed before Hydra,
  resolvers that are not allow-listed refused with file and key.
- ``compose``: Hydra's Compose API and override parser (the only Hydra/OmegaConf importer); ``sweep_axes``:
  a sweep's axes as data, a point's values set on a composition (pure).
- ``schema``, ``schema_data``, ``schema_inputs``, ``schema_types``: strict pydantic models of the ``expctl``
  block, its ``data:`` and ``inputs:`` blocks and ``expctl.yaml`` (with the backends' own settings blocks,
  found through the registry).
- ``schema_teams``: the ``teams:`` block (paths, members, placement, GPU quota) and its checks across teams;
  ``codeowners``: ``.github/CODEOWNERS`` from the teams (pure), and validate's check of the committed one.
- ``job_spec``: a validated block → the domain ``JobSpec``; ``team_placement``: its team's binding placement and
  GPU limits.
- ``desired_state``: snapshot → settings → compose → sweep → RunSpecs, every error at once; a backend's own
  checks of the runs come through ``core.backend_registry`` (config imports no backend).
- ``spec_cache``: the spec hash and config of each run composed at a commit, kept in ``.expctl/cache/specs``
  for ``describe`` (used only when made from the same commit and code).
"""
