"""A stable entry point: ``python -m expctl.tracking.mlflow_evaluate`` is every validation job's command, and so
part of its spec hash (``core.desired.DEFAULT_EVALUATOR``). The evaluator lives in ``expctl.job.evaluate``; moving
this file would relaunch every validation job."""

import sys

from expctl.job.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
