"""A team's job on a tracking server with workspaces, stdlib only: logs ``val_accuracy`` (the config's
``score``) into its run (``MLFLOW_RUN_ID``) through MLflow's REST API as the identity and in the workspace it was
handed (``MLFLOW_TRACKING_USERNAME``/``_PASSWORD``, ``MLFLOW_WORKSPACE``), and logs a model (an MLflow 3
logged model of the run, no files) for the gate to register: it fails when that identity may not write its run —
an admin's or another team's identity, or the wrong workspace, would show."""

import base64
import json
import os
import time
import urllib.request

e = os.environ
with open(e["EXPCTL_CONFIG_FILE"]) as f:
    config = json.load(f)
if not e.get("MLFLOW_TRACKING_USERNAME", "").startswith("expctl-job-"):
    raise SystemExit(f"not a team's job identity: {e.get('MLFLOW_TRACKING_USERNAME')!r}")
run_id = e["MLFLOW_RUN_ID"]
pair = f"{e['MLFLOW_TRACKING_USERNAME']}:{e['MLFLOW_TRACKING_PASSWORD']}".encode()
metric = {"key": "val_accuracy", "value": float(config["score"]), "timestamp": int(time.time() * 1000), "step": 0}
headers = {"Content-Type": "application/json", "Authorization": "Basic " + base64.b64encode(pair).decode(),
           "X-MLFLOW-WORKSPACE": e["MLFLOW_WORKSPACE"]}
api = e["MLFLOW_TRACKING_URI"].rstrip("/") + "/api/2.0/mlflow/"


def call(method: str, path: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(api + path, data=data, method=method, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as answer:
        return dict(json.loads(answer.read() or b"{}"))


call("POST", "runs/log-batch", {"run_id": run_id, "metrics": [metric]})
run = call("GET", f"runs/get?run_id={run_id}")["run"]
experiment_id = run["info"]["experiment_id"]  # type: ignore[index]
call("POST", "logged-models", {"experiment_id": experiment_id, "name": "model", "source_run_id": run_id})
print(f"logged val_accuracy {metric['value']} and a model as {e['MLFLOW_TRACKING_USERNAME']}", flush=True)
