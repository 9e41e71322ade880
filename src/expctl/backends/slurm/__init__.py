"""The Slurm backend: one ``sbatch`` job per attempt, ``srun`` one task per node, GPUs by ``--gres``.

``backend`` (``SlurmBackend``: Slurm's CLIs), ``script`` (pure: sbatch options, the batch script, the state
map of ``squeue --json``), ``record`` (the durable record of each job), ``settings`` (the ``slurm:`` block).
"""
