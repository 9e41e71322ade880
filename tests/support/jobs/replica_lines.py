"""Each replica prints ``lines`` lines naming itself, then holds until the file ``release`` exists (if set)."""

import json
import os
import time

with open(os.environ["EXPCTL_CONFIG_FILE"]) as f:
    cfg = json.load(f)
replica, rank = os.environ["EXPCTL_REPLICA"], os.environ["RANK"]
for i in range(int(cfg["lines"])):
    print(f"{replica} says line {i} (rank {rank} of {os.environ['WORLD_SIZE']})", flush=True)
while cfg["release"] and not os.path.exists(cfg["release"]):
    time.sleep(0.1)
print(f"{replica} done", flush=True)
