"""Prints what it was handed to resume from; fails its first attempt (a code failure)."""

import os
import sys

print("RESUME_FROM=" + os.environ.get("EXPCTL_RESUME_FROM", "-"))
print("CHECKPOINT_DIR=" + os.environ.get("EXPCTL_CHECKPOINT_DIR", "-"))
sys.exit(1 if os.environ["EXPCTL_ATTEMPT"] == "1" else 0)
