"""Prints a line holding terminal escapes (an OSC window title, a clear screen), then stays up until cancelled."""

import time

print("before \x1b]0;owned\x07\x1b[2J after", flush=True)
time.sleep(600)
