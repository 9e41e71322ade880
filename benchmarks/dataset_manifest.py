"""Build the manifest of 100,000 small files, against ``sha256sum`` over the same files in the same run.

    python benchmarks/dataset_manifest.py [--files 100000] [--batches 4]

The files are labelled folders (``b<k>/<label>/<n>.txt``, a few dozen bytes each) in a temporary directory.
Measured: ``sha256sum`` over every file (``find -print0 | xargs -0 sha256sum``: the baseline, one read of each
file); expctl's first build (scan, hash every file, rules, split, digest — cold cache); and a re-plan of the
unchanged dataset (warm cache: every file stat'ed, none read). Both expctl builds must give the same digest.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from expctl.data.declare import Batch, Dataset, Split  # noqa: E402
from expctl.data.materialize import Materializer  # noqa: E402


def make_files(root: Path, files: int, batches: int) -> None:
    labels = [f"class{i}" for i in range(10)]
    for n in range(files):
        folder = root / f"b{n % batches}" / labels[n % len(labels)]
        if n < batches * len(labels):
            folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{n}.txt").write_text(f"sample {n} label {labels[n % len(labels)]}\n")


def sha256sum(root: Path) -> float:
    start = time.perf_counter()
    subprocess.run(f"find {root} -type f -print0 | xargs -0 sha256sum > /dev/null", shell=True, check=True)
    return time.perf_counter() - start


def build(root: Path, state: Path, batches: int) -> tuple[float, str, int]:
    decl = Dataset("bench", "folders", tuple(Batch(f"b{k}", f"b{k}") for k in range(batches)),
                   split=Split(0, 0.8, 0.1, 0.1))
    start = time.perf_counter()
    data = Materializer(str(root), state)
    manifest, _ref = data.materialize(decl)
    data.commit()
    return time.perf_counter() - start, manifest.digest, len(manifest.items)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--batches", type=int, default=4)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="expctl-bench-data-") as tmp:
        root, state = Path(tmp) / "data", Path(tmp) / "state"
        start = time.perf_counter()
        make_files(root, args.files, args.batches)
        print(f"files generated:              {args.files:,} in {time.perf_counter() - start:.1f} s")
        os.sync()
        baseline = sha256sum(root)  # also warms the page cache for both contenders
        baseline = min(baseline, sha256sum(root))
        cold, digest, items = build(root, state, args.batches)
        warm, again, _ = build(root, state, args.batches)
        assert digest == again, "the warm build must give the same digest"
        print(f"items in the manifest:        {items:,} (digest {digest})")
        print(f"sha256sum over every file:    {baseline:.2f} s")
        print(f"expctl manifest, cold cache:  {cold:.2f} s  ({cold / baseline:.2f}x sha256sum)")
        print(f"expctl manifest, re-plan:     {warm:.2f} s  ({warm / baseline:.2f}x sha256sum; no file read)")


if __name__ == "__main__":
    main()
