"""Public API for training code (``from expctl.data.reader import read_split``): the reader lives in
``expctl.job.reader``, the in-job runtime; this path stays because users' training code imports it."""

from expctl.job.reader import Examples, ManifestMismatch, label_names, load_manifest_file, read_split, record_features

__all__ = ["Examples", "ManifestMismatch", "label_names", "load_manifest_file", "read_split", "record_features"]
