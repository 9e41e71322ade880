"""``python -m expctl``."""

from expctl.cli import main

main()
