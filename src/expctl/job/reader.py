"""What a job reads: exactly the items of its manifest, as feature vectors and labels (for training code and
the platform's default evaluator).

I/O, standard library (fsspec only for URL locations, pyarrow only for Parquet). Every item is checked against
its content hash, so a job never trains on data that changed after the plan. Files are read bounded, as the
controller reads them: a manifest (``load_manifest_file``) and an example file are regular files of a capped
size, and record files are streamed row by row (a jsonl line of at most ``LINE_LIMIT`` bytes). Feature conventions:
``folders`` — each file holds numbers separated by commas or whitespace; records (csv, parquet, jsonl) — the
list field ``x`` if there is one, else every numeric field except the label, in field-name order.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from expctl.core import bounded
from expctl.core.errors import ExpctlError
from expctl.core.naming import canonical_json
from expctl.core.sanitize import one_line

_NUMBERS = re.compile(r"[,\s]+")
MANIFEST_LIMIT = 1 << 30  # bytes of a dataset manifest (the controller writes at most this much)
FILE_LIMIT = 256 << 20  # bytes of one example file (``folders``)
LINE_LIMIT = 16 << 20  # bytes of one jsonl line: as the controller (data/scan) reads it


class ManifestMismatch(Exception):
    """An item's content on disk is not what the manifest says: the data changed after the plan."""


@dataclass(frozen=True)
class Examples:
    features: list[list[float]]
    labels: list[str]
    weights: list[float]


def load_manifest_file(path: str | Path) -> dict[str, Any]:
    """A manifest from a local file: a regular file of at most ``MANIFEST_LIMIT`` bytes (a FIFO, a device or a
    huge file is one line naming it, never a hang or all of memory), a JSON object."""
    text = bounded.read_text(path, MANIFEST_LIMIT, "a dataset manifest")
    try:
        loaded = json.loads(text)
    except ValueError as exc:
        raise ExpctlError(f"not JSON ({exc}), so not a dataset manifest", file=one_line(str(path))) from exc
    if not isinstance(loaded, dict):
        raise ExpctlError("not a JSON object, so not a dataset manifest", file=one_line(str(path)))
    return loaded


@contextlib.contextmanager
def _opened(location: str) -> Iterator[IO[bytes]]:
    """A data file open for binary reading: a URL through fsspec, a local file only when it is a regular file."""
    if "://" in location and not location.startswith("file://"):
        import fsspec

        with fsspec.open(location, "rb") as fh:
            yield fh
    else:
        with bounded.open_regular(location.removeprefix("file://"), None, "a data file") as fh:
            yield fh


def _whole(location: str) -> bytes:
    """A ``folders`` item: one example per file, read whole up to ``FILE_LIMIT`` bytes."""
    with _opened(location) as fh:
        data: bytes = fh.read(FILE_LIMIT + 1)
    if len(data) > FILE_LIMIT:
        raise bounded.TooLarge(f"more than the {FILE_LIMIT} bytes an example file may have", file=one_line(location))
    return data


def _records(fmt: str, fh: IO[bytes], name: str) -> Iterator[dict[str, Any]]:
    """The file's records, streamed (numbered as the controller numbered them: blank jsonl lines skipped)."""
    if fmt == "csv":
        for row in csv.DictReader(io.TextIOWrapper(fh, encoding="utf-8", newline="")):
            yield dict(row)
    elif fmt == "parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(fh).iter_batches():
            yield from batch.to_pylist()
    else:
        for _, raw in bounded.lines(fh, LINE_LIMIT, name):
            line = raw.decode("utf-8")
            if line.strip():
                yield json.loads(line)


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def record_features(record: Mapping[str, Any], label_field: str | None, skip: set[str]) -> list[float]:
    if isinstance(record.get("x"), list):
        return [float(v) for v in record["x"]]
    out = []
    for key in sorted(record):
        if key == label_field or key in skip:
            continue
        value = _number(record[key])
        if value is not None:
            out.append(value)
    return out


def read_split(manifest: Mapping[str, Any], split: str | None) -> Examples:
    """The features, labels and weights of the manifest's items in ``split`` (None: all), in manifest order.

    Each data file is read once, streamed row by row (only the rows the split needs are kept); a ``folders``
    file is one example, read whole up to ``FILE_LIMIT`` bytes."""
    fmt, label_field = manifest["format"], manifest.get("label_field")
    where = {b["name"]: b["location"] for b in manifest["batches"]}
    chosen = [i for i in manifest["items"] if split is None or i["split"] == split]
    features: list[list[float]] = [[] for _ in chosen]
    rows: dict[str, dict[int, list[int]]] = {}  # location → row → positions in ``chosen``
    for position, item in enumerate(chosen):
        location = where[item["batch"]].rstrip("/") + "/" + item["path"]
        if item.get("row") is None:
            data = _whole(location)
            if hashlib.sha256(data).hexdigest() != item["sha256"]:
                raise ManifestMismatch(f"{item['batch']}/{item['path']} changed since the manifest was made")
            features[position] = [float(v) for v in _NUMBERS.split(data.decode("utf-8").strip()) if v]
        else:
            rows.setdefault(location, {}).setdefault(int(item["row"]), []).append(position)
    for location, wanted in rows.items():
        left = dict(wanted)
        with _opened(location) as fh:
            for index, record in enumerate(_records(fmt, fh, location)):
                for position in left.pop(index, []):
                    item = chosen[position]
                    if hashlib.sha256(canonical_json(record).encode()).hexdigest() != item["sha256"]:
                        raise ManifestMismatch(f"{item['batch']}/{item['path']} row {item['row']} changed since "
                                               "the manifest was made")
                    features[position] = record_features(record, label_field, set(item.get("meta", {})))
                if not left:
                    break
        if left:
            item = chosen[min(p for positions in left.values() for p in positions)]
            raise ManifestMismatch(f"{item['batch']}/{item['path']} row {item['row']} is gone: the file changed "
                                   "since the manifest was made")
    return Examples(features, ["" if i["label"] is None else str(i["label"]) for i in chosen],
                    [float(i.get("weight", 1.0)) for i in chosen])


def label_names(manifest: Mapping[str, Any]) -> list[str]:
    """Every label of the dataset, sorted: class ``i`` is ``label_names()[i]`` for training and evaluation."""
    return sorted({"" if i["label"] is None else str(i["label"]) for i in manifest["items"]})
