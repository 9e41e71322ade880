"""Hostile input, round 3, table-driven like ``test_bad_input.py`` (one error line naming the file and the key, the
right exit code, no traceback, nothing written): values that would forge output lines (file names, run names),
file names that are not UTF-8, files that are not regular or never end (``/dev/zero``, FIFOs, sparse giants),
dataset URLs holding a token, names MLflow would refuse only at apply (reserved aliases, path-like names), walks
through symbolic link loops, and filters on fields no item has."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.bad_input import BASE, Case, check
from tests.support.gitrepo import GitRepo
from tests.support.http_files import FileServer, serve_files

pytestmark = pytest.mark.integration

BAD_NAME = "experiments/bad\udcff.yaml"  # the byte 0xff: not UTF-8 (git stores names as bytes)
FORGED = "experiments/x\nerror: forged"


def validation(**fields: str) -> str:
    block = {"metric": "val_accuracy", "threshold": "0.7", "register_as": "m", **fields}
    return BASE + "expctl:\n  validation:\n" + "".join(f"    {k}: {v}\n" for k, v in block.items())


def promote(alias: str) -> str:
    return validation() + f"    promote:\n      alias: {alias}\n"


def dataset(source: str, fmt: str = "folders", name: str = "d", batch: str = "b", extra: str = "") -> str:
    return BASE + (f"data:\n  name: {name}\n  format: {fmt}\n  batches: [{{name: {batch}, source: {source}}}]\n"
                   + extra)


def untracked(*names: str) -> Callable[[GitRepo], None]:
    """Files under experiments/ that are not committed (the dirty-tree warning names them)."""

    def setup(repo: GitRepo) -> None:
        for name in names:
            (repo.path / name).write_text("x: 1\n")

    return setup


def special(rel: str, kind: str, size: int = 0) -> Callable[[GitRepo], None]:
    """``rel`` a FIFO, a socket-free stand-in for a device (a link to /dev/zero), or a sparse file of ``size``."""

    def setup(repo: GitRepo) -> None:
        path = repo.path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "device":
            path.symlink_to("/dev/zero")
        else:
            with open(path, "wb") as fh:
                fh.truncate(size)  # sparse: costs no disk, and has no newline

    return setup


def shapes(*links: tuple[str, str]) -> Callable[[GitRepo], None]:
    """Uncommitted data under the repository: csv tables, and symbolic links (loops)."""

    def setup(repo: GitRepo) -> None:
        for rel in ("shapes/cat/t.csv", "shapes/dog/t.csv"):
            (repo.path / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo.path / rel).write_text("label,x\ncat,1\ndog,2\n")
        for rel, target in links:
            (repo.path / rel).symlink_to(target)

    return setup


def plan_file(kind: str, size: int = 0) -> Callable[[GitRepo], None]:
    return special("saved.plan", kind, size)


CASES = [
    # --- every printed value is escaped: a forged line would be a second "error:" line --------------------------
    Case("an untracked file name forges an error line", {"experiments/e.yaml": BASE + "x: ${nope}\n"},
         setup=untracked(FORGED), expected="experiments/e.yaml: x: interpolation to a missing key"),
    Case("an untracked file name with terminal escapes", {"experiments/e.yaml": BASE + "x: ${nope}\n"},
         setup=untracked("experiments/\x1b]0;owned\x07\x1b[2J.yaml"), expected="interpolation to a missing key"),
    Case("an untracked file name that is not UTF-8 (validate)", {"experiments/e.yaml": BASE + "x: ${nope}\n"},
         setup=untracked(BAD_NAME), expected="experiments/e.yaml: x: interpolation to a missing key"),
    Case("an untracked file name with a Unicode line separator", {"experiments/e.yaml": BASE + "x: ${nope}\n"},
         setup=untracked("experiments/a\u2028error: b.yaml"), expected="interpolation to a missing key"),
    # --- file names are whatever the filesystem allows -------------------------------------------------------
    Case("a committed experiment whose name is not UTF-8", {BAD_NAME: BASE},
         expected="experiments/bad\\udcff.yaml: not a UTF-8 file name (git stores it as bytes)"),
    Case("a committed conf file whose name is not UTF-8", {"conf/model/bad\udcfe.yaml": "name: x\n"},
         expected="conf/model/bad\\udcfe.yaml: not a UTF-8 file name"),
    Case("a non-UTF-8 name with a newline", {"experiments/a\udcff\nerror: b.yaml": BASE},
         expected="experiments/a\\udcff\\nerror: b.yaml: not a UTF-8 file name"),
    Case("/dev/zero as a saved plan", args=("apply", "/dev/zero"), also_apply=False,
         expected="/dev/zero: not a regular file (a FIFO, socket or device), so not a saved plan"),
    Case("a FIFO as a saved plan", args=("apply", "saved.plan"), setup=plan_file("fifo"), also_apply=False,
         expected="saved.plan: not a regular file (a FIFO, socket or device), so not a saved plan"),
    Case("a link to /dev/zero as a saved plan", args=("apply", "saved.plan"), setup=plan_file("device"),
         also_apply=False, expected="saved.plan: not a regular file"),
    Case("a saved plan of 65 MiB", args=("apply", "saved.plan"), setup=plan_file("sparse", 65 << 20),
         also_apply=False, expected="saved.plan: 68157440 bytes: more than the 67108864 bytes a saved plan may have"),
    Case("a jsonl line of 17 MiB", {"experiments/e.yaml": dataset("big", "jsonl", extra="  label: null\n")},
         setup=special("big/a.jsonl", "sparse", 17 << 20), expected="a.jsonl: cannot read: line 1 is longer than"),
    Case("a FIFO among a jsonl source's files", {"experiments/e.yaml": dataset("t", "jsonl")},
         setup=special("t/a.jsonl", "fifo"), expected="t/a.jsonl: not a regular file"),
    Case("a link to /dev/zero among a csv source's files", {"experiments/e.yaml": dataset("t/*.csv", "csv")},
         setup=special("t/a.csv", "device"), expected="t/a.csv: not a regular file"),
    # --- walks terminate -------------------------------------------------------------------------------------
    Case("a ** glob through a link to a parent", {"experiments/e.yaml": dataset("shapes/**/*.csv", "csv")},
         setup=shapes(("shapes/cat/up", "..")), expected="shapes/cat/up: a symbolic link loop"),
    Case("a ** glob through two link loops", {"experiments/e.yaml": dataset("shapes/**/*.csv", "csv")},
         setup=shapes(("shapes/cat/up", ".."), ("shapes/dog/top", "../..")), expected="a symbolic link loop"),
    Case("a glob through a link to itself", {"experiments/e.yaml": dataset("shapes/**/*.csv", "csv")},
         setup=shapes(("shapes/self", ".")), expected="shapes/self: a symbolic link loop"),
    Case("a glob matching nothing but hidden files", {"experiments/e.yaml": dataset("shapes/*.csv", "csv")},
         setup=shapes(), expected="shapes/*.csv: matches no files"),
    # --- validate refuses everything apply would refuse --------------------------------------------------------
    Case("validation alias latest", {"experiments/e.yaml": validation(alias="latest")},
         expected="experiments/e.yaml: expctl.validation.alias: value error, 'latest' is reserved by MLflow's"),
    Case("validation alias LATEST", {"experiments/e.yaml": validation(alias="LATEST")},
         expected="expctl.validation.alias: value error, 'LATEST' is reserved"),
    Case("validation alias v3", {"experiments/e.yaml": validation(alias="v3")},
         expected="expctl.validation.alias: value error, 'v3' is reserved"),
    Case("validation alias with a slash", {"experiments/e.yaml": validation(alias="a/b")},
         expected="expctl.validation.alias: must be an MLflow alias"),
    Case("validation alias with a dot", {"experiments/e.yaml": validation(alias="prod.1")},
         expected="expctl.validation.alias: must be an MLflow alias"),
    Case("promote alias Latest", {"experiments/e.yaml": promote("Latest")},
         expected="expctl.validation.promote.alias: value error, 'Latest' is reserved"),
    Case("promote alias V12", {"experiments/e.yaml": promote("V12")},
         expected="expctl.validation.promote.alias: value error, 'V12' is reserved"),
    Case("register_as with a colon", {"experiments/e.yaml": validation(register_as="'a:b'")},
         expected="expctl.validation.register_as: must be an MLflow model name"),
    Case("register_as with a slash", {"experiments/e.yaml": validation(register_as="team/model")},
         expected="expctl.validation.register_as: must be an MLflow model name"),
    Case("register_as a path", {"experiments/e.yaml": validation(register_as="..")},
         expected="expctl.validation.register_as: value error, '..' would be read as the path"),
    Case("register_as blank", {"experiments/e.yaml": validation(register_as="' '")},
         expected="expctl.validation.register_as: must be an MLflow model name"),
    Case("a metric name MLflow refuses", {"experiments/e.yaml": validation(metric="'acc!'")},
         expected="expctl.validation.metric: must be an MLflow metric name"),
    Case("a metric name that is a path", {"experiments/e.yaml": validation(metric="a//b")},
         expected="expctl.validation.metric: value error, 'a//b' would be read as the path 'a/b'"),
    Case("dataset named ../..", {"experiments/e.yaml": dataset("shapes", name="../..")},
         expected="experiments/e.yaml: data.name: must be a name of letters, digits"),
    Case("dataset named .", {"experiments/e.yaml": dataset("shapes", name="'.'")},
         expected="data.name: must be a name of letters, digits"),
    Case("dataset name with a slash", {"experiments/e.yaml": dataset("shapes", name="a/b")},
         expected="data.name: must be a name of letters, digits"),
    Case("batch named a/b", {"experiments/e.yaml": dataset("shapes", batch="a/b")},
         expected="data.batches.0.name: must be a name of letters, digits"),
    Case("batch name with a newline", {"experiments/e.yaml": dataset("shapes", batch='"a\\nb"')},
         expected="data.batches.0.name: must be a name of letters, digits"),
    # --- filters say what they did ----------------------------------------------------------------------------
    Case("a filter's field misspelt, with not_in",
         {"experiments/e.yaml": dataset("shapes", extra="  filters: [{field: lable, not_in: [cat]}]\n")},
         expected="data: value error, filters.0.field: 'lable' is neither the label nor one of meta ['label']: "
                  "no item has it (did you mean 'label'?)"),
    Case("a filter's field misspelt, with in",
         {"experiments/e.yaml": dataset("t", "csv", extra="  meta: [site]\n  filters: [{field: sites, in: [a]}]\n")},
         expected="'sites' is neither the label nor one of meta ['label', 'site']: no item has it (did you mean "
                  "'site'?)"),
    Case("a filter on the label of a dataset without one",
         {"experiments/e.yaml": dataset("t", "csv", extra="  label: null\n  filters: [{field: label, in: [a]}]\n")},
         expected="'label' is neither the label nor one of meta []"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_round_3(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    err = check(tmp_path, case, request)
    assert "\x1b" not in err and "\u2028" not in err


@pytest.fixture(scope="module")
def files() -> Iterator[FileServer]:
    with serve_files({"d.csv": b"label,x\ncat,1\ndog,2\n"}) as server:
        yield server


SECRETS = [("token", "tok3n-SECRET-value"), ("X-Amz-Signature", "s1gnature-SECRET"),
           ("sig", "azure-SECRET-sig"), ("X-Goog-Credential", "goog-SECRET-cred")]


@pytest.mark.parametrize(("param", "secret"), SECRETS)
def test_a_url_token_is_never_printed(tmp_path: Path, files: FileServer, param: str, secret: str,
                                      request: pytest.FixtureRequest) -> None:
    """A dataset URL that fails (404) with a secret query value: the error line hides it."""
    url = f"{files.url}/missing.csv?{param}={secret}"
    case = Case(f"a {param} URL", {"experiments/e.yaml": dataset(f"'{url}'", "csv")},
                expected=f"{files.url}/missing.csv")
    err = check(tmp_path, case, request)
    assert secret not in err


def test_a_single_file_http_source_keeps_no_token_in_its_manifest(tmp_path: Path, files: FileServer) -> None:
    """The item path of a single-file URL is the file's name, not ``d.csv?token=…``; the manifest (what MLflow
    logs as an artifact) and the hash cache hold no token."""
    from tests.support.bad_input import invoke
    from tests.support.gitrepo import minimal_repo

    url = f"{files.url}/d.csv?token=SECRETVALUE&X-Amz-Signature=SIGVALUE"
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": dataset(f"'{url}'", "csv"),
                                            ".gitignore": ".expctl/\n"})
    code, _out, err = invoke(repo.path, ("validate",), {})
    assert code == 0, err
    written = [p for p in (repo.path / ".expctl").rglob("*") if p.is_file()]
    manifests = [p for p in written if "manifests" in p.parts]
    assert manifests, written
    text = manifests[0].read_text()
    assert '"d.csv"' in text and f"{files.url}/d.csv" not in err
    for path in written:
        data = path.read_bytes()
        assert b"SECRETVALUE" not in data and b"SIGVALUE" not in data, path
