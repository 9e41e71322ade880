"""The platform validates and promotes, end to end: real git, real ``expctl`` processes, a real ``mlflow server``.

The last test runs the project's own PyTorch training on a dataset outside the repository and expctl's default
evaluator on its ``mlflow.pytorch`` model.

A small scikit-learn training job (fast: no torch) trains on exactly its manifest's ``train`` items, logs its
model with ``mlflow.sklearn`` and lies about itself (``accuracy`` and even ``validation.accuracy`` of 0.999).
expctl's validation job evaluates the logged model on the held-out ``test`` split and decides the gate; the
promotion rule moves ``champion`` only to a strictly better version, and records both outcomes on the versions.
``expctl report`` judges each change against the champion it challenged, as the registry recorded it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.support import e2e, jobs
from tests.support.gitrepo import GitRepo, minimal_repo
from tests.support.mlflow_server import MlflowServer

pytestmark = [pytest.mark.integration, pytest.mark.timeout(600)]

DATA = ("name: points\nformat: jsonl\nsplit: {seed: 0, train: 0.6, validation: 0.2, test: 0.2}\n"
        "batches:\n  - {name: b1, source: points/b1}\n  - {name: b2, source: points/b2}\n")


def experiment(model: str, register_as: str, threshold: float, seed: int = 0) -> str:
    return ("defaults:\n  - config\n  - data: points\n  - override /model: " + model + "\n  - _self_\n"
            f"seed: {seed}\n"
            "expctl:\n  kind: local\n  command: [python, code/train_sk.py]\n  retries: {max_attempts: 1}\n"
            f"  validation:\n    metric: accuracy\n    threshold: {threshold}\n    split: test\n"
            f"    register_as: {register_as}\n    promote: {{alias: champion, when: better_than_current}}\n")


def write_points(root: Path) -> None:
    """200 records: label pos when x0 > x1 (learnable), classes unbalanced 2:1 so a constant guess is poor."""
    for batch in ("b1", "b2"):
        lines = []
        for i in range(100):
            a, b = (i * 37 % 101) / 101, (i * 53 % 89) / 89
            if (i % 3 == 0) != (a > b):
                a, b = b, a
            lines.append(json.dumps({"x": [a + (batch == "b2") * 0.001, b], "label": "pos" if a > b else "neg"}))
        (root / "points" / batch).mkdir(parents=True, exist_ok=True)
        (root / "points" / batch / "records.jsonl").write_text("\n".join(lines) + "\n")


def versions(uri: str, name: str) -> dict[str, Any]:
    from mlflow import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    return {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


def champion(uri: str, name: str) -> str:
    from mlflow import MlflowClient

    return str(MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(name, "champion").version)


def apply(repo: GitRepo, uri: str, message: str, files: dict[str, str]) -> str:
    for rel, text in files.items():
        repo.write(rel, text)
    repo.commit(message)
    done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_validation_decides_the_gate_and_promotion_moves_the_alias_only_to_a_better_version(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    uri, model = mlflow_server.uri, "promo-points"
    repo = minimal_repo(tmp_path / "repo", {
        "conf/data/points.yaml": DATA, "conf/model/good.yaml": "name: good\n", "conf/model/guess.yaml":
        "name: guess\n", "code/train_sk.py": jobs.source("train_sk"), ".gitignore": ".expctl/\n/points/\n",
        "expctl.yaml": "code_paths: [code]\nlocal:\n  parallelism: 2\n"})
    write_points(repo.path)
    try:
        # 1. a constant guess passes a low bar and takes the free alias; a liar with a high bar fails its gate
        out = apply(repo, uri, "guess + liar", {
            "experiments/promo-guess.yaml": experiment("guess", model, 0.3),
            "experiments/promo-liar.yaml": experiment("guess", "promo-liar", 0.8)})
        assert "Finished: 4 succeeded." in out, out  # two training runs and their two validation jobs
        (liar,) = [r for r in e2e.mlflow_runs(uri, ["promo-liar"]) if "expctl.validates" not in r.data.tags]
        assert liar.data.tags["expctl.gate"] == "failed"
        measured = float(liar.data.tags["expctl.gate_reason"].split("validation.accuracy=")[1].split()[0])
        assert measured < 0.8 and liar.data.metrics["accuracy"] == 0.999  # the job's number, not the run's
        assert versions(uri, "promo-liar") == {}
        assert champion(uri, model) == "1"
        first = versions(uri, model)["1"]
        assert first.tags["expctl.promotion"] == "promoted to champion: no version held it"
        assert f'{float(first.tags["expctl.metric.validation.accuracy"]):.6g}' == f"{measured:.6g}"
        measured = float(first.tags["expctl.metric.validation.accuracy"])  # recorded exactly on the version
        assert first.tags["expctl.metrics_exact"] == "true"
        assert first.tags["expctl.data_digest"] and "points" in json.loads(first.tags["expctl.datasets"])

        # 2. a better model takes the alias from the holder; both versions say so
        apply(repo, uri, "good", {"experiments/promo-good.yaml": experiment("good", model, 0.3)})
        good_commit = repo.head
        assert champion(uri, model) == "2"
        both = versions(uri, model)
        better = float(both["2"].tags["expctl.metric.validation.accuracy"])
        assert better > measured
        assert both["2"].tags["expctl.promotion"] == (
            f"promoted to champion: validation.accuracy {better:.6g} > {measured:.6g} of version 1")
        assert both["1"].tags["expctl.challenge.v2"].startswith("lost champion to version 2: promoted")

        # 3. a worse model is registered but never takes the alias; both versions say so
        apply(repo, uri, "guess again", {"experiments/promo-guess2.yaml": experiment("guess", model, 0.3, seed=1)})
        assert champion(uri, model) == "2"
        three = versions(uri, model)
        assert three["3"].tags["expctl.promotion"] == (
            f"not promoted to champion: validation.accuracy {measured:.6g} is not > {better:.6g} of version 2, "
            "which keeps it")
        assert three["3"].tags["expctl.promotion.outcome"] == "kept"
        assert three["2"].tags["expctl.challenge.v3"].startswith("kept champion against version 3")
        from expctl.tracking.mlflow.store import MlflowStore

        listed = [row for row in MlflowStore(uri, "local").registered_models() if row["name"] == model]
        assert [(row["version"], row["aliases"]) for row in listed] == [("1", []), ("2", ["champion"]), ("3", [])]
        assert listed[1]["run_id"] == three["2"].run_id and "validation.accuracy" in listed[1]["metrics"]

        # 4. lineage on demand: version → run → commit → config → datasets → batches → manifest digests
        shown = e2e.expctl(repo.path, "lineage", f"{model}@champion", "-o", "json", tracking_uri=uri)
        assert shown.returncode == 0, shown.stderr
        line = json.loads(shown.stdout)
        assert (line["version"], line["aliases"], line["run"]["id"]) == ("2", ["champion"], three["2"].run_id)
        assert line["commit"] == good_commit and line["config"]["file"] == "experiments/promo-good.yaml"
        assert line["config"]["params"]["model.name"] == "good"
        (points,) = line["datasets"]
        assert points["name"] == "points" and points["items"] == 200 and sum(points["splits"].values()) == 200
        assert [b["name"] for b in points["batches"]] == ["b1", "b2"] and all(b["digest"] for b in points["batches"])
        assert line["validation"]["validation.accuracy"] == better and line["promotion"].startswith("promoted")
        text = e2e.expctl(repo.path, "lineage", f"{model}/3", tracking_uri=uri).stdout
        assert f"model     {model} version 3\n" in text and "  batch   b1" in text and points["digest"] in text
        bad = e2e.expctl(repo.path, "lineage", "promo-points", tracking_uri=uri)
        assert bad.returncode == 1 and bad.stderr.strip().splitlines() == [
            "error: promo-points: expected MODEL@ALIAS or MODEL/VERSION (e.g. blobs-classifier@champion)"]
    finally:
        e2e.stop_jobs(repo.path)


def test_the_example_pytorch_training_is_validated_by_the_default_evaluator(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    """The project's own training/train.py on the demo's dataset (outside the repository, EXPCTL_DATA_ROOT):
    it trains on exactly the manifest's train items; expctl's evaluator loads the mlflow.pytorch model."""
    import sys

    sys.path.insert(0, str(e2e.ROOT / "scripts"))
    from demo_data import make_batch

    data = tmp_path / "datasets"
    make_batch(data, "b1", 120, seed=1)
    make_batch(data, "b2", 120, seed=2)
    name = "torch-data"
    text = ("defaults:\n  - config\n  - data: blobs-files\n  - _self_\ntrainer:\n  epochs: 2\n"
            "expctl:\n  kind: local\n  validation: {metric: accuracy, threshold: 0.3, split: test, "
            "register_as: torch-data-model, promote: {alias: champion}}\n")
    repo = e2e.make_project(tmp_path / "repo", {name: text})
    try:
        done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "400", tracking_uri=mlflow_server.uri,
                          EXPCTL_DATA_ROOT=str(data))
        assert done.returncode == 0 and "Finished: 2 succeeded." in done.stdout, done.stdout + done.stderr
        manifest = json.loads(next((repo.path / ".expctl" / "manifests").glob("*.json")).read_text())
        splits = manifest["splits"]
        (train_state,) = [s for s in e2e.run_states(repo.path).values() if "-val-" not in s["name"]]
        log = (repo.path / ".expctl" / "runs" / train_state["name"] / "node-0.log").read_text()
        assert f"{splits['train']} training samples, {splits['validation']} validation samples" in log
        (val_state,) = [s for s in e2e.run_states(repo.path).values() if "-val-" in s["name"]]
        val_log = (repo.path / ".expctl" / "runs" / val_state["name"] / "node-0.log").read_text()
        assert f"on {splits['test']} test items: accuracy=" in val_log
        line = json.loads(e2e.expctl(repo.path, "lineage", "torch-data-model@champion", "-o", "json",
                                     tracking_uri=mlflow_server.uri).stdout)
        assert line["run"]["id"] == train_state["mlflow_run_id"] and line["datasets"][0]["digest"] == \
            manifest["digest"]
        assert set(line["validation"]) == {"validation.accuracy", "validation.loss", "validation.samples"}
    finally:
        e2e.stop_jobs(repo.path)


def sweep(register_as: str, hold: Path, seed: int = 0) -> str:
    """Two points, the better one (``good``) first: with the old rule, whichever finished last took the alias."""
    return ("defaults:\n  - config\n  - data: points\n  - _self_\n"
            f"seed: {seed}\nhold: {hold}\n"
            "hydra:\n  sweeper:\n    params:\n      model: good,guess\n"
            "expctl:\n  kind: local\n  command: [python, code/train_sk.py]\n  retries: {max_attempts: 1}\n"
            f"  validation: {{metric: accuracy, threshold: 0.3, split: test, register_as: {register_as}, "
            "alias: candidate}\n")


def candidate(uri: str, name: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(uri, registry_uri=uri).get_model_version_by_alias(name, "candidate")


def test_a_sweeps_alias_goes_to_its_best_point_and_wait_replaces_the_validation_after_a_config_change(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    """The worse point (``guess``) is held until the better one is registered, over several applies, so it
    finishes last: the alias stays on the best point. Then the training config changes (the README's data
    flow): ``apply --wait`` replaces the training runs, then each validation job as its training run succeeds,
    and finishes."""
    uri, model, hold = mlflow_server.uri, "sweep-points", tmp_path / "release-guess"
    repo = minimal_repo(tmp_path / "repo", {
        "conf/data/points.yaml": DATA, "conf/model/good.yaml": "name: good\n", "conf/model/guess.yaml":
        "name: guess\n", "code/train_sk.py": jobs.source("train_sk"), ".gitignore": ".expctl/\n/points/\n",
        "expctl.yaml": "code_paths: [code]\nlocal:\n  parallelism: 2\n",
        "experiments/pts.yaml": sweep(model, hold)})
    write_points(repo.path)
    try:
        started = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
        assert started.returncode == 0, started.stdout + started.stderr
        while not versions(uri, model):  # each apply observes, syncs and starts the validation when due
            again = e2e.expctl(repo.path, "apply", "-y", tracking_uri=uri)
            assert again.returncode == 0, again.stdout + again.stderr
        (best,) = versions(uri, model).values()
        assert candidate(uri, model).version == best.version
        hold.touch()  # now the worse point trains, is validated and registered last
        done = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri)
        assert done.returncode == 0 and "Finished: 4 succeeded." in done.stdout, done.stdout + done.stderr
        both = versions(uri, model)
        assert len(both) == 2
        (worse,) = [v for v in both.values() if v.version != best.version]
        best_value = float(best.tags["expctl.metric.validation.accuracy"])
        worse_value = float(worse.tags["expctl.metric.validation.accuracy"])
        assert worse_value < best_value and candidate(uri, model).version == best.version
        assert worse.tags["expctl.alias"].startswith(f"candidate stays on version {best.version}: ")
        assert best.tags["expctl.metric.validation.accuracy"] == repr(best_value)  # exact, not 6 digits

        # the training config changes: every run is replaced, each validation job follows its training run
        repo.write("experiments/pts.yaml", sweep(model, hold, seed=1))
        repo.commit("seed 1")
        changed = e2e.expctl(repo.path, "apply", "-y", "--wait", "--timeout", "300", tracking_uri=uri)
        assert changed.returncode == 0 and "Finished: 4 succeeded." in changed.stdout, \
            changed.stdout + changed.stderr
        validations = [r for r in e2e.mlflow_runs(uri, ["pts"]) if "expctl.validates" in r.data.tags]
        assert len(validations) == 4 and all(r.info.status == "FINISHED" for r in validations)
        four = versions(uri, model)
        assert len(four) == 4
        new = {v.version for v in four.values() if v.version not in both}
        holder = candidate(uri, model)
        assert holder.version in new  # the old sweep's best is not one of the current points
        assert float(holder.tags["expctl.metric.validation.accuracy"]) == max(
            float(four[v].tags["expctl.metric.validation.accuracy"]) for v in new)
    finally:
        e2e.stop_jobs(repo.path)


def report(repo: GitRepo, uri: str, *args: str) -> str:
    done = e2e.expctl(repo.path, "report", *args, tracking_uri=uri)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def vs_champion(text: str) -> tuple[str, str, str]:
    """The Markdown's champion line: its label (a link to the model's page in the MLflow UI), value and delta."""
    (line,) = [line for line in text.splitlines() if line.startswith("- vs champion: ")]
    found = re.fullmatch(r"- vs champion: \[(.+)\]\((\S+)\) (\S+) → \*\*(\S+)\*\*", line)
    assert found is not None, line
    assert found[2].startswith("http://127.0.0.1:") and "/models/champ_%3Cb%3Epts%7C%2Av%2A?" in found[2], line
    return found[1], found[3], found[4]


def test_the_report_judges_a_change_against_the_champion_it_challenged(
        tmp_path: Path, mlflow_server: MlflowServer) -> None:
    """Issue 23's champion comparison on a real registry: a constant guess is the champion, a change to a better
    model takes the alias (compared with the version it replaced, not with itself), a change back is kept out
    (compared with the holder, a negative delta). The model's name carries Markdown and HTML: escaped."""
    uri, model = mlflow_server.uri, "champ_<b>pts|*v*"
    repo = minimal_repo(tmp_path / "repo", {
        "conf/data/points.yaml": DATA, "conf/model/good.yaml": "name: good\n", "conf/model/guess.yaml":
        "name: guess\n", "code/train_sk.py": jobs.source("train_sk"), ".gitignore": ".expctl/\n/points/\n",
        "expctl.yaml": "code_paths: [code]\nlocal:\n  parallelism: 2\n"})
    write_points(repo.path)
    name, escaped = "champ-pts", r"champ\_&lt;b&gt;pts\|\*v\*"
    try:
        apply(repo, uri, "a guess", {f"experiments/{name}.yaml": experiment("guess", model, 0.3)})
        assert champion(uri, model) == "1"
        guess = float(versions(uri, model)["1"].tags["expctl.metric.validation.accuracy"])

        # a better model: promoted, and judged against the champion it replaced
        apply(repo, uri, "the better model", {f"experiments/{name}.yaml": experiment("good", model, 0.3)})
        assert champion(uri, model) == "2"
        two = versions(uri, model)["2"]
        good = float(two.tags["expctl.metric.validation.accuracy"])
        assert good > guess and two.tags["expctl.promotion.outcome"] == "promoted"
        (exp,) = json.loads(report(repo, uri, "-o", "json"))["experiments"]
        assert exp["experiment"] == name and exp["gate_metric"] == "validation.accuracy"
        assert exp["best_value"] == good and exp["champion"]["value"] == guess
        assert exp["champion"]["label"].startswith(f"{model}@champion (v1")
        assert exp["delta_champion"] == pytest.approx(good - guess) and exp["delta_champion"] > 0
        (run,) = exp["runs"]
        assert run["gate"] == "passed" and run["mlflow_run_id"] == two.run_id
        assert run["promotion"].startswith(f"{model} v2: promoted (promoted to champion: ")
        text = report(repo, uri)
        assert "- gate: 1 passed, 0 failed; " + escaped + " v2: promoted (promoted to champion: " in text
        assert vs_champion(text) == (f"{escaped}@champion (v1, replaced by this commit's v2)", f"{guess:.3f}",
                                     f"+{good - guess:.3f}")
        assert "<b>" not in text and model not in text

        # back to the guess: registered, kept out; judged against the holder
        apply(repo, uri, "the guess again", {f"experiments/{name}.yaml": experiment("guess", model, 0.3, seed=1)})
        assert champion(uri, model) == "2"
        three = versions(uri, model)["3"]
        assert three.tags["expctl.promotion.outcome"] == "kept"
        worse = float(three.tags["expctl.metric.validation.accuracy"])
        (exp,) = json.loads(report(repo, uri, "-o", "json"))["experiments"]
        assert exp["champion"]["label"] == f"{model}@champion (v2)" and exp["champion"]["value"] == good
        assert exp["best_value"] == worse and exp["delta_champion"] == pytest.approx(worse - good)
        assert exp["delta_champion"] < 0
        assert exp["parent"]["value"] == good and exp["delta_parent"] == pytest.approx(worse - good)
        (run,) = exp["runs"]
        assert run["gate"] == "passed" and run["promotion"].startswith(f"{model} v3: kept (not promoted to champion: ")
        text = report(repo, uri)
        assert vs_champion(text) == (f"{escaped}@champion (v2)", f"{good:.3f}", f"-{good - worse:.3f}")
        assert "- gate: 1 passed, 0 failed; " + escaped + " v3: kept (not promoted to champion: " in text
        assert "<b>" not in text and model not in text
    finally:
        e2e.stop_jobs(repo.path)
