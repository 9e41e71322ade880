"""The ``kubernetes:`` block of ``expctl.yaml`` (a strict model, named by ``core.backend_registry``): the
default namespace, the kubeconfig context, where jobs clone the code from, the Secrets they get, and the client's
request rate. Light: it imports no Kubernetes client (``expctl validate`` reads it)."""

from __future__ import annotations

from pydantic import Field, field_validator

from expctl.config.schema_types import BackendSettings, Label, Name, Text, Word
from expctl.core.sanitize import uri_secrets


class KubernetesIn(BackendSettings):
    namespace: Label = "default"
    context: Text | None = None
    repo_url: Word | None = None
    git_secret: Name | None = None
    tracking_secret: Name | None = None  # a Secret whose keys every training container gets as variables
    image: Word = "python:3.11-slim"
    git_image: Word = "alpine/git:2.45.2"
    qps: float = Field(5.0, gt=0, le=10_000)
    burst: int = Field(10, ge=1, le=10_000)

    @field_validator("repo_url")
    @classmethod
    def _no_credentials(cls, url: str | None) -> str | None:
        # the clone URL is a value in every manifest (and the git-sync log): a token in it would be readable by
        # whoever may read the jobs; the Secret of git_secret is mounted into git-sync alone
        if url and uri_secrets(url):
            raise ValueError("holds a credential (a password or token in the URL): every manifest would carry "
                             "it; give the URL without it and the credentials as the Secret named by git_secret")
        return url


def kubernetes_settings(settings: object) -> KubernetesIn:
    """The ``kubernetes:`` block of a project's settings."""
    return KubernetesIn.of(settings, "kubernetes")
