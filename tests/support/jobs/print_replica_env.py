"""Prints, as one JSON line, the variables a replica was handed, its working directory and its config."""

import json
import os

keys = ["MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK", "LOCAL_RANK", "TF_CONFIG", "MLFLOW_TRACKING_URI",
        "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME", "EXPCTL_RUN_NAME", "EXPCTL_ATTEMPT", "EXPCTL_CONFIG_FILE",
        "GREETING"]
with open(os.environ["EXPCTL_CONFIG_FILE"]) as f:
    config = json.load(f)
print(json.dumps({**{k: os.environ.get(k) for k in keys}, "cwd": os.getcwd(), "config": config}))
