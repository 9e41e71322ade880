"""Tracking records runs: params, lineage tags, status, the audit trail and the validation gate.

- ``base``: the seam — ``Tracker``, ``TrackerView`` and every optional capability (``Settles``, ``LogStore``,
  ``CheckpointRecords``) in one file; ``tests/contract/tracker_suite.py`` is what every tracker passes.
- ``mlflow/``: the MLflow tracker, the only importer of ``mlflow`` and SQLAlchemy.
- ``mlflow_evaluate``: a stable three-line entry point to ``expctl.job.evaluate`` (its path is persisted).
"""
