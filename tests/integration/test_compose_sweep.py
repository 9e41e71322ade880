"""Sweeps and compositions equal what Hydra itself produces; identities behave as DESIGN.md says.

Real git repositories; Hydra's own BasicSweeper and compose() are the reference.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from expctl.config import source
from expctl.config.desired_state import load_desired
from tests.support.gitrepo import GitRepo

SWEEPS = {
    "comma lists and a group axis": {"model": "small,large", "optimizer.lr": "0.1,0.01,0.001"},
    "range": {"seed": "range(0,5)", "optimizer.lr": "range(0.1,0.4,0.1)"},
    "choice": {"optimizer.momentum": "choice(0.5,0.9,0.99)", "model": "choice(small,huge)"},
    "glob over group options": {"model": "glob(*)", "seed": "1,2"},
    "glob with exclude": {"model": "glob(*,exclude=huge)"},
    "quoted values": {"+tag": "'a,b',\"c d\",plain", "optimizer.lr": "1e-3,2e-3"},
    "single values are not sweep axes": {"optimizer.momentum": "0.5", "seed": "1,2,3"},
}


def _experiment(params: dict[str, str]) -> str:
    lines = ["defaults:", "  - config", "  - _self_", "hydra:", "  sweeper:", "    params:"]
    lines += [f"      {json.dumps(k)}: {json.dumps(v)}" for k, v in params.items()]
    return "\n".join(lines) + "\n"


def _hydra_points(conf_dir: Path, params: dict[str, str]) -> list[list[str]]:
    """What Hydra's BasicSweeper produces for these params."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        parser = OverridesParser.create(config_loader=loader)
        overrides = parser.parse_overrides([f"{k}={v}" for k, v in params.items()])
        (batch,) = BasicSweeper.split_arguments(overrides, None)
        return [list(point) for point in batch]


def _hydra_config(conf_dir: Path, experiment_file: Path, overrides: list[str]) -> dict[str, object]:
    target = conf_dir / "hydra_reference_experiment.yaml"
    target.write_text(experiment_file.read_text())
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir), version_base="1.3"):
        cfg = compose(config_name="hydra_reference_experiment", overrides=overrides)
        data = OmegaConf.to_container(cfg, resolve=True)
    assert isinstance(data, dict)
    return data


@pytest.mark.parametrize("params", list(SWEEPS.values()), ids=list(SWEEPS))
def test_sweep_points_equal_hydra_basic_sweeper(
    make_repo: Callable[[dict[str, str]], GitRepo], params: dict[str, str]
) -> None:
    repo = make_repo({"experiments/sweep.yaml": _experiment(params)})
    desired = load_desired(source.snapshot(repo.path))
    ours = [list(run.overrides) for run in desired.runs]
    theirs = _hydra_points(repo.path / "conf", params)
    assert [sorted(p) for p in ours] == [sorted(p) for p in theirs]
    # every point's resolved config equals Hydra's own compose of that point
    sample = random.Random(0).sample(list(zip(desired.runs, theirs, strict=True)), k=min(4, len(theirs)))
    for run, point in sample:
        expected = _hydra_config(repo.path / "conf", repo.path / "experiments/sweep.yaml", point)
        assert run.config == expected


def test_interpolations_depending_on_swept_values_are_resolved_per_point(
    make_repo: Callable[[dict[str, str]], GitRepo],
) -> None:
    exp = _experiment({"optimizer.lr": "0.1,0.2", "model": "small,large"}) + (
        "derived:\n  lr_copy: ${optimizer.lr}\n  label: ${model.name}-${optimizer.lr}\n"
    )
    repo = make_repo({"experiments/interp.yaml": exp})
    runs = load_desired(source.snapshot(repo.path)).runs
    labels = sorted(str(r.config["derived"]["label"]) for r in runs)  # type: ignore[index]
    assert labels == ["large-0.1", "large-0.2", "small-0.1", "small-0.2"]
    for run in runs:
        expected = _hydra_config(repo.path / "conf", repo.path / "experiments/interp.yaml", list(run.overrides))
        assert run.config == expected
    # describe composes one point only (given its overrides in any order): the same run, and nothing else
    for run in runs[:2]:
        (alone,) = load_desired(source.snapshot(repo.path), only="interp", point=list(reversed(run.overrides))).runs
        assert (alone.run_key, alone.spec_hash, alone.config) == (run.run_key, run.spec_hash, run.config)
    assert load_desired(source.snapshot(repo.path), only="interp", point=["optimizer.lr=0.3"]).runs == []


def test_changing_one_sweep_value_changes_exactly_that_points_hash(
    make_repo: Callable[[dict[str, str]], GitRepo],
) -> None:
    repo = make_repo({"experiments/s.yaml": _experiment({"optimizer.lr": "0.1,0.2,0.3", "model": "small,large"}),
                      "experiments/other.yaml": "defaults:\n  - config\n  - _self_\n"})
    before = {r.run_key: r for r in load_desired(source.snapshot(repo.path)).runs}
    repo.write("experiments/s.yaml", _experiment({"optimizer.lr": "0.1,0.25,0.3", "model": "small,large"}))
    repo.commit("one value")
    after = {r.run_key: r for r in load_desired(source.snapshot(repo.path)).runs}
    assert len(set(after) - set(before)) == 2  # optimizer.lr=0.25 with both models
    assert len(set(before) - set(after)) == 2
    for key in set(before) & set(after):
        assert before[key].spec_hash == after[key].spec_hash


def test_code_outside_code_paths_changes_no_hash_but_code_inside_changes_all(
    make_repo: Callable[[dict[str, str]], GitRepo],
) -> None:
    repo = make_repo({"experiments/s.yaml": _experiment({"seed": "1,2"})})
    first = {r.run_key: r.spec_hash for r in load_desired(source.snapshot(repo.path)).runs}
    repo.write("README.md", "docs only\n")
    repo.write("experiments/another.yaml", "defaults:\n  - config\n  - _self_\n")
    repo.commit("docs and another experiment")
    second = {r.run_key: r.spec_hash for r in load_desired(source.snapshot(repo.path)).runs}
    assert {k: second[k] for k in first} == first
    repo.write("code/train.py", "print('train v2')\n")
    repo.commit("code")
    third = {r.run_key: r.spec_hash for r in load_desired(source.snapshot(repo.path)).runs}
    assert all(third[k] != first[k] for k in first)


def test_names_are_deterministic_rfc1035(make_repo: Callable[[dict[str, str]], GitRepo]) -> None:
    long_name = "a" + "-very-long-experiment-name" * 2
    repo = make_repo({f"experiments/team-x/{long_name}.yaml": _experiment({"seed": "range(0,20)"})})
    runs = load_desired(source.snapshot(repo.path)).runs
    again = load_desired(source.snapshot(repo.path)).runs
    assert [r.name for r in runs] == [r.name for r in again]
    assert len({r.name for r in runs}) == 20
    import re

    for run in runs:
        assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", run.name_for(12)), run.name
        assert len(run.name_for(99)) <= 63


def test_reads_the_commit_not_the_working_tree(make_repo: Callable[[dict[str, str]], GitRepo]) -> None:
    repo = make_repo({"experiments/s.yaml": _experiment({"seed": "1,2"})})
    repo.write("experiments/s.yaml", _experiment({"seed": "1,2,3"}))
    assert len(load_desired(source.snapshot(repo.path)).runs) == 2
    assert len(load_desired(source.snapshot(repo.path, worktree=True)).runs) == 3
    assert source.dirty_paths(repo.path) == ["experiments/s.yaml"]


