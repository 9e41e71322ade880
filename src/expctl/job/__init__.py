"""The in-job runtime: what runs inside a training or validation job (imports only ``core``).

- ``reader``: exactly the items of a dataset manifest's split, as feature vectors and labels (public as
  ``expctl.data.reader``, which users' training code imports), read bounded as the controller reads: a
  manifest (``load_manifest_file``) and an example file are capped regular files, record files streamed.
- ``evaluate``: the default validation job (run as ``python -m expctl.tracking.mlflow_evaluate``, a stable shim:
  that command is in every validation job's spec hash).
"""
