"""Training jobs of the tests, as files: each is either copied into the git repository a test builds (as a
project's own training code would be: ``source("quick")`` becomes ``training/quick.py``) or run where it is
(``[python, path("print_job_env")]``). Standard library only, unless the job is about MLflow or a model."""

from __future__ import annotations

from pathlib import Path

DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """The file of job ``name`` (to run it by its path: a job's working directory is its run's worktree)."""
    return DIR / f"{name}.py"


def source(name: str) -> str:
    """The source of job ``name`` (to write it into a test's repository)."""
    return path(name).read_text()
