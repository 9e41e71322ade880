"""A real git repository in a temporary directory, for tests that read experiments from commits."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ENV = {
    "GIT_AUTHOR_NAME": "Ada Lovelace", "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace", "GIT_COMMITTER_EMAIL": "ada@example.com",
}


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.mkdir(parents=True, exist_ok=True)
        self.git("init", "-q", "-b", "main")

    def git(self, *args: str) -> str:
        import os

        out = subprocess.run(["git", "-C", str(self.path), *args], check=True, capture_output=True,
                             text=True, env={**os.environ, **ENV})
        return out.stdout.strip()

    def write(self, rel: str, text: str) -> Path:
        target = self.path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        return target

    def remove(self, rel: str) -> None:
        target = self.path / rel
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink()

    def commit(self, message: str = "change", author: str | None = None) -> str:
        self.git("add", "-A")
        args = ["commit", "-q", "--allow-empty", "-m", message]
        if author:
            args += ["--author", author]
        self.git(*args)
        return self.git("rev-parse", "HEAD")

    @property
    def head(self) -> str:
        return self.git("rev-parse", "HEAD")

    def add_training(self) -> str:
        """Copy the project's example training package into the repository and commit it."""
        shutil.copytree(ROOT / "training", self.path / "training",
                        ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
        return self.commit("add training code")

    def copy_examples(self, *, chain: bool = False) -> None:
        """This project's own conf/, experiments/, expctl.yaml and training code; the demo's two-stage chain
        (``CHAIN``: pretrain → finetune, which waits for a promotion) only with ``chain``."""
        skipped = () if chain else CHAIN
        for name in ("conf", "experiments", "training"):
            if (ROOT / name).exists():
                shutil.copytree(ROOT / name, self.path / name, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("__pycache__", *skipped))
        shutil.copy(ROOT / "expctl.yaml", self.path / "expctl.yaml")


CHAIN = ("pretrain.yaml", "finetune.yaml")  # experiments/: the demo's pipeline (docs/pipelines.md)

MINIMAL_CONF = {
    "conf/config.yaml": "defaults:\n  - model: small\n  - _self_\nseed: 0\noptimizer:\n  lr: 0.1\n"
                        "  momentum: 0.9\nexpctl:\n  kind: PyTorchJob\n",
    "conf/model/small.yaml": "name: small\nwidth: 8\n",
    "conf/model/large.yaml": "name: large\nwidth: 64\n",
    "conf/model/huge.yaml": "name: huge\nwidth: 512\n",
    "conf/dataset/a.yaml": "name: a\n",
    "conf/dataset/b.yaml": "name: b\n",
    "code/train.py": "print('train')\n",
    "expctl.yaml": "code_paths: [code]\n",
}


def minimal_repo(path: Path, experiments: dict[str, str]) -> GitRepo:
    repo = GitRepo(path)
    for rel, text in {**MINIMAL_CONF, **experiments}.items():
        repo.write(rel, text)
    repo.commit("initial")
    return repo
