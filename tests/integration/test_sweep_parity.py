"""expctl's sweep expansion equals Hydra's own multirun, for every form ``hydra.sweeper.params`` accepts.

The reference is a real ``@hydra.main`` multirun (BasicSweeper + BasicLauncher, ``tests/support/
hydra_multirun.py``, one subprocess for the whole table). For each form both must fail, or both must give the
same points — the same task overrides and the same resolved config per point, in the same order — except
that a point Hydra would launch twice (``seed: 1,1``) is one run for expctl.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from expctl.config import source
from expctl.config.desired_state import load_desired
from expctl.core.errors import ExpctlError
from tests.support.gitrepo import MINIMAL_CONF, ROOT, minimal_repo

pytestmark = pytest.mark.integration

BASE = "defaults:\n  - config\n  - _self_\n"

FORMS: dict[str, str] = {
    "comma list": "seed: 1,2,3",
    "comma list with spaces": "seed: 1, 2 ,3",
    "the same point twice": "seed: 1,1,2",
    "a YAML list is one list value": "seed: [1, 2]",
    "a YAML list of strings": "+tags: [a, b]",
    "a sweep over lists": "+tags: '[a,b],[c]'",
    "nested lists": "+m: [[1, 2], [3]]",
    "range": "seed: range(0,3)",
    "float range": "optimizer.lr: range(0.1,0.4,0.1)",
    "choice": "seed: choice(5,6)",
    "group options": "model: small,large",
    "glob over a group": "model: glob(*)",
    "glob with exclusion": "model: glob(*,exclude=huge)",
    "floats": "optimizer.lr: 0.1,1e-3,2.5E2",
    "a YAML bool": "+flag: true",
    "a YAML float": "optimizer.lr: 0.5",
    "a dict value as text": "+d: '{a: 1, b: [2, 3]}'",
    "a YAML mapping (Hydra refuses)": "optimizer: {lr: 1}",
    "null (Hydra refuses)": "seed: null",
    "quoted string with a comma": "+s: \"'a,b'\"",
    "an empty value": "+e: ''",
    "force add": "++seed: 5,6",
    "interpolation in a sweep": "+lr2: ${optimizer.lr}",
    "two axes": "seed: 1,2\n      model: small,large",
    "three axes with a single value": "seed: 1,2\n      optimizer.momentum: 0.5\n      model: small,huge",
    "quoted special characters": "+q: \"'x=y', 'a b'\"",
    "a string with an escaped comma": "+s: a\\,b,c",
    "interval (Hydra's BasicSweeper refuses)": "optimizer.lr: interval(0.1,0.2)",
}


def experiment(params: str) -> str:
    return BASE + "hydra:\n  sweeper:\n    params:\n      " + params + "\n"


@pytest.fixture(scope="module")
def reference() -> list[dict[str, Any]]:
    conf = {k[len("conf/"):]: v for k, v in MINIMAL_CONF.items() if k.startswith("conf/")}
    request = json.dumps({"conf": conf, "forms": [experiment(p) for p in FORMS.values()]})
    proc = subprocess.run([sys.executable, "-m", "tests.support.hydra_multirun"], input=request, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=True)
    result: list[dict[str, Any]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("index", range(len(FORMS)), ids=list(FORMS))
def test_expansion_equals_hydras_multirun(tmp_path: Path, reference: list[dict[str, Any]], index: int) -> None:
    params = list(FORMS.values())[index]
    hydra = reference[index]
    repo = minimal_repo(tmp_path / "repo", {"experiments/exp.yaml": experiment(params)})
    try:
        runs = load_desired(source.snapshot(repo.path)).runs
    except ExpctlError as exc:
        assert "error" in hydra, f"expctl refused what Hydra runs: {exc}"
        assert "\n" not in str(exc) and str(exc).startswith("experiments/exp.yaml: hydra.sweeper.params")
        return
    assert "error" not in hydra, f"expctl accepted what Hydra refuses: {hydra['error']}"
    expected: list[tuple[tuple[str, ...], Any]] = []
    for overrides, config in hydra["jobs"]:
        point = (tuple(sorted(overrides)), config)
        if point not in expected:  # a point Hydra launches twice is one run
            expected.append(point)
    got = [(r.overrides, json.loads(json.dumps(dict(r.config)))) for r in runs]
    assert got == expected
    assert len({r.name for r in runs}) == len(runs)  # never two runs with one name
