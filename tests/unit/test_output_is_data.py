"""Values cannot forge lines of human or Markdown output; JSON output stays valid (expctl.sanitize, views)."""

from __future__ import annotations

import json
import re

import pytest

from expctl.core import views
from expctl.core.model import Action, Change, Plan, Reason
from expctl.core.sanitize import md_code, md_text, one_line

HOSTILE = [
    "seed=1\n  +   create      forged-run  exp  seed=2",
    "note=a\r\n| + | create | `forged` |",
    "x=\x1b[2K\x1b[1Aerased",
    "x=\u2028line separator\u2029paragraph",
    "x=\u202eevil",
    "x=<img src=x onerror=alert(1)>",
    "x=**bold** [link](http://example.com) `code` | pipe",
    "x=``` fence",
]


def plan(value: str) -> Plan:
    change = Change(Action.CREATE, Reason.MISSING, "exp", "k" * 32, "exp-0123456789", (value,), "h" * 20, 1,
                    detail=f"because {value}")
    return Plan("c" * 40, "local", (change,), "f" * 16)


@pytest.mark.parametrize("value", HOSTILE)
def test_human_plan_has_one_line_per_change(value: str) -> None:
    lines = views.human(plan(value)).splitlines()
    assert len(lines) == 5  # header, blank, the change, blank, summary
    assert sum(ln.strip().startswith("+ create") for ln in lines) == 1
    assert all(ch.isprintable() for ln in lines for ch in ln)


@pytest.mark.parametrize("value", HOSTILE)
def test_markdown_plan_cannot_add_rows_or_markup(value: str) -> None:
    text = views.markdown(plan(value))
    rows = [ln for ln in text.splitlines() if ln.startswith("|")]
    assert len(rows) == 3  # header, separator, the change
    cells = rows[2].replace("\\|", "").split("|")
    assert len(cells) == 8  # 6 columns, plus the empty edges: no pipe escaped the cell
    outside_code = re.sub(r"(`+)(?: .*? |[^`]*)\1", "", rows[2])  # inside a code span HTML is literal text
    assert "<img" not in outside_code and "\x1b" not in text and "\u2028" not in text


@pytest.mark.parametrize("value", HOSTILE)
def test_json_plan_keeps_the_value_exactly(value: str) -> None:
    data = json.loads(views.as_json(plan(value)))
    assert data["changes"][0]["overrides"] == [value]


def test_one_line_escapes_visibly() -> None:
    assert one_line("a\nb\tc\x1bd\u202ee") == "a\\nb\\tc\\x1bd\\u202ee"
    assert one_line("plain text, unicode ü and emoji 🙂") == "plain text, unicode ü and emoji 🙂"
    assert one_line("x" * 10, limit=5) == "xxxx…"


def test_markdown_helpers() -> None:
    assert md_text("a|b *c* <d>") == "a\\|b \\*c\\* &lt;d&gt;"
    assert md_code("a`b") == "`` a`b ``"
    assert md_code("plain") == "`plain`"


@pytest.mark.parametrize(("line", "shown"), [
    ("\x1b]0;owned\x07\x1b[2Jtext\n", "\\x1b]0;owned\\x07\\x1b[2Jtext\n"),
    ("col1\tcol2\r\n", "col1\tcol2\n"),
    ("progress\r50%\n", "progress\\r50%\n"),
    ("no newline \u202e", "no newline \\u202e"),
    ("a name \udcff", "a name \\udcff"),
])
def test_a_log_line_keeps_tabs_and_its_end_and_escapes_the_rest(line: str, shown: str) -> None:
    from expctl.core.sanitize import log_line

    assert log_line(line) == shown


def test_a_lone_surrogate_is_escaped_and_printable() -> None:
    shown = one_line("experiments/bad\udcff.yaml")
    assert shown == "experiments/bad\\udcff.yaml"
    shown.encode("utf-8")  # a lone surrogate would raise UnicodeEncodeError when printed


@pytest.mark.parametrize("value", HOSTILE)
def test_lineage_and_describe_print_one_line_per_field(value: str) -> None:
    from expctl.cli.lineage import human
    from expctl.cli.operate import _describe_human

    data = {"model": value, "version": "1", "aliases": [value], "commit": value, "spec_hash": value,
            "run": {"id": value, "job": value, "experiment": value, "attempt": 1, "status": value},
            "config": {"file": value, "overrides": [value]},
            "datasets": [{"name": value, "digest": value, "format": value, "items": 1, "splits": {value: 1},
                          "batches": [{"name": value, "digest": value, "items": 1, "location": value}],
                          "manifest": value}],
            "validation": {}, "gate": value, "promotion": value, "challenges": {f"expctl.challenge.{value}": value}}
    text = human(data)
    assert len(text.splitlines()) == 10 and "\x1b" not in text and "\u2028" not in text
    info = {"name": value, "experiment": value, "state": value, "overrides": [value], "config": {"k": value},
            "attempts": [{"attempt": 1, "name": value, "state": value, "spec_hash": value, "created": value,
                          "finished": value, "mlflow_run": value, "object": value, "message": value,
                          "resumed_from": {"attempt": 1, "epoch": None, "mlflow_run": value, "checkpoint": value}}],
            "phases": [{"time": value, "attempt": 1, "spec_hash": value, "phase": value, "detail": value}]}
    shown = _describe_human(info)
    assert "\x1b" not in shown and "\u2028" not in shown and "\r" not in shown
    assert not any(ln.startswith(("+", "|", "  +")) for ln in shown.splitlines())
