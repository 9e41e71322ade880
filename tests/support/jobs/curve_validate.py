"""A validation job for report tests, stdlib only (``validation.command``): reads the final ``acc`` of the
training run it validates (``EXPCTL_VALIDATES_RUN_ID``) through MLflow's REST API and logs ``acc`` 0.05 lower
into its own run (``MLFLOW_RUN_ID``), as a held-out evaluation would; expctl records it as ``validation.acc``."""

import json
import os
import time
import urllib.parse
import urllib.request

base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/") + "/api/2.0/mlflow/runs/"
query = urllib.parse.urlencode({"run_id": os.environ["EXPCTL_VALIDATES_RUN_ID"]})
with urllib.request.urlopen(base + "get?" + query, timeout=30) as answer:
    run = json.load(answer)["run"]
trained = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
value = round(trained["acc"] - 0.05, 6)
body = json.dumps({"run_id": os.environ["MLFLOW_RUN_ID"], "metrics": [
    {"key": "acc", "value": value, "timestamp": int(time.time() * 1000), "step": 0}]}).encode()
request = urllib.request.Request(base + "log-batch", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as answer:
    answer.read()
print(f"validated: acc {value:.4f}", flush=True)
