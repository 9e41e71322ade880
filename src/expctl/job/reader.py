"""What a job reads: exactly the items of its manifest, as feature vectors and labels (for training code and
the platform's default evaluator).

I/O, standard library (fsspec only for URL locations, pyarrow only for Parquet). Every item is checked against
its content hash, so a job never trains on data that changed after the plan. Feature conventions:
``folders`` — each file holds numbers separated by commas or whitespace; records (csv, parquet, jsonl) — the
list field ``x`` if there is one, else every numeric field except the label, in field-name order.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from expctl.core.naming import canonical_json

_NUMBERS = re.compile(r"[,\s]+")


class ManifestMismatch(Exception):
    """An item's content on disk is not what the manifest says: the data changed after the plan."""


@dataclass(frozen=True)
class Examples:
    features: list[list[float]]
    labels: list[str]
    weights: list[float]


def _read_bytes(location: str) -> bytes:
    if "://" in location and not location.startswith("file://"):
        import fsspec

        with fsspec.open(location, "rb") as fh:
            data: bytes = fh.read()
            return data
    with open(location.removeprefix("file://"), "rb") as fh:
        return fh.read()


def _records(fmt: str, data: bytes) -> list[dict[str, Any]]:
    if fmt == "csv":
        return [dict(r) for r in csv.DictReader(io.StringIO(data.decode("utf-8")))]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        rows: list[dict[str, Any]] = pq.read_table(io.BytesIO(data)).to_pylist()
        return rows
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


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
    """The features, labels and weights of the manifest's items in ``split`` (None: all), in manifest order."""
    fmt, label_field = manifest["format"], manifest.get("label_field")
    where = {b["name"]: b["location"] for b in manifest["batches"]}
    files: dict[str, bytes] = {}
    parsed: dict[str, list[dict[str, Any]]] = {}
    out = Examples([], [], [])
    for item in manifest["items"]:
        if split is not None and item["split"] != split:
            continue
        location = where[item["batch"]].rstrip("/") + "/" + item["path"]
        if location not in files:
            files[location] = _read_bytes(location)
        if item.get("row") is None:
            data = files[location]
            if hashlib.sha256(data).hexdigest() != item["sha256"]:
                raise ManifestMismatch(f"{item['batch']}/{item['path']} changed since the manifest was made")
            features = [float(v) for v in _NUMBERS.split(data.decode("utf-8").strip()) if v]
        else:
            if location not in parsed:
                parsed[location] = _records(fmt, files[location])
            record = parsed[location][item["row"]]
            if hashlib.sha256(canonical_json(record).encode()).hexdigest() != item["sha256"]:
                raise ManifestMismatch(f"{item['batch']}/{item['path']} row {item['row']} changed since the "
                                       "manifest was made")
            features = record_features(record, label_field, set(item.get("meta", {})))
        out.features.append(features)
        out.labels.append("" if item["label"] is None else str(item["label"]))
        out.weights.append(float(item.get("weight", 1.0)))
    return out


def label_names(manifest: Mapping[str, Any]) -> list[str]:
    """Every label of the dataset, sorted: class ``i`` is ``label_names()[i]`` for training and evaluation."""
    return sorted({"" if i["label"] is None else str(i["label"]) for i in manifest["items"]})
