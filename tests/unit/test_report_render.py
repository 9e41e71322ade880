"""The report's judgements and renderings (pure): best run, deltas, the status line, and bad input — NaN and
±inf, no metrics, 250-character metric names, Markdown/HTML/ANSI in names, params and log lines, a 10,000-run
sweep — rendered bounded and escaped."""

from __future__ import annotations

import json
import math
import re

import pytest

from expctl.core import report_render as render
from expctl.core.report import Reference, Report, RunResult, experiment_report, summary_line

EVIL = "<img src=x onerror=alert(1)>**bold** [link](javascript:alert(1)) | `tick` \x1b[31mred\x1b[0m\n| forged |"


def run(name: str, value: float | None, state: str = "Succeeded", **kw: object) -> RunResult:
    metrics = {} if value is None else {"val_accuracy": value}
    return RunResult(name=name, overrides=(f"optimizer.lr={name}",), state=state, attempt=1,
                     metrics=metrics, **kw)  # type: ignore[arg-type]


def test_best_run_deltas_and_status_line() -> None:
    runs = [run("a", 0.80), run("b", 0.812), run("c", math.nan), run("d", math.inf), run("e", None),
            run("f", 0.9, state="Failed")]
    exp = experiment_report("sweep", "val_accuracy", "max", [], runs,
                            champion=Reference("m@champion (v1)", 0.79), parent=Reference("abc", 0.8))
    assert exp.best is not None and exp.best.name == "b"
    rep = Report("c" * 40, "p" * 40, (exp,))
    assert summary_line(rep) == "expctl: 5/6 succeeded, champion 0.790 → 0.812"
    text = render.markdown(rep)
    assert "m@champion (v1) 0.790 → **+0.022**" in text and "abc 0.800 → **+0.012**" in text
    data = json.loads(render.as_json(rep))  # NaN and inf become null: valid JSON
    values = {r["name"]: r["metrics"].get("val_accuracy") for r in data["experiments"][0]["runs"]}
    assert values["c"] is None and values["d"] is None and data["experiments"][0]["best"] == "b"


def test_a_champion_without_a_value_says_why() -> None:
    why = "this commit's v1 holds it and replaced no version that held it"
    exp = experiment_report("e", "val_accuracy", "max", [], [run("a", 0.8)],
                            champion=Reference("m_*@champion (v1)", None, why_not=why + " <b>"))
    text = render.markdown(Report("c" * 40, None, (exp,)))
    assert f"- vs champion: m\\_\\*@champion (v1) — {why} &lt;b&gt;\n" in text
    plain = render.markdown(Report("c" * 40, None, (experiment_report(
        "e", "val_accuracy", "max", [], [run("a", 0.8)], champion=Reference("m@champion (v1)", None)),)))
    assert "- vs champion: m@champion (v1) — no value of the gate metric\n" in plain


def test_min_mode_and_no_metrics_at_all() -> None:
    exp = experiment_report("x", "loss", "min", [], [run("a", None), run("b", None)])
    assert exp.best is None
    assert "best: none yet" in render.markdown(Report("c" * 40, None, (exp,)))
    lower = experiment_report("y", "val_accuracy", "min", [], [run("a", 0.3), run("b", 0.1)])
    assert lower.best is not None and lower.best.name == "b"


