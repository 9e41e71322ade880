"""Publish a report on GitHub: one comment kept per pull request or per commit, and a commit status.

The only importer of PyGithub (the third-party boundary; imported on first use). A comment is found again
by its hidden marker among the comments of bots (never a person's), and edited in place; else created.
The token comes only from the environment the workflow gives (``GITHUB_TOKEN``: its own token or a secret),
the repository from ``GITHUB_REPOSITORY``, the API from ``GITHUB_API_URL`` (GitHub Enterprise, or a test
server). Publishing never fails the caller: ``publish`` returns one line per failure (a fork's read-only token
answering 403, a missing pull request 404, a refused body 422, a server error), and when a comment cannot be
written the body goes to the job summary (``GITHUB_STEP_SUMMARY``) instead.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from expctl.core.sanitize import one_line, redact

DEFAULT_API = "https://api.github.com"
STATUS_CONTEXT = "expctl"
TIMEOUT_SECONDS = 15


@dataclass(frozen=True)
class Target:
    repository: str  # owner/name
    token: str = field(repr=False)
    api_url: str = DEFAULT_API


@dataclass
class Published:
    """What publishing did: the comment's address, and one line per thing that could not be done."""

    comment_url: str | None = None
    status_set: bool = False
    problems: list[str] = field(default_factory=list)
    summary_written: bool = False


def target_from_env(env: Mapping[str, str] | None = None) -> Target | None:
    """The repository and token the workflow gives; None when either is missing (a fork's pull request
    without a token, a laptop)."""
    env = os.environ if env is None else env
    token, repository = env.get("GITHUB_TOKEN", ""), env.get("GITHUB_REPOSITORY", "")
    if not token or "/" not in repository:
        return None
    return Target(repository, token, env.get("GITHUB_API_URL") or DEFAULT_API)


def _client(target: Target) -> Any:
    from github import Auth, Github

    return Github(auth=Auth.Token(target.token), base_url=target.api_url.rstrip("/"), timeout=TIMEOUT_SECONDS,
                  retry=None, lazy=False, seconds_between_requests=None, seconds_between_writes=None)


def _why(exc: Exception, target: Target) -> str:
    status = getattr(exc, "status", None)
    data = getattr(exc, "data", None)
    message = data.get("message", "") if isinstance(data, dict) else str(exc)
    hint = {403: " (a pull request from a fork gets a read-only token)", 404: " (no such pull request or commit, "
            "or the token cannot see it)", 422: " (GitHub refused the body)"}.get(status or 0, "")
    text = f"HTTP {status}: {message}{hint}" if status else f"{type(exc).__name__}: {message}"
    return one_line(redact(text, [target.token]), 300)


def _mine(comment: Any, marker: str) -> bool:
    user = comment.user
    return marker in (comment.body or "") and user is not None and user.type == "Bot"


def _upsert(comments: Any, create: Any, marker: str, body: str) -> str:
    """The first of ``comments`` that is ours (``marker``, written by a bot) edited to ``body``, else a new one."""
    for comment in comments:
        if _mine(comment, marker):
            comment.edit(body)
            return str(comment.html_url)
    return str(create(body).html_url)


def upsert_pr_comment(target: Target, number: int, marker: str, body: str) -> str:
    """The pull request's comment carrying ``marker``, edited to ``body`` (created when there is none)."""
    issue = _client(target).get_repo(target.repository).get_issue(number)
    return _upsert(issue.get_comments(), issue.create_comment, marker, body)


def upsert_commit_comment(target: Target, sha: str, marker: str, body: str) -> str:
    """The commit's comment carrying ``marker``, edited to ``body`` (created when there is none)."""
    commit = _client(target).get_repo(target.repository).get_commit(sha)
    return _upsert(commit.get_comments(), commit.create_comment, marker, body)


def set_status(target: Target, sha: str, state: str, description: str, url: str | None = None) -> None:
    commit = _client(target).get_repo(target.repository).get_commit(sha)
    extra = {"target_url": url} if url else {}
    commit.create_status(state=state, description=description[:140], context=STATUS_CONTEXT, **extra)


def _summary(body: str, env: Mapping[str, str]) -> bool:
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return False
    with Path(path).open("a", encoding="utf-8") as out:
        out.write(body + "\n")
    return True


def publish(body: str, marker: str, *, pr: int | None = None, commit: str | None = None,
            status: tuple[str, str] | None = None, status_url: str | None = None,
            env: Mapping[str, str] | None = None) -> Published:
    """Comment ``body`` on pull request ``pr`` or on ``commit`` and set ``status`` (state, description) on
    ``commit``; never raises: every failure is one line in ``problems``, and the body goes to the job summary
    when the comment could not be written."""
    env = os.environ if env is None else env
    done = Published()
    target = target_from_env(env)
    if target is None:
        done.problems.append("no GITHUB_TOKEN or GITHUB_REPOSITORY: the report goes to the job summary only")
    else:
        try:
            if pr is not None:
                done.comment_url = upsert_pr_comment(target, pr, marker, body)
            elif commit is not None:
                done.comment_url = upsert_commit_comment(target, commit, marker, body)
        except Exception as exc:  # any answer of GitHub's, or none: one line, never a failed reconcile
            done.problems.append(f"comment not written: {_why(exc, target)}")
        if status is not None and commit is not None:
            try:
                set_status(target, commit, status[0], status[1], status_url)
                done.status_set = True
            except Exception as exc:
                done.problems.append(f"commit status not set: {_why(exc, target)}")
    if done.comment_url is None:
        done.summary_written = _summary(body, env)
    return done
