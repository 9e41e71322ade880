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
