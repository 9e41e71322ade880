"""The local backend: each replica a subprocess on this machine, in a checkout of the run's pinned commit.

``backend`` (``LocalBackend``: observe, create, delete, logs), ``state`` (one JSON state file per run),
``table`` (started and queued runs between two holds of the state lock), ``procs`` (the replica processes and
how each ended), ``gpus`` (the GPU inventory and gang placement), ``logs`` (reading and following replica
logs), ``settings`` (the ``local:`` block of ``expctl.yaml``).
"""
