"""A training job for report tests, stdlib only: logs ``acc`` and ``loss`` for ``curve.epochs`` epochs through
MLflow's REST API (``runs/log-batch``, into the run ``MLFLOW_RUN_ID`` at ``MLFLOW_TRACKING_URI``), so a sweep
has learning curves without importing mlflow. ``acc`` rises towards a ceiling set by ``optimizer.lr`` (0.01 is
best). With ``curve.fail`` it prints a few lines (Markdown, HTML and a terminal escape among them) and exits 1
before logging anything. With ``curve.gate`` (a file path) it waits until that file exists, then exits 0."""

import json
import math
import os
import sys
import time
import urllib.request

with open(os.environ["EXPCTL_CONFIG_FILE"]) as f:
    config = json.load(f)
curve = config.get("curve") or {}
if curve.get("gate"):
    while not os.path.exists(curve["gate"]):
        time.sleep(0.2)
    sys.exit(0)
if curve.get("fail"):
    print("loading data", flush=True)
    print("| not | a table | <b>bold</b> \x1b[31mred\x1b[0m", flush=True)
    print("RuntimeError: loss is NaN at step 3", flush=True)
    sys.exit(1)

lr = float(config["optimizer"]["lr"])
ceiling = 0.9 - 0.1 * abs(math.log10(lr) + 2)  # 0.9 at lr=0.01, 0.8 at 0.1 and 0.001
now = int(time.time() * 1000)
metrics = []
for epoch in range(int(curve.get("epochs", 3))):
    acc = ceiling * (1 - 0.5 ** (epoch + 1))
    metrics += [{"key": "acc", "value": acc, "timestamp": now, "step": epoch},
                {"key": "loss", "value": 1 - acc, "timestamp": now, "step": epoch}]
body = json.dumps({"run_id": os.environ["MLFLOW_RUN_ID"], "metrics": metrics}).encode()
url = os.environ["MLFLOW_TRACKING_URI"].rstrip("/") + "/api/2.0/mlflow/runs/log-batch"
request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
with urllib.request.urlopen(request, timeout=30) as answer:
    answer.read()
print(f"logged {len(metrics)} metrics, acc {metrics[-2]['value']:.4f}", flush=True)
