"""Succeeds only when it was handed team speech's job identity and workspace (in its environment), not the
admin's: ``MLFLOW_TRACKING_USERNAME`` expctl-job-speech, a password, ``MLFLOW_WORKSPACE`` voice."""

import os
import sys

e = os.environ
ok = (e.get("MLFLOW_TRACKING_USERNAME") == "expctl-job-speech" and e.get("MLFLOW_TRACKING_PASSWORD")
      and e.get("MLFLOW_WORKSPACE") == "voice")
sys.exit(0 if ok else 3)
