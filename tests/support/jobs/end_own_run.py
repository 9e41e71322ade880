"""A training script that ends its MLflow run itself (as ``mlflow.start_run`` in a ``with`` block would)."""

import os

import mlflow

mlflow.start_run(run_id=os.environ["MLFLOW_RUN_ID"])
mlflow.end_run("FINISHED")
