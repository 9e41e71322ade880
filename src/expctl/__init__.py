"""expctl: Hydra experiment configs in git as the desired state of ML training runs."""

__version__ = "0.1.0"
