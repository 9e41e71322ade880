"""Prints, as one JSON line, every variable of the job's environment that expctl, MLflow, torch.distributed or
CUDA reads (and ``GREETING``)."""

import json
import os

prefixes = ("EXPCTL_", "MLFLOW_", "MASTER_", "WORLD_", "RANK", "LOCAL_RANK", "CUDA_", "GREETING")
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(prefixes)}))
