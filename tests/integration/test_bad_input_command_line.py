"""Hostile command lines and environments, table-driven like ``test_bad_input.py`` (one line naming the option
or variable, the right exit code, no traceback, nothing written): values quoted in messages cannot forge lines
or reach the terminal raw, the commands' options, the variables MLflow's HTTP client reads (a token's value
is never shown)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.bad_input import Case, check

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token-value"

CASES = [
    # --- values quoted in a message cannot forge lines or reach the terminal raw -----------------------------
    Case("newline in a run name", args=("describe", "a\nerror: forged"), server=True, also_apply=False,
         expected="no run named a\\nerror: forged"),
    Case("terminal escape in a run name", args=("logs", "a\x1b[2Jb"), server=True, also_apply=False,
         expected="no local run named a\\x1b[2Jb"),
    Case("newline in --rev", args=("validate", "--rev", "HEAD\nerror: x"), expected="--rev HEAD\\nerror: x: no such"),
    # --- command options ------------------------------------------------------------------------------------
    Case("plan saved to an empty path", args=("plan", "--out", ""), code=2, also_apply=False,
         expected="Invalid value for '--out': an empty path"),
    Case("plan saved on a full disk", args=("plan", "--out", "/dev/full"), also_apply=False, server=True,
         expected="/dev/full: cannot save the plan: No space left on device"),
    Case("render an experiment named ''", args=("render", "--experiment", ""), also_apply=False,
         expected="--experiment '': no such experiment"),
    # --- the environment ------------------------------------------------------------------------------------
    Case("tracking URI of blanks", args=("plan",), env={"MLFLOW_TRACKING_URI": " "},
         expected="MLFLOW_TRACKING_URI: must be a URI without whitespace or control characters (got ' ')"),
    *(Case(f"{name}={value}", args=("plan",), env={name: value}, server=True, also_apply=False,
           expected=f"{name}: {message} (got '{value}')")
      for name, value, message in (
          ("MLFLOW_HTTP_REQUEST_TIMEOUT", "abc", "must be a whole number, 1 or more"),
          ("MLFLOW_HTTP_REQUEST_TIMEOUT", "-1", "must be a whole number, 1 or more"),
          ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "x", "must be a whole number, 0 or more"),
          ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1.5", "must be a whole number, 0 or more"),
          ("MLFLOW_HTTP_REQUEST_BACKOFF_JITTER", "inf", "must be a number, 0 or more"),
          ("MLFLOW_TRACKING_INSECURE_TLS", "maybe", "must be true or false"))),
    Case("a newline in the tracking token", args=("plan",), env={"MLFLOW_TRACKING_TOKEN": TOKEN + "\n"},
         server=True, also_apply=False,
         expected="MLFLOW_TRACKING_TOKEN: holds a control character (a trailing newline?), which no HTTP header can "
                  "carry (the value is not shown)"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_command_line_input(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    err = check(tmp_path, case, request)
    assert TOKEN not in err
