"""The git-sync clone script, run for real with ``sh`` against a local bare repository made with git: from a file
holding its ConfigMap's data (as a v1 job's init container runs it), and inline (as a TrainJob runtime holds it)."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
from pathlib import Path

import pytest

from expctl.backends.kubernetes.manifests import gitsync
from expctl.backends.kubernetes.manifests.common import git_sync_configmap
from expctl.backends.kubernetes.manifests.gitsync import clone_script


def git(*args: str, cwd: Path) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def origin(tmp_path: Path) -> tuple[Path, list[str]]:
    """A bare repository whose main branch has three commits; returns it and the commit ids (oldest first)."""
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", "-b", "main", cwd=work)
    commits = []
    for i in range(3):
        (work / "train.py").write_text(f"print('version {i}')\n")
        (work / f"file{i}.txt").write_text(str(i))
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"commit {i}", cwd=work)
        commits.append(git("rev-parse", "HEAD", cwd=work))
    bare = tmp_path / "origin.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=tmp_path)
    return bare, commits


def run_script(repo: str, commit: str, target: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {
        "PATH": os.environ["PATH"],
        "HOME": str(target.parent),
        "TMPDIR": str(target.parent),
        "EXPCTL_GIT_REPO": repo,
        "EXPCTL_GIT_COMMIT": commit,
        "EXPCTL_CODE_DIR": str(target),
        **env,
    }
    mounted = target.parent / "git-sync"  # what the ConfigMap's volume shows the init container
    mounted.mkdir(exist_ok=True)
    for key, text in git_sync_configmap("ns")["data"].items():
        (mounted / key).write_text(text)
    command = [arg.replace(gitsync.SCRIPT_DIR, str(mounted)) for arg in gitsync.script_command()]
    return subprocess.run(command, env=full_env, capture_output=True, text=True, timeout=60, check=False)


@pytest.mark.parametrize("url_form", ["file", "path"])
def test_checks_out_exactly_the_pinned_commit_after_the_branch_moved_on(
    origin: tuple[Path, list[str]], tmp_path: Path, url_form: str
) -> None:
    bare, commits = origin
    pinned = commits[0]  # main has moved on by two commits since
    url = f"file://{bare}" if url_form == "file" else str(bare)
    target = tmp_path / "code"
    proc = run_script(url, pinned, target)
    assert proc.returncode == 0, proc.stderr
    assert git("rev-parse", "HEAD", cwd=target) == pinned
    assert git("status", "--porcelain", "--untracked-files=all", cwd=target) == ""
    assert (target / "train.py").read_text() == "print('version 0')\n"
    assert not (target / "file1.txt").exists()


def test_rerun_in_the_same_directory_is_clean(origin: tuple[Path, list[str]], tmp_path: Path) -> None:
    """An init container restarted after a partial run (a dirty or different checkout) converges."""
    bare, commits = origin
    target = tmp_path / "code"
    assert run_script(str(bare), commits[2], target).returncode == 0
    (target / "train.py").write_text("tampered\n")
    (target / "stray.txt").write_text("left over")
    proc = run_script(str(bare), commits[1], target)
    assert proc.returncode == 0, proc.stderr
    assert git("rev-parse", "HEAD", cwd=target) == commits[1]
    assert git("status", "--porcelain", "--untracked-files=all", "--ignored", cwd=target) == ""


def test_falls_back_to_a_full_fetch_when_the_server_refuses_a_commit_id(
    origin: tuple[Path, list[str]], tmp_path: Path
) -> None:
    bare, commits = origin
    git("config", "uploadpack.allowAnySHA1InWant", "false", cwd=bare)
    git("config", "uploadpack.allowReachableSHA1InWant", "false", cwd=bare)
    target = tmp_path / "code"
    # protocol v0 makes upload-pack refuse unadvertised commit ids
    env = {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "protocol.version", "GIT_CONFIG_VALUE_0": "0"}
    proc = run_script(f"file://{bare}", commits[0], target, **env)
    assert proc.returncode == 0, proc.stderr
    assert "fetching all" in proc.stdout
    assert git("rev-parse", "HEAD", cwd=target) == commits[0]


def test_unknown_commit_fails(origin: tuple[Path, list[str]], tmp_path: Path) -> None:
    bare, _ = origin
    proc = run_script(str(bare), "1" * 40, tmp_path / "code")
    assert proc.returncode != 0


def test_missing_settings_fail_with_a_message(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["sh", "-c", clone_script()],
        env={"PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode != 0 and "EXPCTL_GIT_REPO is not set" in proc.stderr


def test_credentials_helper_reads_the_mounted_secret(origin: tuple[Path, list[str]], tmp_path: Path) -> None:
    bare, commits = origin
    secrets = tmp_path / "secret"
    secrets.mkdir()
    (secrets / "username").write_text("bot")
    (secrets / "password").write_text("s3cr3t")
    target = tmp_path / "code"
    proc = run_script(str(bare), commits[0], target, EXPCTL_GIT_SECRET_DIR=str(secrets))
    assert proc.returncode == 0, proc.stderr
    helper = git("config", "credential.helper", cwd=target)
    out = subprocess.run(
        [helper, "get"],
        check=True,
        env={**os.environ, "EXPCTL_GIT_SECRET_DIR": str(secrets)},
        capture_output=True,
        text=True,
    )
    assert out.stdout == "username=bot\npassword=s3cr3t\n"
    assert "s3cr3t" not in (target / ".git" / "config").read_text()


def test_script_survives_kubernetes_command_expansion() -> None:
    """Kubernetes rewrites ``$(NAME)`` and ``$$`` in a container command; the script must contain neither."""
    script = clone_script()
    assert "$$" not in script
    assert not re.search(r"\$\([A-Za-z_][A-Za-z0-9_]*\)", script)


def test_the_configmap_is_named_by_the_script_digest() -> None:
    """A changed script is a new ConfigMap (older jobs keep mounting theirs); the name is a valid object name."""
    cm = git_sync_configmap("ml")
    digest = hashlib.sha256(clone_script().encode()).hexdigest()[:8]
    assert cm["metadata"] == {"name": f"expctl-git-sync-{digest}", "namespace": "ml",
                              "labels": {"expctl.io/managed-by": "expctl"}}
    assert cm["data"] == {"git-sync.sh": clone_script()} and gitsync.configmap_name() == cm["metadata"]["name"]
