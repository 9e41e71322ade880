"""Logs kept after the job: the size-capped tail, which runs get theirs kept, and where ``logs`` reads from."""

from __future__ import annotations

from dataclasses import replace

import pytest

from expctl.core.errors import ExpctlError
from expctl.core.model import FailureClass, Phase
from expctl.engine.logs import keep_finished, live_or_kept, tail
from tests.support.factories import make_launch, make_spec
from tests.support.fakes import FakeBackend, FakeLogTracker, FakeTracker


@pytest.mark.parametrize(("lines", "cap", "expected"), [
    (["a", "b", "c"], 100, "a\nb\nc\n"),
    ([], 100, ""),
    (["é" * 10], 100, "é" * 10 + "\n"),  # bytes, not characters
])
def test_tail_keeps_everything_that_fits(lines: list[str], cap: int, expected: str) -> None:
    assert tail(lines, cap) == expected


@pytest.mark.parametrize("cap", [100, 257, 1000])
def test_tail_is_capped_and_says_what_it_cut(cap: int) -> None:
    lines = [f"line {i:04d} " + "x" * (i % 7) for i in range(500)]
    text = tail(lines, cap)
    assert len(text.encode()) <= cap
    note, *kept = text.splitlines()
    assert note.startswith("[expctl: ") and note.endswith(f"earlier bytes not kept (tail of {cap} bytes)]")
    assert kept and kept == lines[-len(kept):]  # whole lines, the last ones
    cut = int(note.split()[1])
    assert cut == sum(len(line) + 1 for line in lines[: -len(kept)])


class LinesBackend(FakeBackend):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0
        self.lines = {"master-0": [f"m{i}" for i in range(50)], "worker-0": ["w"]}

    def replicas(self, name: str) -> list[str]:
        return sorted(self.lines)

    def logs(self, name: str, replica: str | None = None, follow: bool = False):  # type: ignore[no-untyped-def]
        self.reads += 1
        if name not in self.objects:
            raise ExpctlError(f"no run named {name}")
        return iter(self.lines[replica] if replica else [])


def _backend_with_runs() -> tuple[LinesBackend, list[str]]:
    backend = LinesBackend()
    names = []
    for experiment in ("done", "running"):
        launch = make_launch(make_spec(experiment), run_id=f"id-{experiment}")
        backend.create(launch)
        names.append(launch.name)
    backend.finish(names[0], Phase.FAILED, FailureClass.INFRASTRUCTURE, at=1.0)
    return backend, names


def test_keep_finished_stores_each_finished_run_once() -> None:
    backend, (done, _) = _backend_with_runs()
    tracker = FakeLogTracker(tail_bytes=128)
    assert keep_finished(backend, tracker, backend.observe()) == [done]
    logs = tracker.kept["id-done"]
    assert logs is not None and set(logs) == {"master-0", "worker-0"} and logs["worker-0"] == "w\n"
    assert len(logs["master-0"].encode()) <= 128 and logs["master-0"].endswith("m49\n")
    assert "id-running" not in tracker.kept  # unfinished: not yet
    reads = backend.reads
    assert keep_finished(backend, tracker, backend.observe()) == []  # once
    assert backend.reads == reads
    gone = [replace(r, live=False) for r in backend.observe()]  # only MLflow remembers it: nothing to read
    assert keep_finished(backend, FakeLogTracker(), gone) == []
    assert keep_finished(backend, FakeTracker(), backend.observe()) == []  # a tracker that cannot keep logs


def test_keep_finished_records_why_there_were_no_logs() -> None:
    backend, (done, _) = _backend_with_runs()
    tracker = FakeLogTracker()
    observed = backend.observe()
    backend.objects.pop(done)  # its pods/files are gone before the sync reads them
    keep_finished(backend, tracker, observed)
    assert tracker.kept["id-done"] is None and tracker.why_not["id-done"] == f"no run named {done}"


def test_a_run_without_replicas_left_is_said_so_without_reading_logs() -> None:
    backend, _ = _backend_with_runs()
    tracker = FakeLogTracker()
    observed = backend.observe()
    backend.lines = {}  # the job is there, but no replica has logs left (Kubernetes: its pods are gone)
    keep_finished(backend, tracker, observed)
    assert tracker.kept["id-done"] is None and "has no replica with logs left" in tracker.why_not["id-done"]
    assert backend.reads == 0


def test_logs_are_live_while_the_job_exists_then_kept() -> None:
    backend, (done, _) = _backend_with_runs()
    tracker = FakeLogTracker()
    tracker.remembered = [replace(r, live=False) for r in backend.observe()]
    keep_finished(backend, tracker, backend.observe())
    source, lines = live_or_kept(backend, lambda: tracker, done, "worker-0", False)
    assert source == "live from the fake backend" and list(lines) == ["w"]
    backend.delete(done)
    source, lines = live_or_kept(backend, lambda: tracker, done, None, False)
    assert source.startswith("from MLflow artifacts of run id-done (the job's own logs are gone: no run named")
    every = list(lines)
    assert every[-1] == "[worker-0] w" and "[master-0] m49" in every
    assert list(live_or_kept(backend, lambda: tracker, done, "worker-0", False)[1]) == ["w"]
    with pytest.raises(ExpctlError, match="no kept logs of replica 'chief-0'"):
        list(live_or_kept(backend, lambda: tracker, done, "chief-0", False)[1])
    with pytest.raises(ExpctlError, match="no run named nothing"):  # neither live nor kept: the backend's error
        live_or_kept(backend, lambda: tracker, "nothing", None, False)


def test_a_tracking_store_that_fails_never_fails_the_sync() -> None:
    backend, _ = _backend_with_runs()
    tracker = FakeLogTracker()
    tracker.down = True
    assert keep_finished(backend, tracker, backend.observe()) == []
    tracker.down = False
    assert len(keep_finished(backend, tracker, backend.observe())) == 1  # the next sync tries again
