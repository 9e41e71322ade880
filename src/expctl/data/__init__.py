"""Datasets as config: declarations, content-addressed manifests, and the combination rules between them.

``declare`` (the declared dataset, pure values), ``rules`` (union, sampling, filters, de-duplication, split:
pure), ``manifest`` (canonical form and digest: pure), ``cache`` (hashes remembered by path, size and mtime)
and ``scan`` (reading sources: local paths, globs, fsspec URLs; files streamed, never read whole), with
``local_files`` (a local source's walk and glob matching: it ends on link loops and lists each file once) —
``materialize`` ties them together at the edge and hands the digest to the pure core. ``produced`` is the
manifest of a dataset a run wrote (``outputs:``), from its output directory.
"""
