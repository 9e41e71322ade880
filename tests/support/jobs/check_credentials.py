"""Succeeds only when it was handed the tracking password (in its environment) and a URI without it."""

import os
import sys

e = os.environ
sys.exit(0 if e.get("MLFLOW_TRACKING_PASSWORD") and "@" not in e["MLFLOW_TRACKING_URI"] else 3)
