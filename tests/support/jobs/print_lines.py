"""Prints three lines, 0.3 s apart: a log that grows while it is followed."""

import time

for i in range(3):
    print("line", i, flush=True)
    time.sleep(0.3)
