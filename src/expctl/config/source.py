"""Read the desired state from git: a commit's (or the working tree's) experiments, conf and settings.

Everything is read from git objects, never from the checkout's files, so uncommitted edits cannot leak into
a plan. ``--worktree`` snapshots the working tree into a tree object (through a private index) and reads that.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from expctl.core.errors import SourceError

DESIRED_PATHS = ("conf", "experiments", "expctl.yaml", ".github/CODEOWNERS")


@dataclass(frozen=True)
class Snapshot:
    """A tree-ish to read from: a commit, or a tree made from the working tree."""

    repo: Path
    treeish: str  # what git reads files from
    commit: str  # the commit runs are pinned to (HEAD for a worktree snapshot)
    worktree: bool = False


def git(repo: Path, *args: str, input_bytes: bytes | None = None, env: dict[str, str] | None = None) -> bytes:
    try:
        proc = subprocess.run(
            ["git", "-C", str(repo), *args], input=input_bytes, capture_output=True, check=False,
            env={**os.environ, **(env or {})},
        )
    except FileNotFoundError as exc:
        raise SourceError("git is not installed") from exc
    if proc.returncode != 0:
        msg = proc.stderr.decode(errors="replace").strip().splitlines()
        raise SourceError(f"git {' '.join(args[:2])} failed: {msg[-1] if msg else proc.returncode}")
    return proc.stdout


def repo_root(path: Path) -> Path:
    try:
        return Path(git(path, "rev-parse", "--show-toplevel").decode("utf-8", "surrogateescape").strip())
    except SourceError as exc:
        raise SourceError(f"{path}: not inside a git repository") from exc


def resolve(repo: Path, rev: str) -> str:
    try:
        return git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except SourceError as exc:
        raise SourceError(f"--rev {rev}: no such commit in {repo.name}") from exc


def snapshot(repo: Path, rev: str = "HEAD", worktree: bool = False) -> Snapshot:
    """The commit ``rev``, or (``worktree=True``) a tree of the working tree's tracked and untracked files."""
    commit = resolve(repo, rev)
    if not worktree:
        return Snapshot(repo, commit, commit)
    with tempfile.TemporaryDirectory(prefix="expctl-index-") as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        git(repo, "read-tree", commit, env=env)
        git(repo, "add", "-A", ".", env=env)
        tree = git(repo, "write-tree", env=env).decode().strip()
    return Snapshot(repo, tree, commit, worktree=True)


def names(out: bytes) -> str:
    """git's output of paths as text: a name that is not UTF-8 keeps its bytes as lone surrogates
    (``surrogateescape``), for ``one_line`` to show as ``\\udcff`` and ``desired_state`` to refuse, never a crash."""
    return out.decode("utf-8", "surrogateescape")


def dirty_paths(repo: Path, paths: Sequence[str] = DESIRED_PATHS) -> list[str]:
    """Files under ``paths`` whose working-tree content differs from HEAD (including untracked). A rename
    (``R  new\\0old\\0``) names both files."""
    out = names(git(repo, "status", "--porcelain", "-z", "--untracked-files=all", "--", *paths))
    found: set[str] = set()
    fields = iter(out.split("\0"))
    for entry in fields:
        if len(entry) > 3:
            found.add(entry[3:])
            if entry[0] in "RC" or entry[1] in "RC":  # the next field is the old name, whole
                found.add(next(fields, ""))
    return sorted(found - {""})


def list_files(snap: Snapshot, paths: Sequence[str] = DESIRED_PATHS) -> dict[str, str]:
    """``{path: blob id}`` of every file under ``paths`` in the snapshot."""
    out = names(git(snap.repo, "ls-tree", "-r", "-z", "--full-tree", snap.treeish, "--", *paths))
    files: dict[str, str] = {}
    for entry in filter(None, out.split("\0")):
        meta, path = entry.split("\t", 1)
        _mode, kind, blob = meta.split()
        if kind == "blob":
            files[path] = blob
    return files


