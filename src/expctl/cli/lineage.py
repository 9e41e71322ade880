"""``expctl lineage MODEL@ALIAS``: where a registered model came from, down to the manifest digests."""

from __future__ import annotations

from typing import Any

import click

from expctl.cli.common import echo_json, workspace
from expctl.core.sanitize import one_line


@click.command()
@click.argument("ref")
@click.option("--output", "-o", "output", type=click.Choice(["human", "json"]), default="human",
              show_default=True)
@click.pass_context
def lineage(ctx: click.Context, ref: str, output: str) -> None:
    """Model version → run → commit → config → datasets → batches → manifest digests, and up the chain of its
    inputs (MODEL@ALIAS or MODEL/N)."""
    from expctl.tracking.mlflow.sqlite_search import reads_only

    reads_only()  # this command never writes to the tracking store
    from expctl.engine.operate import model_lineage

    data = model_lineage(workspace(ctx), ref)
    if output == "json":
        echo_json(data)
        return
    click.echo(human(data), nl=False)


def _inputs(inputs: list[dict[str, Any]], indent: str) -> list[str]:
    """The chain up: each input, and a model input's own run, commit and inputs, indented a step per link."""
    lines: list[str] = []
    for item in inputs:
        what = f"{item.get('model')} version {item.get('version')}" if item.get("model") else \
            f"dataset {item['dataset']} digest {item.get('digest', '')}" if item.get("dataset") else \
            f"experiment {item.get('experiment', '')}"
        lines.append(f"{indent}input     {item['name']}: {what}  {item.get('uri', '')}")
        up = item.get("lineage")
        if up:
            run = up["run"]
            lines.append(f"{indent}  run     {run['id']}  {run['job']} (experiment {run['experiment']})")
            lines.append(f"{indent}  commit  {up['commit']}  spec hash {up['spec_hash']}")
            lines.extend(_inputs(up.get("inputs") or [], indent + "  "))
        elif item.get("run_id"):
            lines.append(f"{indent}  run     {item['run_id']}  {item.get('upstream_job', '')}")
            lines.append(f"{indent}  commit  {item.get('commit', '')}  spec hash {item.get('spec_hash', '')}")
            if item.get("config"):
                lines.append(f"{indent}  config  {item['config']}")
    return lines


def human(d: dict[str, Any]) -> str:
    run, config = d["run"], d["config"]
    aliases = f" ({', '.join('@' + a for a in d['aliases'])})" if d["aliases"] else ""
    lines = [
        f"model     {d['model']} version {d['version']}{aliases}",
        f"run       {run['id']}  {run['job']} (experiment {run['experiment']}, attempt {run['attempt']}, "
        f"{run['status'].lower()})",
        f"commit    {d['commit']}  spec hash {d['spec_hash']}",
        f"config    {config['file']}" + (f"  overrides {' '.join(config['overrides'])}" if config["overrides"]
                                         else ""),
    ]
    if not d["datasets"]:
        lines.append("datasets  (none declared: the training code read what it liked)")
    for ds in d["datasets"]:
        splits = ", ".join(f"{k} {v}" for k, v in sorted(ds["splits"].items()))
        lines.append(f"dataset   {ds['name']}  manifest {ds['digest']}  {ds['format']}, {ds['items']} items"
                     + (f" ({splits})" if splits else ""))
        for batch in ds["batches"]:
            lines.append(f"  batch   {batch['name']:<12} digest {batch['digest']}  {batch['items']} items  "
                         f"{batch.get('location', '')}")
        lines.append(f"  manifest {ds['manifest']}")
    if d["validation"]:
        lines.append("validated " + ", ".join(f"{k}={v:.4g}" for k, v in d["validation"].items()))
    if d["gate"]:
        lines.append(f"gate      {d['gate']}")
    if d["promotion"]:
        lines.append(f"promotion {d['promotion']}")
    for key, text in d["challenges"].items():
        lines.append(f"  {key.removeprefix('expctl.challenge.')}: {text}")
    lines.extend(_inputs(d.get("inputs") or [], ""))
    # every field is an MLflow tag anyone with access can edit: each line is escaped whole, so no value can
    # forge a line or send a terminal escape
    return "\n".join(one_line(ln) for ln in lines) + "\n"
