"""A dataset a run produced: the files its job wrote into its output directory, as a manifest.

The same kind of manifest ``data:`` declarations give (``manifest.build``, format ``folders``: each file an
item with its path, size and SHA-256, its parent folder as its label), of one batch, ``outputs``. The digest
covers only what the files are, so a rerun that writes the same files produces the same dataset.
"""

from __future__ import annotations

import os

from expctl.data.cache import HashCache
from expctl.data.declare import Batch, Dataset
from expctl.data.manifest import Manifest, build
from expctl.data.scan import batch_items, list_entries

BATCH = "outputs"
FORMAT = "folders"


def manifest_of(dataset: str, directory: str, location: str | None = None) -> Manifest:
    """The manifest of every file under ``directory`` (none: an empty dataset, when the job wrote nothing or
    the directory does not exist), naming ``location`` as where they are (default: ``directory``). A file that
    cannot be read is a ``scan.DataError`` naming it."""
    items = []
    if os.path.isdir(directory) and any(True for _ in os.scandir(directory)):
        _, entries = list_entries(directory, "")
        decl = Dataset(dataset, FORMAT, (Batch(BATCH, directory),), label=None)
        items = batch_items(decl, BATCH, entries, HashCache(None)) if entries else []
    return build(dataset, FORMAT, items, [BATCH], {BATCH: location or directory})
