"""The Kubernetes backend: Kubeflow training jobs on a cluster; the only importer of the Kubernetes client.

``backend`` (``KubernetesBackend``), ``manifests/`` (pure: a ``Launch`` → its job's manifest, one module per
API family, a producer's output directory and uploader, plus the checks of desired runs), ``upload_outputs`` (the
stdlib program a producer's pod runs: its command, then its files onto its MLflow run), ``status`` (pure: a
live object → ``ObservedRun``), ``lease``
(the apply lock as a Lease), ``retry`` (throttling and retries; the only tenacity importer), ``pods`` and
``logs`` (a job's pods and their logs), ``gate`` (pure: a pipeline's consumer held until its upstream succeeded,
and its release), ``kubeconfig`` (why a kubeconfig could not be loaded), ``settings`` (the ``kubernetes:``
block of ``expctl.yaml``), ``team_objects`` (pure: the teams' Namespace, ServiceAccount, RBAC, ResourceQuota
and Kueue queues as objects), ``team_reconcile`` (``expctl teams apply``'s observe and write), ``kueue`` (why
Kueue holds a pending job, read from its Workload's ``QuotaReserved`` condition), ``connect`` (the API client of a
kubeconfig, and the apiserver's health check), ``script_configmap`` (the git-sync script's ConfigMap, created once
per namespace before its jobs).
"""
