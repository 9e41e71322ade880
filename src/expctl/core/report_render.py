"""A report (``core.report``) as Markdown (a PR or commit comment), one self-contained HTML page, or JSON.

Pure. Every value from a run — names, overrides, metric names, failure messages, log lines — may carry
Markdown, HTML or terminal escapes: Markdown cells go through ``sanitize.md_text``/``md_code``, HTML through
``html.escape``, links only to http(s) addresses. The Markdown is bounded whatever the input: the best
``top`` runs of an experiment, aggregates of the rest and a link to the whole table, a few failed runs with a
few log lines each, and a hard cap under GitHub's 65,536 characters per comment. JSON keeps every run
(non-finite metrics become null).
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Mapping
from typing import Any

from expctl.core.report import (
    SCHEMA_VERSION,
    ExperimentReport,
    Reference,
    Report,
    RunResult,
    aggregates,
    delta,
    finite,
    metric,
    number,
    ranked,
    signed,
    succeeded,
)
from expctl.core.sanitize import md_code, md_text, one_line

MARKER = "<!-- expctl-report -->"
COMMENT_LIMIT = 60_000  # GitHub refuses comments over 65,536 characters
TOP = 20  # runs per experiment in the table
FAILED_SHOWN = 5  # failed runs whose log lines are shown
LOG_LINES = 15
CELL = 120  # characters of one value in a cell
METRIC_COLUMNS = 6
_SAFE_URL = re.compile(r"^https?://[^\s<>\"'`]+$")


def safe_url(url: str | None) -> str | None:
    """``url`` when it is an http(s) address, with the characters that could end a Markdown link encoded."""
    if not url or not _SAFE_URL.match(url):
        return None
    return url.replace("(", "%28").replace(")", "%29").replace("[", "%5B").replace("]", "%5D").replace("|", "%7C")


def _link(text: str, url: str | None) -> str:
    target = safe_url(url)
    return f"[{text}]({target})" if target else text


def _duration(seconds: float | None) -> str:
    value = finite(seconds)
    if value is None:
        return "—"
    minutes, secs = divmod(int(value), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else (f"{minutes}m{secs:02d}s" if minutes else f"{secs}s")


def _gpu_hours(value: float | None) -> str:
    value = finite(value)
    return "—" if value is None else f"{value:.2f}"


def _state(run: RunResult) -> str:
    reason = f": {run.reason}" if run.reason else ""
    return md_text(one_line(f"{run.state}{reason}", CELL))


def _overrides(run: RunResult) -> str:
    if not run.overrides:
        return "—"
    text = " ".join(run.overrides)
    return md_code(one_line(text, CELL))


def _metric_cell(run: RunResult, name: str) -> str:
    raw = run.metrics.get(name)
    return "—" if raw is None else number(float(raw)) if isinstance(raw, int | float) else md_text(one_line(raw, 20))


def _reference(label: str, ref: Reference | None, best: float | None) -> str | None:
    if ref is None:
        return None
    if not ref.readable:
        return f"{label}: {md_text(one_line(ref.label, CELL))} — {md_text(one_line(ref.why_not, CELL))}"
    shown = _link(md_text(one_line(ref.label, CELL)), ref.url)
    if ref.value is None:
        why = md_text(one_line(ref.why_not, CELL)) if ref.why_not else "no value of the gate metric"
        return f"{label}: {shown} — {why}"
    return f"{label}: {shown} {number(ref.value)} → **{signed(delta(best, ref))}**"


def _judgements(exp: ExperimentReport) -> list[str]:
    lines: list[str] = []
    gate = md_code(one_line(exp.gate_metric, 80)) if exp.gate_metric else "no gate metric"
    if exp.best is not None:
        lines.append(f"- best: {_link(md_code(one_line(exp.best.name, 80)), exp.best.url)} "
                     f"{gate} = **{number(exp.best_value)}** ({'higher' if exp.mode == 'max' else 'lower'} is better)")
    elif exp.gate_metric is None:
        lines.append("- best: not judged (no gate metric: `expctl.validation` ranks runs)")
    else:
        lines.append(f"- best: none yet ({gate}: no succeeded run has a finite value)")
    passed = sum(r.gate == "passed" for r in exp.runs)
    failed = sum(r.gate == "failed" for r in exp.runs)
    if passed or failed:
        promoted = [md_text(one_line(r.promotion, CELL)) for r in exp.promoted()][:3]
        extra = f"; {'; '.join(promoted)}" if promoted else ""
        lines.append(f"- gate: {passed} passed, {failed} failed{extra}")
    for line in (_reference("vs champion", exp.champion, exp.best_value),
                 _reference("vs parent commit", exp.parent, exp.best_value)):
        if line:
            lines.append(f"- {line}")
    return lines


def _table(exp: ExperimentReport, top: int) -> list[str]:
    names = exp.metrics[:METRIC_COLUMNS]
    header = ["run", "overrides", "state", "attempt", "wall", "GPU-h", *(md_text(one_line(n, 40)) for n in names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for run in ranked(exp.runs, exp.gate_metric, exp.mode)[:top]:
        cells = [_link(md_code(one_line(run.name, 70)), run.url), _overrides(run), _state(run),
                 str(run.attempt or "—"), _duration(run.wall_seconds), _gpu_hours(run.gpu_hours),
                 *(_metric_cell(run, n) for n in names)]
        lines.append("| " + " | ".join(cells) + " |")
    rest = len(exp.runs) - top
    if rest > 0:
        agg = aggregates(exp.runs, exp.gate_metric)
        stats = (f"{md_code(one_line(exp.gate_metric, 60))} min {number(finite(agg['min']))} · median "
                 f"{number(finite(agg['median']))} · max {number(finite(agg['max']))} over {agg['with_value']} runs"
                 if exp.gate_metric else "")
        lines.append("")
        lines.append(f"*…and {rest:,} more runs.* {stats} {_link('The whole table in MLflow', exp.url)}".rstrip())
    if len(exp.metrics) > METRIC_COLUMNS:
        lines.append(f"*{len(exp.metrics) - METRIC_COLUMNS} more metrics in the JSON report.*")
    return lines


def _fence(lines: list[str]) -> str:
    longest = max((len(m) for line in lines for m in re.findall(r"`+", line)), default=0)
    return "`" * max(3, longest + 1)


def _failures(exp: ExperimentReport) -> list[str]:
    failed = [r for r in exp.runs if r.state == "Failed"]
    if not failed:
        return []
    out = [f"<details><summary>{len(failed)} failed run{'s' if len(failed) != 1 else ''}</summary>", ""]
    for run in failed[:FAILED_SHOWN]:
        klass = md_text(one_line(run.failure or "unknown", 40))
        out.append(f"**{md_code(one_line(run.name, 70))}** — {klass}: {md_text(one_line(run.reason, 300))}")
        tail = [one_line(line, 200) for line in run.log_tail[-LOG_LINES:]]
        if tail:
            fence = _fence(tail)
            out += ["", fence, *tail, fence]
        out.append("")
    if len(failed) > FAILED_SHOWN:
        out.append(f"*…and {len(failed) - FAILED_SHOWN} more failed runs.*")
    out.append("</details>")
    return out


def _plots(exp: ExperimentReport) -> list[str]:
    shown = [f"![{md_text(one_line(p.title, 80))}]({safe_url(p.url)})" for p in exp.plots if safe_url(p.url)]
    return [" ".join(shown)] if shown else []


def experiment_markdown(exp: ExperimentReport, top: int = TOP) -> list[str]:
    counts = " · ".join(f"{n} {md_text(state.lower())}" for state, n in exp.counts().items())
    title = md_text(one_line(exp.experiment, 100))
    many = "" if len(exp.runs) == 1 else "s"
    lines = [f"#### {_link(title, exp.url)}", "", f"{len(exp.runs):,} run{many}: {counts or 'none'}", ""]
    lines += [*_judgements(exp), ""]
    if exp.runs:
        lines += [*_table(exp, top), ""]
    lines += _plots(exp)
    lines += _failures(exp)
    return lines


def markdown(report: Report, top: int = TOP, limit: int = COMMENT_LIMIT) -> str:
    """The comment: a marker (to find it again), a title, one section per experiment; at most ``limit``
    characters."""
    done, total = succeeded(report)
    parent = f" · parent `{md_text(report.parent[:12])}`" if report.parent else ""
    head = [MARKER, f"### expctl report for `{md_text(report.commit[:12])}`", "",
            f"**{done}/{total} runs succeeded**{parent}", ""]
    if not report.experiments:
        head.append("No experiments changed in this commit (`expctl report --all` shows every one).")
    body = "\n".join(head)
    for exp in report.experiments:
        section = "\n".join(experiment_markdown(exp, top)) + "\n"
        if len(body) + len(section) > limit - 200:
            shorter = "\n".join(experiment_markdown(exp, top=3)) + "\n"
            if len(body) + len(shorter) > limit - 200:
                body += "\n*…more experiments left out (the comment's size limit): see `expctl report -o json`.*\n"
                break
            section = shorter
        body += "\n" + section
    return body[:limit]


# --------------------------------------------------------------------------------------------- JSON


def _ref_json(ref: Reference | None) -> dict[str, Any] | None:
    if ref is None:
        return None
    return {"label": ref.label, "value": finite(ref.value), "readable": ref.readable, "why_not": ref.why_not,
            "url": ref.url}


def _run_json(run: RunResult) -> dict[str, Any]:
    return {"name": run.name, "overrides": list(run.overrides), "state": run.state, "reason": run.reason,
            "attempt": run.attempt, "wall_seconds": finite(run.wall_seconds), "gpu_hours": finite(run.gpu_hours),
            "metrics": {k: finite(v) for k, v in run.metrics.items()}, "mlflow_run_id": run.run_id,
            "url": run.url, "failure": run.failure, "log_tail": list(run.log_tail), "gate": run.gate,
            "gate_reason": run.gate_reason, "promotion": run.promotion}


def as_json(report: Report) -> str:
    done, total = succeeded(report)
    data = {
        "schema_version": SCHEMA_VERSION, "commit": report.commit, "parent": report.parent,
        "succeeded": done, "runs": total,
        "experiments": [{
            "experiment": e.experiment, "gate_metric": e.gate_metric, "mode": e.mode, "metrics": list(e.metrics),
            "best": e.best.name if e.best else None, "best_value": e.best_value, "url": e.url,
            "champion": _ref_json(e.champion), "parent": _ref_json(e.parent),
            "delta_champion": delta(e.best_value, e.champion), "delta_parent": delta(e.best_value, e.parent),
            "aggregates": aggregates(e.runs, e.gate_metric), "plots": [p.file for p in e.plots],
            "runs": [_run_json(r) for r in e.runs],
        } for e in report.experiments],
    }
    return json.dumps(data, indent=2, allow_nan=False)


# --------------------------------------------------------------------------------------------- HTML

_STYLE = """body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#1f2328}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left}
th{background:#f6f8fa}code,pre{font-family:ui-monospace,monospace;font-size:12px}pre{background:#f6f8fa;
padding:8px;overflow:auto}.Failed{color:#cf222e}.Succeeded{color:#1a7f37}img{max-width:48%;margin:4px}"""


def _e(text: object, limit: int = 300) -> str:
    return html.escape(one_line(text, limit))


def _a(text: str, url: str | None) -> str:
    target = safe_url(url)
    return f'<a href="{html.escape(target)}">{text}</a>' if target else text


def _html_experiment(exp: ExperimentReport, images: Mapping[str, bytes], top: int) -> list[str]:
    out = [f"<h2>{_a(_e(exp.experiment), exp.url)}</h2>", "<ul>"]
    out += [f"<li>{_e(_strip_md(line[2:]), 600)}</li>" for line in _judgements(exp)]
    out.append("</ul>")
    names = exp.metrics[:METRIC_COLUMNS]
    head = "".join(f"<th>{_e(h, 60)}</th>" for h in ("run", "overrides", "state", "attempt", "wall", "GPU-h",
                                                       *names))
    out.append(f"<table><tr>{head}</tr>")
    for run in ranked(exp.runs, exp.gate_metric, exp.mode)[:top]:
        cells = [_a(f"<code>{_e(run.name, 70)}</code>", run.url), f"<code>{_e(' '.join(run.overrides), 200)}</code>",
                 f'<span class="{_e(run.state, 20)}">{_e(run.state + (": " + run.reason if run.reason else ""))}'
                 "</span>", _e(run.attempt or "—"), _e(_duration(run.wall_seconds)), _e(_gpu_hours(run.gpu_hours)),
                 *(_e(number(metric(run, n)) if n in run.metrics else "—") for n in names)]
        out.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    out.append("</table>")
    if len(exp.runs) > top:
        out.append(f"<p>…and {len(exp.runs) - top:,} more runs ({_a('the whole table in MLflow', exp.url)}).</p>")
    for plot in exp.plots:
        data = images.get(plot.file)
        if data:
            src = "data:image/png;base64," + base64.b64encode(data).decode()
            out.append(f'<img alt="{_e(plot.title)}" title="{_e(plot.title)}" src="{src}">')
    for run in [r for r in exp.runs if r.state == "Failed"][:FAILED_SHOWN]:
        tail = "\n".join(_e(line, 200) for line in run.log_tail[-LOG_LINES:])
        out.append(f"<h3>failed: <code>{_e(run.name, 70)}</code> — {_e(run.failure or 'unknown', 40)}: "
                   f"{_e(run.reason)}</h3>" + (f"<pre>{tail}</pre>" if tail else ""))
    return out


def _strip_md(text: str) -> str:
    """A judgement line without its Markdown: links to their text, no emphasis or code marks, no escapes."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = text.replace("**", "").replace("`", "")
    return html.unescape(re.sub(r"\\(.)", r"\1", text))


def as_html(report: Report, images: Mapping[str, bytes], top: int = 100) -> str:
    """One self-contained page: tables and plots inline (``images``: each plot's file → its PNG bytes)."""
    done, total = succeeded(report)
    parts = ["<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>expctl report {_e(report.commit[:12])}</title><style>{_STYLE}</style></head><body>",
             f"<h1>expctl report for <code>{_e(report.commit[:12])}</code></h1>",
             f"<p><b>{done}/{total} runs succeeded</b>"
             + (f" · parent <code>{_e(report.parent[:12])}</code>" if report.parent else "") + "</p>"]
    if not report.experiments:
        parts.append("<p>No experiments changed in this commit.</p>")
    for exp in report.experiments:
        parts += _html_experiment(exp, images, top)
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
