"""Each replica writes which GPUs it sees to ``$OUT/<run>.<replica>``, then works until the file ``$GATE``
exists."""

import os
import time

with open(os.environ["OUT"] + "/" + os.environ["EXPCTL_RUN_NAME"] + "." + os.environ["EXPCTL_REPLICA"], "w") as f:
    f.write(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))
while not os.path.exists(os.environ["GATE"]):
    time.sleep(0.05)
