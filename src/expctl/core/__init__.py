"""The pure domain: standard library only, no process, network or database (an import-linter contract checks it);
reading files only through ``bounded`` and ``planfile``.

- ``model``: frozen values and enums — RunSpec, JobSpec, ObservedRun, Launch, Change, Plan, Action, Reason.
- ``naming``: run keys, RFC 1035 names, canonical JSON; ``desired``: spec hash and RunSpec of a sweep point,
  a training run's validation job; ``sweep``: expansion in Hydra's BasicSweeper order.
- ``diff``: pair desired and observed runs by key; ``plan_rules``: **the plan rules** (policy lives only here);
  ``quota``: starts beyond a team's GPU quota wait (where expctl decides who starts); ``team_platform``: the
  teams as plain data and the diff of their platform objects (``teams plan``);
  ``gate``: the validation gate's decision and promotion rules.
- ``inputs``: what an experiment consumes (``expctl.inputs``) and what that resolved to; ``pipeline``: the
  dependency graph of experiments (order, cycles, checks), ``each`` expansion, and the resolution of inputs
  against what is observed (a resolved upstream is part of the spec hash; an unresolvable one holds the run).
- ``audit``: the audit record of one apply; ``jobenv``: every variable a job gets, on every backend;
  ``project``: which repository's project a tracked run belongs to.
- ``views``: human / JSON / Markdown renderings of a plan; ``planfile``: a saved plan read back.
- ``report``: a commit's results as data and its judgements (best run, deltas); ``report_render``: them as
  bounded, escaped Markdown, one HTML page, or JSON.
- ``errors``: the error hierarchy (one line each); ``sanitize``: values made safe to print, credentials
  hidden; ``safe_json``: JSON expctl did not just write, read defensively; ``bounded``: the one reader of a file
  expctl did not just write (a regular file only, bounded in size, lines streamed); ``lock_wait``: every
  lock wait announced in one line naming the holder (the one file core writes: a lock's ``.holder`` note).
- ``backend_registry``: the table of backends — pure data with lazy ``"module:function"`` references, so every
  layer can name a backend's factory, checks and settings without importing it.
"""
