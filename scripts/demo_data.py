"""The data flow of `make demo`, in a scratch repository under .expctl/demo/data-flow (never this one's history).

Generates two batches of labelled synthetic samples on disk (Gaussian blobs, one file per sample in a folder
per label), trains on their union, lets the platform validate the model on the held-out split and promote the
champion, prints its lineage — then adds a third batch, commits the changed declaration, and plans: only the
runs that use the dataset are replaced ("data-changed").
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPCTL = [sys.executable, "-m", "expctl"]

EXPERIMENT = """# Trains on the files of conf/data/blobs-files.yaml; the platform validates on the held-out test split.
defaults:
  - config
  - data: blobs-files
  - _self_

trainer:
  epochs: 15

expctl:
  kind: local
  validation:
    metric: accuracy                 # the validation job's accuracy (validation.accuracy), not the training's
    threshold: 0.6
    split: test
    register_as: blobs-files-classifier
    promote: {alias: champion, when: better_than_current}
"""
UNRELATED = "# Does not use the dataset: adding a batch leaves it alone.\ndefaults:\n  - config\n  - _self_\n" \
            "expctl:\n  kind: local\n"


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Demo", "GIT_AUTHOR_EMAIL": "demo@example.com",
           "GIT_COMMITTER_NAME": "Demo", "GIT_COMMITTER_EMAIL": "demo@example.com"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, env=env, capture_output=True)


def make_batch(root: Path, batch: str, samples: int, seed: int) -> None:
    """``samples`` files under <root>/blobs/<batch>/<label>/: 4 classes around fixed centres, seeded noise."""
    centres = random.Random(0)
    means = [[centres.gauss(0, 1) for _ in range(16)] for _ in range(4)]
    rng = random.Random(seed)
    for i in range(samples):
        label = rng.randrange(4)
        folder = root / "blobs" / batch / f"class{label}"
        folder.mkdir(parents=True, exist_ok=True)
        values = [m + rng.gauss(0, 2.2) for m in means[label]]
        (folder / f"{batch}-{i:04d}.txt").write_text(",".join(f"{v:.5f}" for v in values) + "\n")


def expctl(repo: Path, title: str, *args: str, check: bool = True) -> None:
    print(f"\n$ expctl {' '.join(args)}   # {title}", flush=True)
    code = subprocess.run([*EXPCTL, *args], cwd=repo, check=False).returncode
    if check and code not in (0, 2):
        sys.exit(f"demo: `expctl {' '.join(args)}` failed with exit code {code}")


def scratch_repo() -> Path:
    repo = ROOT / ".expctl" / "demo" / "data-flow"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    for name in ("conf", "training"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    (repo / "experiments").mkdir()
    (repo / "experiments" / "blobs-files.yaml").write_text(EXPERIMENT)
    (repo / "experiments" / "plain.yaml").write_text(UNRELATED)
    (repo / "expctl.yaml").write_text("backend: local\ncode_paths: [training]\ndata_root: data\n")
    (repo / ".gitignore").write_text(".expctl/\n/data/\n__pycache__/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "the data flow example")
    return repo


def main() -> None:
    repo = scratch_repo()
    data = repo / "data"
    print(f"\n== The data flow, in a scratch repository: {repo.relative_to(ROOT)}")
    make_batch(data, "b1", 300, seed=1)
    make_batch(data, "b2", 300, seed=2)
    print("generated data/blobs/b1 and data/blobs/b2: 600 labelled samples in folders class0..class3")
    expctl(repo, "the dataset is materialized into a manifest", "plan")
    expctl(repo, "train on the union, then validate on the held-out split", "apply", "-y", "--wait",
           "--timeout", "900")
    expctl(repo, "where the champion came from", "lineage", "blobs-files-classifier@champion")
    make_batch(data, "b3", 200, seed=3)
    declaration = repo / "conf" / "data" / "blobs-files.yaml"
    declaration.write_text(declaration.read_text().replace(
        "  - {name: b2, source: blobs/b2}\n", "  - {name: b2, source: blobs/b2}\n  - {name: b3, source: blobs/b3}\n"))
    git(repo, "commit", "-q", "-am", "blobs-files: add batch b3")
    print("\ngenerated data/blobs/b3 and committed the declaration with batch b3")
    expctl(repo, "only the runs that use the dataset are replaced", "plan")


if __name__ == "__main__":
    main()
