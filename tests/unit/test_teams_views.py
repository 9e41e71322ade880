"""A plan grouped by team (human, JSON, Markdown) and the audit record's team, round-tripped (pure)."""

from __future__ import annotations

import json

from expctl.core import audit, views
from expctl.core.model import Action, Change, Plan, Reason
from tests.support.factories import make_job, make_spec


def create(experiment: str, team: str | None) -> Change:
    spec = make_spec(experiment, job=make_job(team=team))
    return Change(Action.CREATE, Reason.MISSING, experiment, spec.run_key, spec.name, (), spec.spec_hash, 1,
                  desired=spec)


PLAN = Plan("c" * 40, "local", (create("vision/resnet", "vision"), create("nlp/bert", "nlp"),
                                create("vision/vit", "vision")), "f")


def test_human_plan_has_a_section_per_team() -> None:
    lines = views.human(PLAN).splitlines()[2:7]
    shown = [ln.strip() if ln.startswith("  team") else ln.split()[3] for ln in lines]
    assert shown == ["team nlp", "nlp/bert", "team vision", "vision/resnet", "vision/vit"], lines


def test_json_and_markdown_name_the_team() -> None:
    assert [c["team"] for c in json.loads(views.as_json(PLAN))["changes"]] == ["vision", "nlp", "vision"]
    md = views.markdown(PLAN)
    assert md.index("#### team nlp") < md.index("#### team vision")


def test_a_plan_without_teams_looks_as_before() -> None:
    plain = Plan("c" * 40, "local", (create("a", None),), "f")
    assert "team" not in views.human(plain) and "####" not in views.markdown(plain)


def test_the_audit_record_carries_the_team_and_reads_older_records() -> None:
    record = audit.new_record(PLAN, PLAN.changes, "olga", "olga", now=1.0)
    back = audit.decode(record.header(), json.loads(record.changes_json()), None)
    assert [c.team for c in back.changes] == ["vision", "nlp", "vision"]
    older = [row[:10] for row in json.loads(record.changes_json())]  # an expctl before teams: ten fields
    assert {c.team for c in audit.decode(record.header(), older, None).changes} == {""}
    done = audit.with_results(record, {c.name: audit.DONE for c in PLAN.changes})
    assert [e["team"] for e in audit.entries(done)] == ["vision", "nlp", "vision"]
