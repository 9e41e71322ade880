"""Print the GPUs Slurm gave this task, then hold them until the file quick.hold exists (if set)."""

import json
import os
import time

with open(os.environ["EXPCTL_CONFIG_FILE"]) as f:
    config = json.load(f)
print("gpus", os.environ.get("CUDA_VISIBLE_DEVICES"), "rank", os.environ.get("RANK"), flush=True)
hold = (config.get("quick") or {}).get("hold")
deadline = time.time() + 120
while hold and not os.path.exists(hold) and time.time() < deadline:
    time.sleep(0.2)
