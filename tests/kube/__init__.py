"""Tests of the Kubernetes backend against a real kube-apiserver (see conftest.py)."""
