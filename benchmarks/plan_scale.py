"""Plan a 10,000-point sweep end to end, against the naive baseline measured in the same run.

    python benchmarks/plan_scale.py [--points-per-axis 50] [--sample 30]

The sweep has three axes — a group axis (model: 4 options) and two value axes — in a real git repository.
"expctl" is: read the commit, compose, expand, hash every run, and diff against an empty observed state.
The baseline is what a naive tool does: one Hydra ``compose()`` per point, timed on a random sample.
Sampled points are checked to equal Hydra's own composition. Also times ``expctl --help`` start-up.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.gitrepo import GitRepo  # noqa: E402


def make_repo(path: Path, per_axis: int) -> GitRepo:
    repo = GitRepo(path)
    repo.write("conf/config.yaml", "defaults:\n  - model: m0\n  - _self_\nseed: 0\noptimizer:\n  lr: 0.1\n"
               "  momentum: 0.9\ntrainer:\n  epochs: 10\n  batch_size: 64\nexpctl:\n  kind: PyTorchJob\n"
               "  replicas: 2\n  resources:\n    gpus: 1\n")
    for i in range(4):
        repo.write(f"conf/model/m{i}.yaml", f"name: m{i}\nwidth: {64 * (i + 1)}\nlayers: {i + 2}\n")
    repo.write("code/train.py", "print('train')\n")
    repo.write("expctl.yaml", "code_paths: [code]\n")
    lrs = ",".join(f"{0.0001 * (i + 1):.4f}" for i in range(per_axis))
    repo.write("experiments/big.yaml",
               "defaults:\n  - config\n  - _self_\nhydra:\n  sweeper:\n    params:\n"
               f"      model: m0,m1,m2,m3\n      optimizer.lr: {lrs}\n      seed: range(0,{per_axis})\n")
    repo.commit("big sweep")
    return repo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points-per-axis", type=int, default=50)
    parser.add_argument("--sample", type=int, default=30)
    args = parser.parse_args()

    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from omegaconf import OmegaConf

    from expctl.config import source
    from expctl.config.desired_state import load_desired
    from expctl.core.plan_rules import make_plan

    with tempfile.TemporaryDirectory() as tmp:
        repo = make_repo(Path(tmp) / "repo", args.points_per_axis)
        t0 = time.perf_counter()
        desired = load_desired(source.snapshot(repo.path))
        plan = make_plan(desired.runs, [], commit=desired.snapshot.commit, backend="none", now=0.0)
        ours = time.perf_counter() - t0
        n = len(desired.runs)
        assert plan.count(plan.changes[0].action) == n

        conf = repo.path / "conf"
        (conf / "reference.yaml").write_text((repo.path / "experiments/big.yaml").read_text())
        sample = random.Random(0).sample(desired.runs, args.sample)
        GlobalHydra.instance().clear()
        with initialize_config_dir(config_dir=str(conf), version_base="1.3"):
            t1 = time.perf_counter()
            composed = [OmegaConf.to_container(compose("reference", overrides=list(r.overrides)), resolve=True)
                        for r in sample]
            baseline_per_point = (time.perf_counter() - t1) / len(sample)
        mismatches = sum(1 for run, ref in zip(sample, composed, strict=True) if run.config != ref)

    t2 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "expctl", "--help"], check=True, capture_output=True)
    help_time = time.perf_counter() - t2

    per_point = ours / n
    print(f"runs planned:                 {n:,}")
    print(f"expctl plan, end to end:      {ours:.2f} s  ({per_point * 1e3:.3f} ms per point)")
    print(f"baseline, compose per point:  {baseline_per_point * 1e3:.1f} ms per point "
          f"(sample of {len(sample)}; {baseline_per_point * n:.0f} s for all {n:,})")
    print(f"speed-up per point:           {baseline_per_point / per_point:.0f}x")
    print(f"sampled points equal Hydra:   {len(sample) - mismatches}/{len(sample)}")
    print(f"expctl --help start-up:       {help_time:.2f} s (python -m, includes interpreter start)")
    if mismatches:
        sys.exit("sampled points differ from Hydra's compose")


if __name__ == "__main__":
    main()
