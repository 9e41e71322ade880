"""Hostile input, round 3 (continued): more rows of the classes of ``test_bad_input_hygiene.py`` — files that are
not regular or not text, record files that are not what their format says, walks through loops without a glob,
names MLflow would refuse only at apply, and values that would forge output lines. Each row: one error line
naming the file and the key, the right exit code, no traceback, nothing written."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.bad_input import BASE, Case, check
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration


def validation(**fields: str) -> str:
    block = {"metric": "val_accuracy", "threshold": "0.7", "register_as": "m", **fields}
    return BASE + "expctl:\n  validation:\n" + "".join(f"    {k}: {v}\n" for k, v in block.items())


def dataset(source: str, fmt: str = "folders", name: str = "d", batch: str = "b", extra: str = "") -> str:
    return BASE + (f"data:\n  name: {name}\n  format: {fmt}\n  batches: [{{name: {batch}, source: {source}}}]\n"
                   + extra)


def files(content: dict[str, bytes], links: tuple[tuple[str, str], ...] = (),
          fifos: tuple[str, ...] = ()) -> Callable[[GitRepo], None]:
    """Uncommitted files (bytes), symbolic links and FIFOs under the repository."""

    def setup(repo: GitRepo) -> None:
        for rel, data in content.items():
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.path / rel).write_bytes(data)
        for rel, target in links:
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.path / rel).symlink_to(target)
        for rel in fifos:
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            os.mkfifo(repo.path / rel)

    return setup


CSV = b"label,x\ncat,1\ndog,2\n"

CASES = [
    # --- files that are not regular, or not what their format says ------------------------------------------------
    Case("a FIFO as a single-file csv source", {"experiments/e.yaml": dataset("t/a.csv", "csv")},
         setup=files({}, fifos=("t/a.csv",)), expected="not a regular file"),
    Case("a FIFO among a parquet source's files", {"experiments/e.yaml": dataset("t", "parquet")},
         setup=files({}, fifos=("t/a.parquet",)), expected="t/a.parquet: not a regular file"),
    Case("a link to /dev/zero among a folders source's files", {"experiments/e.yaml": dataset("shapes")},
         setup=files({"shapes/cat/1.txt": b"1 2\n"}, links=(("shapes/cat/2.txt", "/dev/zero"),)),
         expected="cat/2.txt: not a regular file"),
    Case("a FIFO among a folders source's files", {"experiments/e.yaml": dataset("shapes")},
         setup=files({"shapes/cat/1.txt": b"1 2\n"}, fifos=("shapes/dog/2.txt",)),
         expected="dog/2.txt: not a regular file"),
    Case("a csv file that is not UTF-8", {"experiments/e.yaml": dataset("t", "csv")},
         setup=files({"t/a.csv": b"label,x\n\xff\xfe,1\n"}),
         expected="a.csv: cannot read as csv: 'utf-8' codec can't decode byte 0xff"),
    Case("a jsonl line that is not JSON", {"experiments/e.yaml": dataset("t", "jsonl")},
         setup=files({"t/a.jsonl": b'{"label": "a"}\n{"label": \n'}),
         expected="a.jsonl: cannot read: line 2 is not JSON"),
    Case("a jsonl line that is a JSON list", {"experiments/e.yaml": dataset("t", "jsonl")},
         setup=files({"t/a.jsonl": b'{"label": "a"}\n\n[1, 2]\n'}),
         expected="a.jsonl: cannot read: line 3 is not a JSON object"),
    Case("a parquet file that is a csv", {"experiments/e.yaml": dataset("t", "parquet")},
         setup=files({"t/a.parquet": CSV}),
         expected="a.parquet: cannot read as parquet: Parquet magic bytes not found"),
    Case("a saved plan that is not UTF-8", args=("apply", "saved.plan"), setup=files({"saved.plan": b"\xff\xfe{}"}),
         also_apply=False, expected="saved.plan: not valid JSON (truncated?): 'utf-8' codec can't decode byte 0xff"),
    # --- walks terminate, without a glob too ------------------------------------------------------------------------
    Case("a folders source with a link to its parent", {"experiments/e.yaml": dataset("shapes")},
         setup=files({"shapes/cat/1.txt": b"1 2\n"}, links=(("shapes/cat/up", ".."),)),
         expected="shapes/cat/up: a symbolic link loop"),
    Case("a csv source directory linking to itself", {"experiments/e.yaml": dataset("t", "csv")},
         setup=files({"t/a.csv": CSV}, links=(("t/again", "."),)), expected="t/again: a symbolic link loop"),
    # --- validate refuses everything apply would refuse -----------------------------------------------------------
    Case("validation alias of 256 characters", {"experiments/e.yaml": validation(alias="a" * 256)},
         expected="expctl.validation.alias: string should have at most 255 characters"),
    Case("validation alias with a space", {"experiments/e.yaml": validation(alias="'a b'")},
         expected="expctl.validation.alias: must be an MLflow alias"),
    Case("register_as of a dot and a name", {"experiments/e.yaml": validation(register_as="./m")},
         expected="expctl.validation.register_as: must be an MLflow model name"),
    Case("a metric name with a newline", {"experiments/e.yaml": validation(metric='"acc\\nerror: forged"')},
         expected="expctl.validation.metric: must be an MLflow metric name"),
    Case("dataset name starting with a dot", {"experiments/e.yaml": dataset("shapes", name="'.hidden'")},
         expected="data.name: must be a name of letters, digits"),
    Case("dataset name of 129 characters", {"experiments/e.yaml": dataset("shapes", name="d" * 129)},
         expected="data.name: string should have at most 128 characters"),
    Case("batch name with a terminal escape", {"experiments/e.yaml": dataset("shapes", batch='"b\\e]0;t\\a"')},
         expected="data.batches.0.name: must be a name of letters, digits"),
    # --- every printed value is escaped -----------------------------------------------------------------------------
    Case("an untracked file name with a bidi override", {"experiments/e.yaml": BASE + "x: ${nope}\n"},
         setup=files({"experiments/a\u202eerror: b.yaml": b"x: 1\n"}), expected="interpolation to a missing key"),
    Case("logs of a run name that forges a line", args=("logs", "x\nerror: forged\x1b[2J"), also_apply=False,
         server=True, expected="x\\nerror: forged\\x1b[2J"),
    Case("describe a run name with an OSC title", args=("describe", "x\x1b]0;owned\x07"), also_apply=False,
         server=True, expected="no run named x\\x1b]0;owned\\x07"),
    Case("cancel a run name with a line separator", args=("cancel", "x\u2028error: forged"), also_apply=False,
         server=True, expected="no run named x\\u2028error: forged"),
    # --- paths mean the repository's paths -------------------------------------------------------------------------
    Case("a relative sqlite tracking URI under a file", {"expctl.yaml": "tracking_uri: sqlite:///expctl.yaml/m.db\n"},
         args=("plan",), also_apply=False, expected="expctl.yaml/m.db: cannot create the store's directory"),
    Case("a raw escape byte in an experiment file", {"experiments/e.yaml": BASE + "x: a\x1b]0;t\x07\n"},
         expected="experiments/e.yaml: YAML syntax error: unacceptable character #x001b"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_round_3_more(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    err = check(tmp_path, case, request)
    assert "\x1b" not in err and "\u2028" not in err and "\u202e" not in err and "\x07" not in err
