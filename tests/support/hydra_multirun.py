"""Hydra's own multirun, as the reference for expctl's sweep expansion (``python -m tests.support.hydra_multirun``,
run by test_sweep_parity).

Reads ``{"conf": {path: text}, "forms": [experiment text, ...]}`` as JSON on stdin; for each form runs a real
``@hydra.main`` multirun (BasicSweeper, BasicLauncher) in-process and prints, as JSON, either
``{"jobs": [[task overrides], resolved config]...}`` or ``{"error": message}``.
"""

from __future__ import annotations

import io
import json
import sys
import tempfile
from contextlib import redirect_stderr
from pathlib import Path
from typing import Any


def multirun(conf: dict[str, str], experiment: str) -> dict[str, Any]:
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    root = Path(tempfile.mkdtemp(prefix="hydra-ref-"))
    for rel, text in {**conf, "exp.yaml": experiment}.items():
        (root / "conf" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "conf" / rel).write_text(text)
    jobs: list[Any] = []

    @hydra.main(config_path=str(root / "conf"), config_name="exp", version_base="1.3")
    def task(cfg: Any) -> None:
        jobs.append([list(HydraConfig.get().overrides.task), OmegaConf.to_container(cfg, resolve=True)])

    sys.argv = ["ref", "-m", f"hydra.sweep.dir={root}/out", "hydra/job_logging=none", "hydra/hydra_logging=none"]
    GlobalHydra.instance().clear()
    err = io.StringIO()
    try:
        with redirect_stderr(err):
            task()
    except SystemExit:
        return {"error": err.getvalue().strip().splitlines()[0] if err.getvalue().strip() else "failed"}
    return {"jobs": jobs}


if __name__ == "__main__":
    request = json.load(sys.stdin)
    print(json.dumps([multirun(request["conf"], form) for form in request["forms"]]))
