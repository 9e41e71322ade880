"""Issue 23: the report kept as one GitHub comment (updated in place) with a commit status, against a local
GitHub API that checks every request against GitHub's REST API description; a fork (no token, or 403) and
every failing answer leave the report in the job summary and never raise."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from expctl.engine.github_publish import publish
from tests.support.github_api import FakeGitHub, serve

pytestmark = pytest.mark.integration
SHA = "a" * 40
MARKER = "<!-- expctl-report -->"


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    api = FakeGitHub()
    server, thread = serve(api)
    yield api
    server.shutdown()
    server.server_close()
    thread.join()


def env(api: FakeGitHub, tmp_path: Path, token: str | None = None) -> dict[str, str]:
    return {"GITHUB_TOKEN": api.token if token is None else token, "GITHUB_REPOSITORY": "octo/repo",
            "GITHUB_API_URL": api.url, "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}


def test_one_commit_comment_updated_in_place_and_a_status(github: FakeGitHub, tmp_path: Path) -> None:
    for n in (1, 2):
        done = publish(f"{MARKER}\nround {n}", MARKER, commit=SHA, status=("pending", "expctl: 7/8 succeeded"),
                       env=env(github, tmp_path))
        assert done.problems == [] and done.status_set and done.comment_url
    assert github.violations == []
    assert [c["body"] for c in github.comments.values()] == [f"{MARKER}\nround 2"]
    assert [s["state"] for s in github.statuses] == ["pending", "pending"]
    assert github.statuses[0]["context"] == "expctl" and github.statuses[0]["description"] == "expctl: 7/8 succeeded"
    assert not (tmp_path / "summary.md").exists()


def test_one_pull_request_comment_updated_in_place(github: FakeGitHub, tmp_path: Path) -> None:
    for n in (1, 2):
        assert publish(f"{MARKER}\nplan {n}", MARKER, pr=7, env=env(github, tmp_path)).problems == []
    assert github.violations == [] and [c["body"] for c in github.comments.values()] == [f"{MARKER}\nplan 2"]


@pytest.mark.parametrize("status", [403, 404, 422, 500, 503])
def test_a_failing_api_is_one_line_and_the_summary(github: FakeGitHub, tmp_path: Path, status: int) -> None:
    github.fail = status
    done = publish(f"{MARKER}\nbody", MARKER, commit=SHA, status=("success", "ok"), env=env(github, tmp_path))
    assert len(done.problems) == 2 and all(f"HTTP {status}" in p and "\n" not in p for p in done.problems)
    assert github.token not in " ".join(done.problems)
    assert done.summary_written and "body" in (tmp_path / "summary.md").read_text()


def test_a_fork_without_a_token_gets_the_job_summary(github: FakeGitHub, tmp_path: Path) -> None:
    done = publish(f"{MARKER}\nbody", MARKER, pr=3, env=env(github, tmp_path, token=""))
    assert github.requests == [] and done.summary_written and len(done.problems) == 1
