"""Turn dataset declarations into manifests at the edge: scan each batch, apply the rules, digest the result.

The data itself lives outside git, under the *data root*: ``EXPCTL_DATA_ROOT``, else ``data_root`` in
``expctl.yaml`` (relative to the repository, absolute, or an fsspec URL), else the repository's own directory.
Manifests are kept under ``.expctl/manifests/<digest>.json`` and the hash cache in ``.expctl/data-cache.sqlite``;
both are written by ``commit`` only, after every declaration materialized.
"""

from __future__ import annotations

import os
from pathlib import Path

from expctl.core import bounded
from expctl.core.errors import ExpctlError
from expctl.core.model import DatasetRef
from expctl.core.naming import canonical_json
from expctl.core.sanitize import data_location
from expctl.data import manifest as mf
from expctl.data import rules, scan
from expctl.data.cache import HashCache
from expctl.data.declare import Dataset
from expctl.data.scan import DataError

MANIFEST_DIR = "manifests"
CACHE_FILE = "data-cache.sqlite"


def data_root(repo: Path, configured: str | None) -> str:
    """Where relative dataset sources are: EXPCTL_DATA_ROOT, else expctl.yaml's data_root, else the repo."""
    root = os.environ.get("EXPCTL_DATA_ROOT") or configured or "."
    if scan.is_url(root) or os.path.isabs(root):
        return root
    return str((repo / root).resolve())


class Materializer:
    """Materializes each distinct declaration once; ``commit`` writes manifests and the cache."""

    def __init__(self, root: str, state_dir: Path | None) -> None:
        self.root = root
        self.state_dir = state_dir
        self.cache = HashCache(state_dir / CACHE_FILE if state_dir is not None else None)
        self._done: dict[str, tuple[mf.Manifest, DatasetRef]] = {}
        self.declarations: dict[str, Dataset] = {}  # validated declarations by their config's canonical JSON

    def manifest_path(self, digest: str) -> Path | None:
        return self.state_dir / MANIFEST_DIR / f"{digest}.json" if self.state_dir is not None else None

    def materialize(self, decl: Dataset) -> tuple[mf.Manifest, DatasetRef]:
        """The manifest of ``decl`` (raises DataError naming the batch and the problem)."""
        key = canonical_json(repr(decl))
        if key in self._done:
            return self._done[key]
        per_batch, locations = {}, {}
        for index, batch in enumerate(decl.batches):
            try:
                base, entries = scan.list_entries(batch.source, self.root)
                per_batch[batch.name] = scan.batch_items(decl, batch.name, entries, self.cache)
            except DataError as exc:
                raise DataError(f"batches[{index}] ({batch.name}): {exc}") from exc
            locations[batch.name] = data_location(base)  # no credential in a manifest
        combined = rules.combine(decl, per_batch)
        if not combined:
            raise DataError("no items left after the filters and sampling (an empty dataset)")
        manifest = mf.build(decl.name, decl.format, combined, [b.name for b in decl.batches], locations,
                            decl.label)
        path = self.manifest_path(manifest.digest)
        ref = DatasetRef(
            name=decl.name, digest=manifest.digest, manifest_file=str(path) if path is not None else "",
            batches=tuple((b.name, b.digest, b.items) for b in manifest.batches),
            splits=tuple(sorted(manifest.counts().items())),
        )
        self._done[key] = (manifest, ref)
        return manifest, ref

    def commit(self) -> None:
        """Write every manifest (content-addressed: an existing one is left alone) and the hash cache."""
        self.cache.flush()
        for manifest, _ref in self._done.values():
            path = self.manifest_path(manifest.digest)
            if path is None:
                continue
            text = manifest.text()
            if path.exists() and _same(path, text):
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)


def _same(path: Path, text: str) -> bool:
    """Whether the manifest file ``path`` already holds ``text`` (a special or oversized file does not)."""
    try:
        return bounded.read_text(path, len(text.encode()) + 1, "a dataset manifest") == text
    except (OSError, ValueError, ExpctlError):
        return False
