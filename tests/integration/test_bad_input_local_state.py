"""A local run's ``state.json`` edited by hand: a pid that is no replica's is never signalled, and a field of the
wrong type is damage reported in one line, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.bad_input import invoke, run_state
from tests.support.gitrepo import GitRepo

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("pid", ["init", "every process", "expctl's own group", "a bool"])
def test_a_state_edited_by_hand_never_signals_what_is_not_a_replica(tmp_path: Path, pid: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``state.json`` edited by hand (or another program's) naming pid 1, -1, expctl's own process group or
    ``true``: `cancel` (and `apply`'s stop of a replaced run) would have sent SIGTERM then SIGKILL to that
    process group. os.killpg is recorded, not called."""
    import json
    import os
    from dataclasses import asdict

    from expctl.backends.local import state as local_state

    value = {"init": 1, "every process": -1, "expctl's own group": os.getpgrp(), "a bool": True}[pid]
    sent: list[tuple[int, int]] = []
    monkeypatch.setattr(os, "killpg", lambda group, sig: sent.append((group, sig)))
    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("initial")
    state = asdict(run_state("bad-1", status="started", phase="Running", finished_at=None))
    state["processes"] = [{"replica": "worker-0", "pid": value, "start_ticks": None, "boot_id": None}]
    run_dir = repo.path / ".expctl" / "runs" / "bad-1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps(state))
    code, _out, err = invoke(repo.path, ("cancel", "bad-1"), {})
    assert sent == []
    assert "Traceback" not in err
    if pid != "expctl's own group":  # a pid no replica has: the state is damaged, the run is not cancelled
        assert code == 1 and "bad-1/state.json: damaged run state" in err
        with pytest.raises(local_state.StateUnreadable):
            local_state.load(run_dir)


@pytest.mark.parametrize("damage", [{"created_at": "yesterday"}, {"finished_at": "x"}, {"env": ["a"]},
                                    {"command": "python"}, {"replicas": "2"}, {"replicas": 10**9},
                                    {"name": "../../elsewhere"}, {"processes": [{"replica": 1, "pid": 5,
                                                                                 "start_ticks": None,
                                                                                 "boot_id": None}]}],
                         ids=lambda d: f"{next(iter(d))}={next(iter(d.values()))!r:.20}")
def test_a_state_field_of_the_wrong_type_is_damage_not_a_traceback(tmp_path: Path, damage: dict[str, object],
                                                                   mlflow_server: Any) -> None:
    """Every field of a hand-edited state.json is type-checked (only four were): status skips the run with one
    warning, commands about it fail in one line; a state in another run's directory is damage too."""
    import json
    from dataclasses import asdict

    repo = GitRepo(tmp_path / "repo")
    repo.write(".gitignore", ".expctl/\n")
    repo.commit("initial")
    run_dir = repo.path / ".expctl" / "runs" / "bad-1"
    run_dir.mkdir(parents=True)
    (run_dir / "state.json").write_text(json.dumps({**asdict(run_state("bad-1")), **damage}))
    env = {"MLFLOW_TRACKING_URI": mlflow_server.uri}
    code, _out, err = invoke(repo.path, ("status",), env)
    assert code == 0 and err.startswith("warning: ") and "bad-1/state.json: damaged run state" in err, err
    for args in (("describe", "bad-1"), ("logs", "bad-1")):
        code, _out, err = invoke(repo.path, args, env)
        assert code == 1 and "Traceback" not in err, err
