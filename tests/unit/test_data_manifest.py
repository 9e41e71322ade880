"""Each combination rule and each data type, table-driven, against hand-computed manifests of real files.

Expected items are written out by hand: content hashes are sha256 of the literal file contents (or of the
canonical JSON of a row), labels and paths are what the files are called. Sample and split decisions are
seeded hashes; their expected outcome is fixed here as golden data, so a change to the rules shows up.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from expctl.data.declare import Batch, Dataset, Filter, Split
from expctl.data.manifest import Manifest
from expctl.data.materialize import Materializer
from expctl.data.scan import DataError

ALL_TRAIN = Split(seed=0, train=1.0, validation=0.0, test=0.0)

FILES = {
    "shapes/b1/circle/a.png": "circle-a",
    "shapes/b1/circle/b.png": "circle-b",
    "shapes/b1/square/a.png": "square-a",
    "shapes/b2/circle/c.png": "circle-c",
    "shapes/b2/square/dup.png": "circle-a",  # same content as b1/circle/a.png
    "shapes/b2/triangle/t.png": "triangle",
    "shapes/b3/circle/z.png": "circle-z",
    "tables/one.csv": "x,label,source\n1,cat,web\n2,dog,lab\n",
    "tables/two.csv": "x,label,source\n3,cat,lab\n",
    "records/r.jsonl": '{"text": "hi", "label": "pos", "lang": "en"}\n\n{"text": "ho", "label": "neg", "lang": "de"}\n',
}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def row_sha(row: dict[str, Any]) -> str:
    return sha(json.dumps(row, sort_keys=True, separators=(",", ":")))


def row_size(row: dict[str, Any]) -> int:
    return len(json.dumps(row, sort_keys=True, separators=(",", ":")).encode())


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for rel, text in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"x": [1.5, 2.5], "label": ["a", "b"]}), tmp_path / "tables" / "p.parquet")
    return tmp_path


def build(decl: Dataset, root: Path) -> Manifest:
    manifest, _ref = Materializer(str(root), None).materialize(decl)
    return manifest


def files(*rows: tuple[str, str, str, str]) -> list[dict[str, Any]]:
    """Expected file items: (batch, path, content, label), all in the train split."""
    return [{"batch": b, "path": p, "size": len(c), "sha256": sha(c), "label": lab, "split": "train"}
            for b, p, c, lab in rows]


def folders(*batches: Batch, **kw: Any) -> Dataset:
    return Dataset(name="shapes", format="folders", batches=batches, split=kw.pop("split", ALL_TRAIN), **kw)


B1 = Batch("b1", "shapes/b1")
B2 = Batch("b2", "shapes/b2")

CSV_ROWS = [("one.csv", 0, {"x": "1", "label": "cat", "source": "web"}),
            ("one.csv", 1, {"x": "2", "label": "dog", "source": "lab"}),
            ("two.csv", 0, {"x": "3", "label": "cat", "source": "lab"})]


def rows(batch: str, table: list[tuple[str, int, dict[str, Any]]], label: str = "label",
         meta: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = []
    for path, row, record in table:
        item = {"batch": batch, "path": path, "row": row, "size": row_size(record), "sha256": row_sha(record),
                "label": None if record.get(label) is None else str(record[label]), "split": "train"}
        if meta:
            item["meta"] = {k: record.get(k) for k in meta}
        out.append(item)
    return out


CASES: list[tuple[str, Dataset, list[dict[str, Any]]]] = [
    ("folders: files labelled by their folder", folders(B1), files(
        ("b1", "circle/a.png", "circle-a", "circle"), ("b1", "circle/b.png", "circle-b", "circle"),
        ("b1", "square/a.png", "square-a", "square"))),
    ("union: batches in declared order", folders(B2, B1), files(
        ("b2", "circle/c.png", "circle-c", "circle"), ("b2", "square/dup.png", "circle-a", "square"),
        ("b2", "triangle/t.png", "triangle", "triangle"), ("b1", "circle/a.png", "circle-a", "circle"),
        ("b1", "circle/b.png", "circle-b", "circle"), ("b1", "square/a.png", "square-a", "square"))),
    ("glob source", folders(Batch("g", "shapes/*/circle/*.png")), files(
        ("g", "b1/circle/a.png", "circle-a", "circle"), ("g", "b1/circle/b.png", "circle-b", "circle"),
        ("g", "b2/circle/c.png", "circle-c", "circle"), ("g", "b3/circle/z.png", "circle-z", "circle"))),
    ("de-duplication by content: the first in canonical order wins", folders(B1, B2, dedupe=True), files(
        ("b1", "circle/a.png", "circle-a", "circle"), ("b1", "circle/b.png", "circle-b", "circle"),
        ("b1", "square/a.png", "square-a", "square"), ("b2", "circle/c.png", "circle-c", "circle"),
        ("b2", "triangle/t.png", "triangle", "triangle"))),
    ("filter: label in", folders(B1, B2, filters=(Filter("label", include=("circle",)),)), files(
        ("b1", "circle/a.png", "circle-a", "circle"), ("b1", "circle/b.png", "circle-b", "circle"),
        ("b2", "circle/c.png", "circle-c", "circle"))),
    ("filter: label not in", folders(B2, filters=(Filter("label", exclude=("circle", "square")),)), files(
        ("b2", "triangle/t.png", "triangle", "triangle"))),
    ("per-batch weight", folders(Batch("b3", "shapes/b3", weight=2.5)),
     [{**files(("b3", "circle/z.png", "circle-z", "circle"))[0], "weight": 2.5}]),
    ("per-batch sampling fraction (seeded: golden)", folders(Batch("b1", "shapes/b1", fraction=0.5), B2),
     files(("b1", "circle/a.png", "circle-a", "circle"), ("b1", "circle/b.png", "circle-b", "circle"),
           ("b2", "circle/c.png", "circle-c", "circle"), ("b2", "square/dup.png", "circle-a", "square"),
           ("b2", "triangle/t.png", "triangle", "triangle"))),
    ("csv: one item per row, label column", Dataset("t", "csv", (Batch("t", "tables/*.csv"),), split=ALL_TRAIN),
     rows("t", CSV_ROWS)),
    ("csv: metadata filter", Dataset("t", "csv", (Batch("t", "tables"),), meta=("source",), split=ALL_TRAIN,
                                     filters=(Filter("source", include=("lab",)),)),
     rows("t", [CSV_ROWS[1], CSV_ROWS[2]], meta=("source",))),
    ("parquet: typed rows", Dataset("p", "parquet", (Batch("p", "tables/p.parquet"),), split=ALL_TRAIN),
     rows("p", [("p.parquet", 0, {"x": 1.5, "label": "a"}), ("p.parquet", 1, {"x": 2.5, "label": "b"})])),
    ("jsonl: one item per record, blank lines skipped", Dataset("j", "jsonl", (Batch("j", "records"),),
                                                                meta=("lang",), split=ALL_TRAIN),
     rows("j", [("r.jsonl", 0, {"text": "hi", "label": "pos", "lang": "en"}),
                ("r.jsonl", 1, {"text": "ho", "label": "neg", "lang": "de"})], meta=("lang",))),
]


@pytest.mark.parametrize(("decl", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_manifest_items(root: Path, decl: Dataset, expected: list[dict[str, Any]]) -> None:
    assert build(decl, root).as_json()["items"] == expected


SPLIT_CASES = [
    ("all train", Split(0, 1.0, 0.0, 0.0), {"train": 7}),
    ("all test", Split(0, 0.0, 0.0, 1.0), {"test": 7}),
    ("seeded 50/25/25 (golden)", Split(0, 0.5, 0.25, 0.25), {"train": 3, "validation": 1, "test": 3}),
    ("another seed moves items (golden)", Split(7, 0.5, 0.25, 0.25), {"train": 1, "validation": 3, "test": 3}),
]


@pytest.mark.parametrize(("split", "counts"), [c[1:] for c in SPLIT_CASES], ids=[c[0] for c in SPLIT_CASES])
def test_seeded_split(root: Path, split: Split, counts: dict[str, int]) -> None:
    decl = folders(B1, B2, Batch("b3", "shapes/b3"), split=split)
    assert build(decl, root).counts() == counts
    assert build(decl, root).digest == build(decl, root).digest


def test_an_item_keeps_its_split_when_a_batch_is_added(root: Path) -> None:
    split = Split(3, 0.5, 0.25, 0.25)
    before = {(i.batch, i.path): i.split for i in build(folders(B1, split=split), root).items}
    after = {(i.batch, i.path): i.split for i in build(folders(B1, B2, split=split), root).items}
    assert {k: after[k] for k in before} == before


def test_identical_content_lands_in_the_same_split(root: Path) -> None:
    manifest = build(folders(B1, B2, split=Split(1, 0.34, 0.33, 0.33)), root)
    by_path = {(i.batch, i.path): i.split for i in manifest.items}
    assert by_path[("b1", "circle/a.png")] == by_path[("b2", "square/dup.png")]


def test_the_digest_is_the_same_under_two_absolute_roots(root: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    other = tmp_path_factory.mktemp("elsewhere") / "copy"
    shutil.copytree(root, other)
    decl = folders(B1, B2, split=Split(0, 0.6, 0.2, 0.2))
    here, there = build(decl, root), build(decl, other)
    assert here.digest == there.digest and here.batches == there.batches
    assert dict(here.locations) != dict(there.locations)  # where the data is stays out of the digest


def test_adding_a_file_changes_the_digest_and_only_its_batch_digest(root: Path) -> None:
    decl = folders(B1, B2)
    before = build(decl, root)
    (root / "shapes" / "b2" / "circle" / "new.png").write_text("new")
    after = build(decl, root)
    assert before.digest != after.digest
    assert before.batches[0] == after.batches[0] and before.batches[1] != after.batches[1]


def test_the_hash_cache_reads_an_unchanged_file_once(root: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = Materializer(str(root), state)
    first.materialize(folders(B1))
    first.commit()
    assert first.cache.misses == 3
    second = Materializer(str(root), state)
    assert second.materialize(folders(B1))[0].digest == first.materialize(folders(B1))[0].digest
    assert (second.cache.hits, second.cache.misses) == (3, 0)
    (root / "shapes" / "b1" / "circle" / "a.png").write_text("changed!")
    third = Materializer(str(root), state)
    third.materialize(folders(B1))
    assert (third.cache.hits, third.cache.misses) == (2, 1)


def test_an_fsspec_url_source_gives_the_same_manifest_as_the_path(root: Path) -> None:
    from_path = build(folders(B1), root)
    from_url = build(folders(Batch("b1", (root / "shapes" / "b1").as_uri())), root)
    assert from_url.digest == from_path.digest


def test_an_fsspec_memory_filesystem(root: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    for name, text in (("circle/a.png", "circle-a"), ("circle/b.png", "circle-b"), ("square/a.png", "square-a")):
        fs.pipe(f"/expctl-test/b1/{name}", text.encode())
    try:
        from_memory = build(folders(Batch("b1", "memory://expctl-test/b1")), root)
    finally:
        fs.rm("/expctl-test", recursive=True)
    assert from_memory.digest == build(folders(B1), root).digest


ERRORS = [
    ("missing path", folders(Batch("b1", "shapes/nope")), "batches[0] (b1): ", "no such file or directory"),
    ("glob matching nothing", folders(Batch("b1", "shapes/*/nope/*.png")), "batches[0] (b1): ", "matches no files"),
    ("empty after filters", folders(B1, filters=(Filter("label", include=("hexagon",)),)), "",
     "no items left after the filters"),
]


@pytest.mark.parametrize(("decl", "where", "what"), [c[1:] for c in ERRORS], ids=[c[0] for c in ERRORS])
def test_broken_declarations(root: Path, decl: Dataset, where: str, what: str) -> None:
    with pytest.raises(DataError) as info:
        build(decl, root)
    assert str(info.value).startswith(where) and what in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(("fmt", "name", "content", "what"), [
    ("jsonl", "bad.jsonl", '{"a": 1}\nnot json\n', "bad.jsonl: cannot read: line 2 is not JSON"),
    ("jsonl", "list.jsonl", "[1, 2]\n", "list.jsonl: cannot read: line 1 is not a JSON object"),
    ("parquet", "bad.parquet", "not parquet at all", "bad.parquet: cannot read as parquet"),
    ("csv", "bad.csv", "\udcff", "bad.csv: cannot read as csv"),
])
def test_unreadable_files(tmp_path: Path, fmt: str, name: str, content: str, what: str) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / name).write_bytes(content.encode("utf-8", "surrogateescape"))
    with pytest.raises(DataError, match="^batches\\[0\\] \\(x\\): " + what.replace("(", "\\(")):
        build(Dataset("d", fmt, (Batch("x", "d"),), split=ALL_TRAIN), tmp_path)
