"""Datasets as config: declarations, content-addressed manifests, and the combination rules between them.

``declare`` (the declared dataset, pure values), ``rules`` (union, sampling, filters, de-duplication, split:
pure), ``manifest`` (canonical form and digest: pure), ``cache`` (hashes remembered by path, size and mtime)
and ``scan`` (reading sources: local paths, globs, fsspec URLs) — ``materialize`` ties them together at the
edge and hands the digest to the pure core.
"""
