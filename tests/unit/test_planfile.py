"""A saved plan read back: typed, and a hand-edited or truncated file is one line naming file and key."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from expctl.core import planfile, views
from expctl.core.errors import ExpctlError, StalePlanError
from expctl.core.model import Action, Change, Plan, Reason
from tests.support.factories import make_spec


def _plan() -> Plan:
    spec = make_spec("demo")
    change = Change(Action.CREATE, Reason.MISSING, "demo", spec.run_key, spec.name, (), spec.spec_hash, 1, spec)
    return Plan("c" * 40, "local", (change,), "f" * 16)


def _saved(tmp_path: Path, edit: Any = None, text: str | None = None) -> Path:
    data = views.as_dict(_plan())
    if edit is not None:
        edit(data)
    path = tmp_path / "plan.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path


def test_round_trip_is_typed_and_fresh(tmp_path: Path) -> None:
    saved = planfile.load(_saved(tmp_path))
    assert saved.changes[0].action is Action.CREATE and saved.backend == "local" and not saved.prune
    planfile.check_fresh(saved, _plan())


@pytest.mark.parametrize(("edit", "message"), [
    (lambda d: d.pop("fingerprint"), "plan.json: fingerprint: missing (a truncated or hand-edited plan?)"),
    (lambda d: d.update(prune="yes"), "plan.json: prune: expected bool, got str"),
    (lambda d: d["changes"][0].update(action="launch"), "plan.json: changes[0].action: unknown action 'launch'"),
    (lambda d: d["changes"][0].pop("name"), "plan.json: changes[0].name: missing"),
    (lambda d: d.update(changes={"a": 1}), "plan.json: changes: expected list, got dict"),
    (lambda d: d["changes"].__setitem__(0, 3), "plan.json: changes[0]: expected an object"),
    (lambda d: d.update(schema_version=7), "plan.json: schema_version: not an expctl plan"),
    (lambda d: d.update(commit="HEAD"), "plan.json: commit: expected a full commit id, got 'HEAD'"),
    (lambda d: d.update(commit="--all"), "plan.json: commit: expected a full commit id, got '--all'"),
    (lambda d: d.update(commit="C" * 40), "plan.json: commit: expected a full commit id"),
])
def test_hand_edited_plan_is_one_line(tmp_path: Path, edit: Any, message: str) -> None:
    with pytest.raises(ExpctlError) as err:
        planfile.load(_saved(tmp_path, edit))
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(str(tmp_path / message.split(":", maxsplit=1)[0])) and message.split(": ", 1)[1] in text


def test_truncated_plan_is_one_line(tmp_path: Path) -> None:
    whole = json.dumps(views.as_dict(_plan()))
    with pytest.raises(ExpctlError, match=r"plan\.json: not valid JSON \(truncated\?\)"):
        planfile.load(_saved(tmp_path, text=whole[: len(whole) // 2]))


def test_stale_when_the_changes_differ(tmp_path: Path) -> None:
    saved = planfile.load(_saved(tmp_path, lambda d: d["changes"][0].update(spec_hash="other")))
    with pytest.raises(StalePlanError, match="stale"):
        planfile.check_fresh(saved, _plan())


@pytest.mark.parametrize(("text", "message"), [
    ("[" * 100_000 + "]" * 100_000, "not valid JSON (truncated?): JSON nested too deeply"),
    ('{"a": ' * 50_000 + "1" + "}" * 50_000, "not valid JSON (truncated?): JSON nested too deeply"),
    ("\udcff", "not valid JSON"),
])
def test_hostile_plan_text_is_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(text, errors="surrogateescape")
    with pytest.raises(ExpctlError) as err:
        planfile.load(path)
    assert "\n" not in str(err.value) and message in str(err.value)


@pytest.mark.parametrize("summary", [{"create": "1"}, {"create": -1}, {"create": True}, [], "3 to create"])
def test_a_hand_edited_summary_is_refused(tmp_path: Path, summary: Any) -> None:
    with pytest.raises(ExpctlError, match=r"plan\.json: summary"):
        planfile.load(_saved(tmp_path, lambda d: d.update(summary=summary)))