def test_hostile_values_are_escaped_everywhere() -> None:
    long_metric = "m" * 250
    bad = RunResult(name=EVIL, overrides=(f"p={EVIL}",), state="Failed", reason=EVIL, attempt=1,
                    metrics={long_metric: 1.0, EVIL: 2.0}, failure="code", log_tail=(EVIL, "```", "~~~"),
                    url="javascript:alert(1)")
    exp = experiment_report(EVIL, EVIL, "max", [long_metric], [bad], champion=Reference(EVIL, None, False, EVIL))
    rep = Report("c" * 40, None, (exp,))
    text = render.markdown(rep)
    unfenced = re.sub(r"^(`{3,})$.*?^\1$", "", text, flags=re.MULTILINE | re.DOTALL)  # code blocks: shown as is
    outside_code = re.sub(r"(`+).*?\1", "", unfenced)  # a code span shows its text as it is
    assert "<img" not in outside_code and "\x1b" not in text and not re.search(r"(?<!\\)\]\(javascript", outside_code)
    assert "&lt;img" in text and "\\x1b" in text
    table = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert all(ln.count(" | ") - ln.count("\\|") <= 12 for ln in table)
    assert not any(ln.strip() == "| forged |" for ln in text.splitlines())
    page = render.as_html(rep, {})
    assert "<img src=x" not in page and "\x1b" not in page and "href=\"javascript" not in page
    assert len(max(text.splitlines(), key=len)) < 2000


def test_a_ten_thousand_run_sweep_fits_a_comment() -> None:
    runs = [RunResult(name=f"sweep-{i:05d}", overrides=(f"optimizer.lr={i / 10000}", f"model=m{i % 7}"),
                      state="Failed" if i % 10 == 0 else "Succeeded", attempt=1,
                      metrics={"val_accuracy": i / 10000, "x" * 250: 1.0}, failure="code",
                      log_tail=tuple(f"line {n} " + "y" * 300 for n in range(50)))
            for i in range(10_000)]
    exp = experiment_report("sweep", "val_accuracy", "max", ["x" * 250], runs, url="https://mlflow.example/#/x")
    text = render.markdown(Report("c" * 40, None, (exp, exp, exp)))
    assert len(text) < 65_536
    assert "…and 9,980 more runs." in text and "max 1.000 over 10000 runs" in text
    assert text.count("| `sweep-") == 3 * render.TOP


def test_safe_url_only_http() -> None:
    assert render.safe_url("https://ui.example/#/x?a=(1)") == "https://ui.example/#/x?a=%281%29"
    assert render.safe_url("javascript:alert(1)") is None
    assert render.safe_url("https://a b") is None
    assert re.fullmatch(r"expctl: 0/0 succeeded", summary_line(Report("c", None, ())))


def test_the_platform_validation_metrics_are_read_from_the_validation_job_run() -> None:
    from expctl.core.report import TrackedRun, with_validation

    trained = TrackedRun("t1", "1", metrics={"acc": 0.9, "validation.acc": 0.99})  # a liar
    old = TrackedRun("v0", "1", attempt=1, start=1.0, metrics={"acc": 0.1}, validates_run_id="t1")
    job = TrackedRun("v1", "1", attempt=2, start=2.0, metrics={"acc": 0.7, "system/cpu": 3.0},
                     validates_run_id="t1")
    other = TrackedRun("t2", "1", metrics={"acc": 0.5})
    out = {r.run_id: r for r in with_validation([trained, old, job, other], "validation.")}
    assert out["t1"].metrics == {"acc": 0.9, "validation.acc": 0.7}  # the latest validation job's value wins
    assert out["t2"].metrics == {"acc": 0.5} and out["v1"] == job


@pytest.mark.parametrize(("value", "ok"), [("https://mlflow.example.com", True), ("http://10.0.0.5:5000/ui/", True),
                                           ("javascript:alert(1)", False), ("mlflow.example.com", False),
                                           ("https://bob:s3cret@mlflow.example.com", False)])
def test_ui_url_is_an_http_address_without_credentials(value: str, ok: bool) -> None:
    from expctl.config.schema import parse_settings
    from expctl.core.errors import ConfigError

    if ok:
        assert parse_settings({"ui_url": value}).ui_url == value
        return
    with pytest.raises(ConfigError) as caught:
        parse_settings({"ui_url": value})
    message = str(caught.value)
    assert message.startswith("expctl.yaml: ui_url: must be an http(s) address without credentials")
    assert "s3cret" not in message
