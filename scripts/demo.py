"""`make demo`: plan and apply this repository's own experiments on the embedded default.

Local backend (processes in git worktrees at the commit) and the embedded MLflow store under .expctl/.
Runs `expctl validate`, `plan`, `apply -y --wait` and `status`, then prints the registered models and the
lineage of the two-stage chain (experiments/pretrain.yaml → experiments/finetune.yaml: `apply --wait` launches
the finetune in the round that sees the pretrain champion, and follows it to the end); then the data flow
(scripts/demo_data.py): versioned datasets, validation by the platform, promotion, lineage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPCTL = [sys.executable, "-m", "expctl"]
TIMES: dict[str, float] = {}  # the wall seconds of each phase, printed at the end


def timed(phase: str, *args: str) -> int:
    started = time.perf_counter()
    code = step(*args)
    TIMES[phase] = TIMES.get(phase, 0.0) + time.perf_counter() - started
    return code


def install_seconds() -> str:
    """The seconds `make` spent installing (written into the venv's stamp), or why they are not known."""
    stamp = Path(sys.prefix) / ".installed"
    try:
        return f"{int(stamp.read_text().strip())} s"
    except (OSError, ValueError):
        return "not recorded (installed before the stamp held it)"


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
    started = time.perf_counter()
    timed("validate and plan", "compose every experiment", "validate")
    timed("validate and plan", "what would happen, and why", "plan", "--detailed-exitcode")
    timed("first apply (launch)", "launch every run", "apply", "-y")
    timed("training (apply --wait)", "follow the runs to the end", "apply", "-y", "--wait", "--timeout", "900")
    step("a squeue-like table", "status")
    step("nothing left to do", "plan")
    registered_models()
    step("the chain: finetune model → its run → the pretrain champion → its run", "lineage",
         "blobs-finetuned@champion")
    import demo_data

    data_started = time.perf_counter()
    demo_data.main()
    TIMES["data flow (second part)"] = time.perf_counter() - data_started
    print(f"\nWhere the time went: install {install_seconds()}; "
          + "; ".join(f"{phase} {seconds:.1f} s" for phase, seconds in TIMES.items())
          + f"; the demo in all {time.perf_counter() - started:.1f} s")
    print("\nOpen the MLflow UI to compare runs:  .venv/bin/expctl ui --open   (it prints the training-runs address)")


if __name__ == "__main__":
    main()
