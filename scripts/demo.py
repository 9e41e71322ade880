"""`make demo`: plan and apply this repository's own experiments on the embedded default.

Local backend (processes in git worktrees at the commit) and the embedded MLflow store under .expctl/.
Runs `expctl validate`, `plan`, `apply -y --wait` and `status`, then prints the registered models; then the
data flow (scripts/demo_data.py): versioned datasets, validation by the platform, promotion, lineage.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPCTL = [sys.executable, "-m", "expctl"]


def step(title: str, *args: str, check: bool = True) -> int:
    print(f"\n$ expctl {' '.join(args)}   # {title}", flush=True)
    code = subprocess.run([*EXPCTL, *args], cwd=ROOT, check=False).returncode
    if check and code not in (0, 2):
        sys.exit(f"demo: `expctl {' '.join(args)}` failed with exit code {code}")
    return code


def registered_models() -> None:
    from expctl.engine.operate import settings_at_head
    from expctl.engine.workspace import Workspace

    ws = Workspace(ROOT)  # the store the demo's `expctl` commands used: the same tracking URI precedence
    store = ws.open_store(settings_at_head(ws), "local")
    print("\nRegistered models (MLflow Model Registry):")
    rows = store.registered_models()
    for row in rows:
        accuracy = row["metrics"].get("val_accuracy")
        shown = f"val_accuracy={accuracy:.3f}" if accuracy is not None else ""
        print(f"  {row['name']:<18} v{row['version']:<3} {','.join(row['aliases']) or '-':<10} "
              f"{row['job']:<24} run {row['run_id'][:12]}  {shown}")
    if not rows:
        print("  (none passed the validation gate)")


def main() -> None:
    os.environ.pop("MLFLOW_TRACKING_URI", None)  # the demo is the embedded default
    step("compose every experiment", "validate")
    step("what would happen, and why", "plan", "--detailed-exitcode")
    step("launch, then follow the runs to the end", "apply", "-y", "--wait", "--timeout", "900")
    step("a squeue-like table", "status")
    step("nothing left to do", "plan")
    registered_models()
    import demo_data

    demo_data.main()
    print("\nOpen the MLflow UI to compare runs:  .venv/bin/expctl ui --open   (it prints the training-runs address)")


if __name__ == "__main__":
    main()
