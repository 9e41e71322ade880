"""A job that produces a dataset (``outputs:``): writes ``write.rows`` lines into ``rows/part-0.txt`` and a
``readme.txt`` under ``EXPCTL_OUTPUT_DIR`` (stdlib only; written into a test project as its importer's code).
What it writes depends on ``write.rows`` alone: another config value changes its run, not its files."""

import json
import os

with open(os.environ["EXPCTL_CONFIG_FILE"]) as f:
    config = json.load(f)
rows = int((config.get("write") or {}).get("rows", 3))
out = os.environ["EXPCTL_OUTPUT_DIR"]
os.makedirs(os.path.join(out, "rows"), exist_ok=True)
with open(os.path.join(out, "rows", "part-0.txt"), "w") as f:
    f.writelines(f"row {i}\n" for i in range(rows))
with open(os.path.join(out, "readme.txt"), "w") as f:
    f.write(f"{rows} rows for {os.environ['EXPCTL_OUTPUT_DATASET']}\n")
print(f"wrote {rows} rows into {out}")
