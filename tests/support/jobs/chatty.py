"""400 lines of 40-odd characters from each replica: more log than the run keeps."""

import os

for i in range(400):
    print(f"{os.environ['EXPCTL_REPLICA']} line {i:03d} " + "x" * 20)
