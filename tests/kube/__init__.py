"""Tests of the Kubernetes backend against a real kube-apiserver (conftest.py; tests/support/kube_cluster.py)."""
