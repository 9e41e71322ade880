"""A second expctl process creating local runs (``python -m tests.support.local_creator STATE REPO COMMIT WHO``):
two of these share one state directory to prove the file lock serialises processes."""

import pathlib
import sys

from expctl.backends.local.backend import LocalBackend
from expctl.core.model import JobKind
from tests.support.factories import make_job, make_launch, make_spec


def main(state: str, repo: str, commit: str, who: str) -> None:
    backend = LocalBackend(pathlib.Path(state), pathlib.Path(repo), parallelism=1)
    for i in range(3):
        job = make_job(JobKind.LOCAL, command=("sh", "-c", "sleep 0.5"))
        backend.create(make_launch(make_spec(f"{who}-{i}", job=job, commit=commit)))
        backend.observe()


if __name__ == "__main__":
    main(*sys.argv[1:5])
