"""The ledger of settled runs, as MLflow tags: pure encoding and decoding (no I/O, no MLflow import).

A *settled* run is one nothing will write to again (finished, its logs kept, its gate decided): expctl copies
what the plan and ``sync`` read of it (status, times, tags but the description, latest metrics) into the
ledger and takes it out of the one search of every managed run, so that a no-op plan no longer reads every run
ever launched. The ledger is one MLflow run (``tracking/mlflow/ledger``); each settling appends one *batch*:
its records as JSON, compressed (zlib) and base64-encoded, split over tags ``expctl.ledger.<batch>.<part>`` of
at most 8,000 characters (MLflow's limit), then a header tag ``expctl.ledger.<batch>`` with the number of parts
and the SHA-256 of the text. A batch is named ``<seq>-<writer>``: its number, then 8 random hex digits of the
apply that wrote it, so that two applies settling into one ledger at once (two projects or namespaces on one
tracking server, each under its own lock) never write the same tags; later numbers win, and within one number
either copy will do (both were read from MLflow). The header is written last: a batch without one is an
interrupted write (its runs were not taken out of the search yet) and is ignored. A batch whose parts do not
match its header, or that does not decode, is *damaged*: ``decode`` says so and the store reads every settled
run instead.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from expctl.core import safe_json
from expctl.tracking.mlflow.rest_search import Run, RunData, RunInfo

PREFIX = "expctl.ledger"
MARK = "expctl.ledger"  # the ledger run's own tag ("true"; "replaced" once a rebuilt ledger superseded it)
SETTLED = "settled"  # the value of a settled run's ``expctl.managed`` tag (the search asks for "true")
_PART = 8000  # MLflow's limit on a tag's value
_MAX_BATCH_BYTES = 256 * 1024 * 1024  # a batch never inflates past this (a hostile tag cannot exhaust memory)
_HEADER = re.compile(r"^expctl\.ledger\.(\d{6})(?:-([0-9a-f]{8}))?$")
_CHUNK = re.compile(r"^expctl\.ledger\.(\d{6})(?:-([0-9a-f]{8}))?\.(\d{4,})$")
_WRITER = re.compile(r"^([0-9a-f]{8})?$")
Batch = tuple[int, str]  # (seq, writer)
# not copied into the ledger: the description is for people (the UI), and large
_NOT_KEPT = frozenset({"mlflow.note.content"})


@dataclass(frozen=True)
class Decoded:
    runs: list[Run]
    next_seq: int  # the number the next batch takes
    damaged: str = ""  # why a batch could not be read ("" when every complete batch decoded)


def record_of(run: Any) -> list[Any]:
    """A settled run as a compact JSON value (from MLflow's run entity or ``rest_search.Run``)."""
    info, data = run.info, run.data
    tags = {k: v for k, v in dict(data.tags).items() if k not in _NOT_KEPT}
    tags["expctl.managed"] = SETTLED
    return [info.run_id, str(info.experiment_id), info.status, info.start_time, info.end_time, tags,
            {k: float(v) for k, v in dict(data.metrics or {}).items()}]


def run_of_record(record: Any) -> Run:
    """The run a record describes (ValueError when it is not a record)."""
    if not isinstance(record, list) or len(record) != 7:
        raise ValueError("a ledger record is a list of 7 values")
    run_id, experiment_id, status, start, end, tags, metrics = record
    if not (isinstance(run_id, str) and run_id and isinstance(experiment_id, str) and isinstance(status, str)):
        raise ValueError("a ledger record's run id, experiment and status are strings")
    if not all(t is None or (isinstance(t, int) and not isinstance(t, bool)) for t in (start, end)):
        raise ValueError("a ledger record's times are integers")
    if not (isinstance(tags, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in tags.items())):
        raise ValueError("a ledger record's tags are strings")
    if not (isinstance(metrics, dict) and all(isinstance(k, str) and isinstance(v, (int, float))
                                              and not isinstance(v, bool) for k, v in metrics.items())):
        raise ValueError("a ledger record's metrics are numbers")
    return Run(RunInfo(run_id, experiment_id, status, start, end, "active"),
               RunData(dict(tags), {}, {k: float(v) for k, v in metrics.items()}))


def encode(seq: int, runs: Sequence[Any], writer: str = "") -> dict[str, str]:
    """The tags of batch ``seq`` of ``writer`` (8 hex digits; "" only in tests) holding ``runs``: its parts,
    then its header (write them in this order)."""
    if not 0 <= seq <= 999_999:
        raise ValueError(f"ledger batch number {seq} out of range")
    if not _WRITER.match(writer):
        raise ValueError(f"ledger writer {writer!r} is not 8 hex digits")
    name = f"{seq:06d}-{writer}" if writer else f"{seq:06d}"
    text = json.dumps([record_of(r) for r in runs], separators=(",", ":"), allow_nan=True)  # NaN losses happen
    payload = base64.b64encode(zlib.compress(text.encode(), 6)).decode()
    parts = [payload[i : i + _PART] for i in range(0, len(payload), _PART)] or [""]
    tags = {f"{PREFIX}.{name}.{i:04d}": part for i, part in enumerate(parts)}
    header = {"parts": len(parts), "sha256": hashlib.sha256(payload.encode()).hexdigest(), "runs": len(runs)}
    tags[f"{PREFIX}.{name}"] = json.dumps(header, sort_keys=True)
    return tags


def _inflate(payload: str) -> bytes:
    inflater = zlib.decompressobj()
    out = inflater.decompress(base64.b64decode(payload, validate=True), _MAX_BATCH_BYTES)
    if inflater.unconsumed_tail:
        raise ValueError("the batch inflates past its size limit")
    return out


def _batch(header_text: str, chunks: Mapping[int, str]) -> list[Run]:
    header = safe_json.loads(header_text)
    if not isinstance(header, dict) or not isinstance(header.get("parts"), int) or \
            not isinstance(header.get("sha256"), str):
        raise ValueError("its header is not {parts, sha256}")
    if sorted(chunks) != list(range(header["parts"])):
        raise ValueError(f"it has {len(chunks)} of its {header['parts']} parts")
    payload = "".join(chunks[i] for i in range(header["parts"]))
    if hashlib.sha256(payload.encode()).hexdigest() != header["sha256"]:
        raise ValueError("its parts do not match its checksum")
    records = safe_json.loads(_inflate(payload))
    if not isinstance(records, list):
        raise ValueError("it is not a list of records")
    return [run_of_record(r) for r in records]


def decode(ledgers: Iterable[Mapping[str, str]]) -> Decoded:
    """Every settled run in the ledgers' tags (a later batch's copy of a run wins); damaged batches named."""
    runs: dict[str, Run] = {}
    next_seq, damaged = 0, ""
    for tags in ledgers:
        headers: dict[Batch, str] = {}
        chunks: dict[Batch, dict[int, str]] = {}
        for key, value in tags.items():
            if (match := _HEADER.match(key)) is not None:
                headers[int(match.group(1)), match.group(2) or ""] = value
            elif (match := _CHUNK.match(key)) is not None:
                chunks.setdefault((int(match.group(1)), match.group(2) or ""), {})[int(match.group(3))] = value
        next_seq = max([next_seq, *(s + 1 for s, _ in headers), *(s + 1 for s, _ in chunks)])
        for seq, writer in sorted(headers):
            try:
                batch = _batch(headers[seq, writer], chunks.get((seq, writer), {}))
            except (ValueError, zlib.error, binascii.Error, RecursionError) as exc:
                damaged = damaged or f"batch {seq}{'-' + writer if writer else ''}: {exc}"
                continue
            runs.update((run.info.run_id, run) for run in batch)
    return Decoded(list(runs.values()), next_seq, damaged)


__all__ = ["MARK", "PREFIX", "SETTLED", "Decoded", "decode", "encode", "record_of", "run_of_record"]
