"""expctl's output uploader: what a producer's pod runs (``outputs:`` on Kubernetes), standard library only.

A pod has no directory the machine running ``expctl apply`` reads, so the producer's container runs its training
command through this program (``python3 -c`` with this text, which the manifest ships in the container's
environment, ``EXPCTL_OUTPUT_UPLOADER``: the image needs ``python3``, not expctl). It starts the command, passes
SIGTERM and SIGINT on to it and waits. After an exit 0, it stores every file the command wrote into
``EXPCTL_OUTPUT_DIR`` (sub-folders kept; hidden names skipped, links followed, as ``data:`` sources are read) as
artifacts of the job's own MLflow run, ``expctl/outputs/<EXPCTL_OUTPUT_DATASET>/<path>``: the artifact path the
apply records the dataset from (it downloads the files and hashes them itself). It exits with the command's code
(128 + N when a signal N ended it); when storing fails it exits 1 with one line on stderr, so the run fails rather
than hand on a partial dataset. Only the first pod of an indexed job (``JOB_COMPLETION_INDEX`` unset or 0, e.g.
a TrainJob's node 0) stores.

The files go through the tracking server's proxied artifact API, as MLflow's own client sends them: the run's
``artifact_uri`` from ``GET /api/2.0/mlflow/runs/get``, then one ``PUT /api/2.0/mlflow-artifacts/artifacts/<run
artifact path>/<file>`` per file, with the job's credentials (``MLFLOW_TRACKING_TOKEN`` as a bearer token, or
``MLFLOW_TRACKING_USERNAME`` and ``MLFLOW_TRACKING_PASSWORD``) and its workspace (``MLFLOW_WORKSPACE``).
Connection errors, 5xx and 429 are retried a few times. Kubernetes expands dollar-parenthesis references in
environment values, so this text holds no dollar sign (a unit test checks it).
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

ARTIFACTS_API = "/api/2.0/mlflow-artifacts/artifacts"
RUNS_GET = "/api/2.0/mlflow/runs/get"
OUTPUTS = "expctl/outputs"
ATTEMPTS = 5
TIMEOUT = 300.0


class UploadError(Exception):
    """Storing the outputs failed: one line, no credentials."""


def _headers() -> dict[str, str]:
    out = {}
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if token:
        out["Authorization"] = "Bearer " + token
    elif user and password:
        out["Authorization"] = "Basic " + base64.b64encode((user + ":" + password).encode()).decode()
    workspace = os.environ.get("MLFLOW_WORKSPACE")
    if workspace:
        out["X-MLFLOW-WORKSPACE"] = workspace
    return out


def _call(method: str, url: str, path: str | None = None) -> bytes:
    """One request (the body: the file at ``path``), retried on connection errors, 5xx and 429."""
    shown = urllib.parse.urlsplit(url)._replace(query="").geturl()
    for attempt in range(1, ATTEMPTS + 1):
        headers = _headers()
        body: Any = None
        try:
            if path is not None:
                headers["Content-Type"] = "application/octet-stream"
                headers["Content-Length"] = str(os.path.getsize(path))
                body = open(path, "rb")  # noqa: SIM115 -- closed below, after the request
            request = urllib.request.Request(url, data=body, headers=headers, method=method)
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                data: bytes = response.read()
                return data
        except urllib.error.HTTPError as exc:
            if (exc.code < 500 and exc.code != 429) or attempt == ATTEMPTS:
                raise UploadError(f"{method} {shown}: HTTP {exc.code} {exc.reason}") from None
        except OSError as exc:
            if attempt == ATTEMPTS or (path is not None and body is None):
                raise UploadError(f"{method} {shown}: {exc}") from None
        finally:
            if body is not None:
                body.close()
        time.sleep(min(2.0 ** attempt, 30.0))
    raise UploadError(f"{method} {shown}: no attempt left")  # not reached


def artifact_root(tracking: str, run_id: str) -> str:
    """The URL under which the run's artifacts are PUT (the tracking server's proxied artifact API)."""
    answer = json.loads(_call("GET", tracking + RUNS_GET + "?" + urllib.parse.urlencode({"run_id": run_id})))
    uri = str(answer["run"]["info"]["artifact_uri"])
    parsed = urllib.parse.urlsplit(uri)
    if parsed.scheme == "mlflow-artifacts":
        return tracking + ARTIFACTS_API + "/" + parsed.path.lstrip("/")
    if parsed.scheme in ("http", "https") and ARTIFACTS_API in parsed.path:
        return uri.rstrip("/")
    raise UploadError(f"run {run_id} keeps its artifacts at a {parsed.scheme or 'local'}: location the job cannot "
                      "write through the tracking server (run mlflow server with --serve-artifacts and a "
                      "mlflow-artifacts: artifact root)")


def files(directory: str) -> list[tuple[str, str]]:
    """(path, relative posix path) of every non-hidden file under ``directory``, links followed, each once."""
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    for root, dirs, names in os.walk(directory, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:  # a link loop: walk each directory once
            dirs[:] = []
            continue
        seen.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = os.path.join(root, name)
            if not name.startswith(".") and os.path.isfile(path):
                out.append((path, os.path.relpath(path, directory).replace(os.sep, "/")))
    return out


def upload(directory: str, dataset: str, tracking: str, run_id: str) -> int:
    """Store the files under ``directory`` as the run's ``expctl/outputs/<dataset>/``; how many."""
    found = files(directory) if os.path.isdir(directory) else []
    if not found:
        return 0
    root = artifact_root(tracking, run_id)
    for path, rel in found:
        _call("PUT", root + "/" + urllib.parse.quote(OUTPUTS + "/" + dataset + "/" + rel), path)
    return len(found)


def _store() -> int:
    env = os.environ
    if env.get("JOB_COMPLETION_INDEX", "0") not in ("", "0"):
        return 0
    tracking = env.get("MLFLOW_TRACKING_URI", "").rstrip("/")
    run_id, dataset = env.get("MLFLOW_RUN_ID", ""), env.get("EXPCTL_OUTPUT_DATASET", "")
    try:
        if not tracking.startswith(("http://", "https://")) or not run_id or not dataset:
            raise UploadError("needs MLFLOW_TRACKING_URI (http or https), MLFLOW_RUN_ID and EXPCTL_OUTPUT_DATASET")
        count = upload(env.get("EXPCTL_OUTPUT_DIR", ""), dataset, tracking, run_id)
    except (UploadError, OSError, ValueError, KeyError) as exc:
        print(f"expctl: could not store the dataset {dataset} on MLflow run {run_id}: {exc}", file=sys.stderr)
        return 1
    print(f"expctl: stored {count} file(s) of the dataset {dataset} on MLflow run {run_id}", flush=True)
    return 0


def main(argv: list[str]) -> int:
    """Run the command ``argv``; after an exit 0, store its outputs. The command's exit code, or 1."""
    if not argv:
        print("expctl: usage: python3 upload_outputs.py COMMAND [ARG...]", file=sys.stderr)
        return 2
    try:
        child = subprocess.Popen(argv)
    except OSError as exc:
        print(f"expctl: cannot run {argv[0]}: {exc}", file=sys.stderr)
        return 127
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda number, _frame: child.send_signal(number))
    code = child.wait()
    if code != 0:
        return code if code > 0 else 128 - code
    sys.stdout.flush()
    return _store()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
