"""What the tests share; no test module imports another test module, they all import from here. Fixtures stay in
the ``conftest.py`` files and are built from these.

Domain values and fakes (unit tests): ``factories`` (specs, jobs, launches), ``fakes`` (the in-memory backend
and tracker — the only fakes).

Real things, driven: ``gitrepo`` (a git repository in a temporary directory), ``e2e`` (a project of this
repository's conf/ and training/ and ``expctl`` run as a process), ``cli`` (``expctl`` run in-process),
``mlflow_server``, ``mlflow_auth_server`` (basic auth and workspaces), ``slurm_cluster``,
``kube_cluster`` (a kube-apiserver + etcd with the Kubeflow CRDs),
``kube_driver`` (playing the training operator), ``kube_project`` and ``kube_cli`` (projects on the Kubernetes
backend), ``local_driver`` (the local backend's contract driver), ``proxy`` (the HTTP(S) proxy that counts
requests and injects faults), ``forked_cli`` (the command line in a forked process, for crash trials).

Tables and steps some test files share: ``bad_input`` (the hostile-input table's case and check),
``settling`` (sweeps, waits and paging of the settling tests).

Programs run as processes: ``jobs/`` (training jobs, copied into a test's repository or run by path),
``local_creator``, ``registry_probe`` and ``hydra_multirun`` (``python -m tests.support.<name>``).
"""
