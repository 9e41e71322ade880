"""Tracking records runs in MLflow: params, lineage tags, status and the validation gate."""
