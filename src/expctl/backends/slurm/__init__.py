"""The Slurm backend: one ``sbatch`` job per attempt, ``srun`` one task per node, GPUs by ``--gres``.

``backend`` (``SlurmBackend``: Slurm's CLIs), ``script`` (pure: sbatch options, the batch script, the state
map of ``squeue --json``), ``record`` (the durable record of each job), ``settings`` (the ``slurm:`` block),
``accounting`` (teams on Slurm: partitions checked, accounts/QOS/associations reconciled with ``sacctmgr``),
``accounting_plan`` (pure: those ``sacctmgr`` changes from desired teams and what Slurm lists), ``qos_quota``
(whose GPU quota a team's QOS enforces, so the plan leaves its runs to Slurm) and ``team_reconcile``
(``expctl teams plan/apply``'s seam over ``accounting``).
"""
