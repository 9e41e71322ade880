"""A tiny job for tests: stdlib only. Sleeps ``quick.sleep`` seconds (and, with ``quick.hold``, until that file
exists, at most 300 s), then exits 1 while its attempt is at most ``quick.fail_first_attempts``, else 0 (written
into a test project as ``training/quick.py``)."""

import json
import os
import sys
import time

with open(os.environ["EXPCTL_CONFIG_FILE"]) as f:
    config = json.load(f)
quick = config.get("quick") or {}
time.sleep(float(quick.get("sleep", 0)))
deadline = time.time() + 300
while quick.get("hold") and not os.path.exists(quick["hold"]) and time.time() < deadline:
    time.sleep(0.2)
attempt = int(os.environ.get("EXPCTL_ATTEMPT", "1"))
print(f"quick job {os.environ.get('EXPCTL_RUN_NAME')} attempt {attempt} rank {os.environ.get('RANK')}")
sys.exit(1 if attempt <= int(quick.get("fail_first_attempts", 0)) else 0)
