"""Example training code run by expctl's demos and tests: ``python -m training.train``."""