def special_entries(snap: Snapshot, paths: Sequence[str] = DESIRED_PATHS) -> tuple[list[str], list[str]]:
    """Under ``paths``: config files (``.yaml``/``.yml``) and directories git stores as symbolic links (their
    blob is the link's target, not the file, so reading them as configs would be silently wrong), and git
    submodules (gitlinks: their files are in another repository, not in this commit). One ``ls-tree``."""
    out = names(git(snap.repo, "ls-tree", "-r", "-z", "--full-tree", snap.treeish, "--", *paths))
    entries = [entry.split("\t", 1) for entry in filter(None, out.split("\0"))]
    links = [path for meta, path in entries if meta.startswith("120000 ")]
    gitlinks = [path for meta, path in entries if meta.startswith("160000 ")]
    return [p for p in links if p.endswith((".yaml", ".yml")) or "." not in p.rsplit("/", 1)[-1]], gitlinks


def read_blobs(repo: Path, blobs: Sequence[str], names: Mapping[str, str] | None = None) -> dict[str, bytes]:
    """Contents of many blobs with one ``git cat-file --batch`` (``names``: a blob's path, for messages)."""
    if not blobs:
        return {}
    out = git(repo, "cat-file", "--batch", input_bytes=("\n".join(blobs) + "\n").encode())
    contents: dict[str, bytes] = {}
    pos = 0
    for blob in blobs:
        header_end = out.index(b"\n", pos)
        header = out[pos:header_end].decode(errors="replace").split()
        if len(header) != 3:  # "<sha> missing": a damaged repository (a corrupt or pruned loose object)
            name = (names or {}).get(blob, blob)
            raise SourceError(f"{name}: git object {blob[:12]} is missing or corrupt in {repo} "
                              "(see `git fsck`)")
        size = header[2]
        start = header_end + 1
        contents[blob] = out[start : start + int(size)]
        pos = start + int(size) + 1
    return contents


def read_files(snap: Snapshot, paths: Sequence[str] = DESIRED_PATHS) -> dict[str, bytes]:
    files = list_files(snap, paths)
    blobs = read_blobs(snap.repo, sorted(set(files.values())), {blob: path for path, blob in files.items()})
    return {path: blobs[blob] for path, blob in files.items()}


def materialize(files: dict[str, bytes], dest: Path) -> None:
    for path, data in files.items():
        target = dest / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)


class MissingCodePath(SourceError):
    """A declared code path is not in the snapshot: a digest of it would never change (a typo, most likely)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"code path {path!r} does not exist")
        self.path = path


def code_digest(snap: Snapshot, code_paths: Sequence[str]) -> str:
    """Digest of the declared code paths' git trees (default: the whole tree minus experiments/).

    Raises MissingCodePath for a declared path the snapshot does not have."""
    if code_paths:
        lines = []
        for path in sorted({p.strip("/") or "." for p in code_paths}):
            spec = f"{snap.treeish}^{{tree}}" if path == "." else f"{snap.treeish}:{path}"
            try:
                obj = git(snap.repo, "rev-parse", "--verify", "--quiet", spec).decode().strip()
            except SourceError:
                raise MissingCodePath(path) from None
            lines.append(f"{path}\t{obj}")
    else:
        out = names(git(snap.repo, "ls-tree", "--full-tree", snap.treeish))
        lines = [ln for ln in out.splitlines() if not ln.endswith("\texperiments")]
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:20]


def remote_url(repo: Path, remote: str = "origin") -> str | None:
    """The URL of the repository's remote (``origin``), or None when it has none."""
    try:
        url = git(repo, "remote", "get-url", remote).decode().strip()
    except SourceError:
        return None
    return url or None


def public_repo_url(url: str | None) -> str | None:
    """A remote URL fit to show: user, password or token (``https://x:tok@host/...``) and query removed."""
    if not url or not url.strip():
        return None
    url = url.strip()
    if "://" not in url:  # scp-like ``git@github.com:org/repo.git`` carries no secret but the user name
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def repository_label(remote: str | None, directory_name: str) -> str:
    """How a run names its repository: the public remote URL, else the repository's directory name."""
    return public_repo_url(remote) or directory_name


def project(repo: Path, declared: str | None) -> str:
    """The repository's project (``core.project``): ``declared`` (``expctl.yaml: project:``), else its label."""
    return declared or repository_label(remote_url(repo), repo.resolve().name)


def commit_author(repo: Path, commit: str) -> str:
    return git(repo, "log", "-1", "--format=%an <%ae>", commit).decode("utf-8", "replace").strip()
