"""``python -m expctl``."""

from expctl.cli.program import run

run()
