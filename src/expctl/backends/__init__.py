"""Backends run jobs: local processes or Kubeflow training jobs. All share one small Protocol."""
