"""Hostile input and faults, table-driven: one line naming the file and key, the right exit code, no traceback,
and nothing written.

Every case is a real git repository and the real ``expctl`` command line, run in-process (click's runner) so
that the table stays fast; ``test_subprocess_*`` run a few of them as separate processes too. Categories:
experiments (YAML, composition, sweeps, resolvers), ``conf/``, the ``expctl`` block, ``expctl.yaml``, plan files,
CLI arguments, local state, git states and unreachable servers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from expctl.backends.local import state as local_state
from tests.support.bad_input import BASE, Case, Setup, check, invoke, run_state
from tests.support.gitrepo import GitRepo, minimal_repo

pytestmark = pytest.mark.integration

BOMB = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'x, x, x, x, x, x, x, x, x'}]\n"
               for i in range(9))


def sweep(params: str, body: str = "") -> str:
    return BASE + body + "hydra:\n  sweeper:\n    params:\n" + params


def block(text: str) -> str:
    return BASE + "expctl:\n" + text


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _commit(repo: GitRepo) -> None:
    repo.commit("more")


def states(damage: str) -> Setup:
    """A healthy finished run ``good-1`` plus a run ``bad-1`` whose state file is damaged in one way."""

    def setup(repo: GitRepo) -> None:
        runs = repo.path / ".expctl" / "runs"
        local_state.save(runs / "good-1", run_state("good-1"))
        bad = runs / "bad-1"
        bad.mkdir(parents=True)
        text = json.dumps(asdict(run_state("bad-1")))
        if damage == "truncated":
            (bad / "state.json").write_text(text[: len(text) // 2])
        elif damage == "foreign":
            (bad / "state.json").write_text('["not", "a", "state"]')
        elif damage == "missing-fields":
            (bad / "state.json").write_text('{"name": "bad-1"}')
        elif damage == "binary":
            (bad / "state.json").write_bytes(b"\xff\xfe\x00garbage")
        elif damage == "unreadable":
            (bad / "state.json").mkdir()  # reading it fails with an OS error, as for a file without permission
        elif damage == "bad-phase":
            (bad / "state.json").write_text(text.replace('"Succeeded"', '"Exploded"'))
        elif damage == "nested":  # too deep for the JSON parser: a RecursionError, not a ValueError, in json
            (bad / "state.json").write_text("[" * 100_000 + "]" * 100_000)
        elif damage == "wrong-types":
            (bad / "state.json").write_text(text.replace('"attempt": 1', '"attempt": "1"'))

    return setup


def state_dir_is_a_file(repo: GitRepo) -> None:
    (repo.path / ".expctl").write_text("not a directory\n")


def saved_plan(content: str) -> Setup:
    def setup(repo: GitRepo) -> None:
        (repo.path / "saved.plan").write_text(content)

    return setup


def saved_plan_text(**fields: object) -> str:
    """A well-formed saved plan with ``fields`` changed."""
    plan = {"schema_version": 1, "commit": "0" * 40, "backend": "local", "worktree": False, "prune": False,
            "replace_running": False, "fingerprint": "f" * 16, "changes": [], "summary": {}}
    return json.dumps({**plan, **fields})


def no_commits(repo: GitRepo) -> None:
    repo.git("update-ref", "-d", "HEAD")


def symlink(rel: str, target: str, replace: bool = False) -> Setup:
    def setup(repo: GitRepo) -> None:
        if replace:
            (repo.path / rel).unlink()
        (repo.path / rel).symlink_to(target)
        repo.commit("a link")

    return setup


def settings_directory(repo: GitRepo) -> None:
    (repo.path / "expctl.yaml").unlink()
    repo.write("expctl.yaml/settings.yaml", "backend: kubernetes\n")
    repo.commit("settings in a directory")


def latin1(repo: GitRepo) -> None:
    (repo.path / "experiments" / "e.yaml").write_bytes(b"seed: \xe9t\xe9\n")
    repo.commit("latin-1")


def conflict_markers(repo: GitRepo) -> None:
    repo.write("experiments/good.yaml", "<<<<<<< HEAD\nseed: 1\n=======\nseed: 2\n>>>>>>> other\n")
    repo.commit("a bad merge")


def kubeconfig_bytes(data: bytes) -> Setup:
    def setup(repo: GitRepo) -> None:
        (repo.path / "kubeconfig").write_bytes(data)

    return setup


def kubeconfig_to(port: int) -> Setup:
    def setup(repo: GitRepo) -> None:
        (repo.path / "kubeconfig").write_text(
            "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:"
            f"{port}', insecure-skip-tls-verify: true}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\n"
            "contexts: [{name: c, context: {cluster: c, user: u}}]\ncurrent-context: c\n")

    return setup


DEAD = closed_port()

CASES = [
    # --- experiments: YAML ---------------------------------------------------------------------------------
    Case("yaml syntax", {"experiments/bad.yaml": "defaults: [config\nx: 1\n"},
         expected="experiments/bad.yaml: line 2: YAML syntax error"),
    Case("duplicate key", {"experiments/e.yaml": BASE + "seed: 1\nseed: 2\n"},
         expected="experiments/e.yaml: line 5: duplicate key 'seed' (first defined on line 4)"),
    Case("duplicate nested key", {"experiments/e.yaml": BASE + "optimizer:\n  lr: 1\n  lr: 2\n"},
         expected="experiments/e.yaml: line 6: duplicate key 'lr' (first defined on line 5)"),
    Case("alias bomb", {"experiments/e.yaml": BASE + BOMB},
         expected="experiments/e.yaml: line 1: document expands to more than 200,000 nodes"),
    Case("recursive alias", {"experiments/e.yaml": BASE + "a: &a [*a]\n"},
         expected="experiments/e.yaml: line 4: recursive YAML alias"),
    Case("file over the size limit", {"experiments/e.yaml": BASE + "x: '" + "a" * (1 << 20) + "'\n"},
         expected="experiments/e.yaml: file is 1.0 MiB, over the limit of 1 MiB"),
    Case("not UTF-8", setup=latin1, expected="experiments/e.yaml: not UTF-8 text (byte 6)"),
    Case("two YAML documents", {"experiments/e.yaml": BASE + "---\nseed: 2\n"},
         expected="experiments/e.yaml: line 4: YAML syntax error: but found another document"),
    Case("python tag", {"experiments/e.yaml": BASE + "x: !!python/object/apply:os.system [id]\n"},
         expected="experiments/e.yaml: line 4: YAML syntax error: could not determine a constructor"),
    Case("control character", {"experiments/e.yaml": BASE + "x: \"a\x07\"\n"},
         expected="experiments/e.yaml: YAML syntax error: unacceptable character #x0007"),
    Case("merge conflict markers", setup=conflict_markers, expected="experiments/good.yaml: line "),
    # --- experiments: composition ----------------------------------------------------------------------------
    Case("experiment is a word", {"experiments/e.yaml": "hello\n"},
         expected="experiments/e.yaml: must be a mapping of keys to values (got str 'hello')"),
    Case("experiment is a number", {"experiments/e.yaml": "42\n"},
         expected="experiments/e.yaml: must be a mapping of keys to values (got int 42)"),
    Case("experiment is a symbolic link", setup=symlink("experiments/link.yaml", "good.yaml"),
         expected="experiments/link.yaml: a symbolic link (to 'good.yaml'): configs are read from git"),
    Case("experiments directory is a symbolic link", setup=symlink("experiments/team", "../code"),
         expected="experiments/team: a symbolic link (to '../code')"),
    Case("defaults is a number", {"experiments/e.yaml": "defaults: 5\n"},
         expected="experiments/e.yaml: Invalid defaults list in 'e', defaults must be a list (got int)"),
    Case("null in the defaults list", {"experiments/e.yaml": "defaults: [config, null]\n"},
         expected="experiments/e.yaml: Unsupported type in defaults : NoneType"),
    Case("empty mapping in the defaults list", {"experiments/e.yaml": "defaults: [config, {}]\n"},
         expected="experiments/e.yaml: In e: Missing group name in {}"),
    Case("defaults without _self_ (a Hydra warning, one line)", {"experiments/e.yaml": "defaults: [config]\nx: ${y}\n"},
         expected="experiments/e.yaml: x: interpolation to a missing key"),
    Case("experiment is a list", {"experiments/e.yaml": "- a\n- b\n"}, expected="experiments/e.yaml"),
    Case("unknown group option", {"experiments/e.yaml": "defaults:\n  - config\n  - override /model: smal\n"},
         expected="experiments/e.yaml: defaults.model: unknown option 'smal' in group 'model' "
                  "(did you mean 'small'?)"),
    Case("missing ??? value", {"experiments/e.yaml": BASE + "data_dir: ???\n"},
         expected="experiments/e.yaml: data_dir: missing mandatory value"),
    Case("interpolation to a missing key", {"experiments/e.yaml": BASE + "lr2: ${optimizer.lrr}\n"},
         expected="experiments/e.yaml: lr2: interpolation to a missing key"),
    Case("cyclic interpolation", {"experiments/e.yaml": BASE + "a: ${b}\nb: ${a}\n"},
         expected="experiments/e.yaml"),
    Case("invalid experiment name", {"experiments/Bad_Name.yaml": BASE},
         expected="experiments/Bad_Name.yaml: invalid experiment name 'Bad_Name'"),
    Case("duplicate experiment names", {"experiments/a/b-c.yaml": BASE, "experiments/a-b/c.yaml": BASE},
         expected="duplicate experiment name 'a-b-c'"),
    # --- sweeps ---------------------------------------------------------------------------------------------
    Case("sweep over a missing key", {"experiments/e.yaml": sweep("      optimizer.lrr: 0.1,0.2\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.optimizer.lrr: sweep over a key that does not exist "
                  "(did you mean 'optimizer.lr'?)"),
    Case("interval sweep", {"experiments/e.yaml": sweep("      optimizer.lr: interval(0.1,0.2)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.optimizer.lr: interval sweep cannot be enumerated"),
    Case("shuffle sweep", {"experiments/e.yaml": sweep("      seed: shuffle(1,2,3)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.seed: shuffle() sweeps are not deterministic"),
    Case("sweep over the cap", {"experiments/e.yaml": sweep("      seed: range(0,200)\n      optimizer.lr: "
                                                            "range(0,60)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params: sweep expands to 12,000 runs, over the cap"),
    Case("too many group compositions",
         {**{f"conf/dataset/d{i}.yaml": f"name: d{i}\n" for i in range(30)},
          **{f"conf/model/m{i}.yaml": f"name: m{i}\n" for i in range(20)},
          "experiments/e.yaml": sweep("      model: glob(*)\n      +dataset: glob(*)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params: the sweep combines 736 sets of group options, over "
                  "the limit of 500 compositions"),
    Case("broken sweep grammar", {"experiments/e.yaml": sweep("      seed: range(1,\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.seed: invalid sweep"),
    Case("mapping as a sweep value", {"experiments/e.yaml": sweep("      optimizer: {lr: 1}\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.optimizer: invalid sweep"),
    Case("null sweep value", {"experiments/e.yaml": sweep("      seed: null\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.seed"),
    Case("sweep deletes a key", {"experiments/e.yaml": sweep("      ~seed: 1\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.~seed: deleting keys (~) cannot be swept"),
    Case("sweep adds an existing key", {"experiments/e.yaml": sweep("      +seed: 1,2\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.+seed: cannot add 'seed': it already exists"),
    Case("sweep params not a mapping", {"experiments/e.yaml": BASE + "hydra:\n  sweeper:\n    params: [1]\n"},
         expected="experiments/e.yaml"),
    Case("a billion-point range", {"experiments/e.yaml": sweep("      seed: range(0,1000000000)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.seed: sweep expands to more than 100,000 runs"),
    Case("a float range that never ends", {"experiments/e.yaml": sweep("      optimizer.lr: range(1e20,1e21)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.optimizer.lr: sweep expands to more than 100,000"),
    Case("two axes over the ceiling", {"experiments/e.yaml": sweep("      seed: range(0,1000)\n      "
                                                                   "optimizer.lr: range(0,1000)\n")},
         expected="experiments/e.yaml: hydra.sweeper.params: sweep expands to more than 100,000 runs"),
    Case("max_runs over the ceiling", {"experiments/e.yaml": block("  max_runs: 1000000000\n")},
         expected="experiments/e.yaml: expctl.max_runs: input should be less than or equal to 100000"),
    Case("sweep value with a newline", {"experiments/e.yaml": sweep("      +note: \"a\\n+ create forged\"\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.+note: invalid sweep"),
    Case("empty sweep key", {"experiments/e.yaml": sweep('      "": 1,2\n')},
         expected="experiments/e.yaml: Config group override must be a string or a list"),
    # --- secrets: resolvers that are not allow-listed --------------------------------------------------------
    Case("oc.env in the body", {"experiments/e.yaml": BASE + "token: ${oc.env:HOME}\n"},
         expected="experiments/e.yaml: token: resolver 'oc.env' is not allowed in committed configs"),
    Case("oc.env as a sweep value", {"experiments/e.yaml": sweep("      seed: ${oc.env:HOME}\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.seed: resolver 'oc.env' is not allowed"),
    Case("oc.env in a conf group", {"experiments/e.yaml": "defaults:\n  - config\n  - override /model: leak\n",
                                    "conf/model/leak.yaml": "name: ${oc.env:HOME}\n"},
         expected="conf/model/leak.yaml: name: resolver 'oc.env' is not allowed"),
    Case("oc.env in the defaults list",
         {"experiments/e.yaml": "defaults:\n  - config\n  - override /model: ${oc.env:HOME}\n"},
         expected="experiments/e.yaml: defaults[1].override /model: resolver 'oc.env' is not allowed"),
    Case("hydra resolver", {"experiments/e.yaml": BASE + "cwd: ${hydra:runtime.cwd}\n"},
         expected="experiments/e.yaml: cwd: resolver 'hydra' is not allowed"),
    Case("oc.env assembled at resolution time",
         {"experiments/e.yaml": BASE + "d: $\nz: '{oc.env:HOME}'\nw: ${oc.decode:${d}${z}}\n"},
         expected="experiments/e.yaml: w: resolver 'oc.env' is not allowed"),
    Case("hydra search path in the experiment", {"experiments/e.yaml": BASE + "hydra:\n  searchpath: [file:///etc]\n"},
         expected="experiments/e.yaml: hydra.searchpath: configs are read only from the commit's conf/"),
    Case("hydra search path in conf", {"conf/config.yaml": "seed: 0\nhydra:\n  searchpath: [pkg://hydra.conf]\n"},
         expected="conf/config.yaml: hydra.searchpath: configs are read only from the commit's conf/"),
    Case("defaults entry outside conf", {"experiments/e.yaml": "defaults:\n  - config\n  - ../../../etc/creds\n"},
         expected="experiments/e.yaml: defaults[1]: names a config outside conf/ ('..')"),
    Case("group option outside conf",
         {"experiments/e.yaml": "defaults:\n  - config\n  - override /model: ../../../../home/ci/creds\n"},
         expected="experiments/e.yaml: defaults[1]: names a config outside conf/ ('..')"),
    Case("group option outside conf in conf", {"conf/config.yaml": "defaults:\n  - model: /../../tmp/x\n"},
         expected="conf/config.yaml: defaults[0]: names a config outside conf/ ('..')"),
    Case("swept group option outside conf", {"experiments/e.yaml": sweep("      model: small,../../../tmp/x\n")},
         expected="experiments/e.yaml: hydra.sweeper.params.model: names a config outside conf/ ('..')"),
    # --- the expctl block --------------------------------------------------------------------------------------
    Case("unknown key in the expctl block", {"experiments/e.yaml": block("  replica: 2\n")},
         expected="experiments/e.yaml: expctl.replica: unknown key (did you mean 'replicas'?)"),
    Case("unknown nested key", {"experiments/e.yaml": block("  resources:\n    gpu: 1\n")},
         expected="experiments/e.yaml: expctl.resources.gpu: unknown key (did you mean 'gpus'?)"),
    Case("bool for replicas", {"experiments/e.yaml": block("  replicas: true\n")},
         expected="experiments/e.yaml: expctl.replicas: input should be a valid integer (got True)"),
    Case("negative replicas", {"experiments/e.yaml": block("  replicas: -1\n")},
         expected="experiments/e.yaml: expctl.replicas: input should be greater than or equal to 1 (got -1)"),
    Case("negative GPUs", {"experiments/e.yaml": block("  resources:\n    gpus: -2\n")},
         expected="experiments/e.yaml: expctl.resources.gpus: input should be greater than or equal to 0"),
    Case("unknown job kind", {"experiments/e.yaml": block("  kind: PytorchJob\n")},
         expected="experiments/e.yaml: expctl.kind: input should be"),
    Case("TrainJob without runtime", {"experiments/e.yaml": block("  kind: TrainJob\n  runtime: null\n")},
         expected="experiments/e.yaml: expctl.runtime: a TrainJob needs a runtime"),
    Case("empty command", {"experiments/e.yaml": block("  command: []\n")},
         expected="experiments/e.yaml: expctl.command: list should have at least 1 item"),
    Case("empty program", {"experiments/e.yaml": block("  command: ['', x]\n")},
         expected="experiments/e.yaml: expctl.command[0]: the program to run (first element) is empty"),
    Case("empty image", {"experiments/e.yaml": block("  image: ''\n")},
         expected="experiments/e.yaml: expctl.image: must be a non-empty string without whitespace"),
    Case("null env value", {"experiments/e.yaml": block("  env:\n    A: null\n")},
         expected="experiments/e.yaml: expctl.env.A: input should be a valid string or a valid integer"),
    Case("list env value", {"experiments/e.yaml": block("  env:\n    A: [1]\n")},
         expected="experiments/e.yaml: expctl.env.A: input should be"),
    Case("invalid env name", {"experiments/e.yaml": block("  env:\n    1A: x\n")},
         expected="experiments/e.yaml: expctl.env.1A: invalid name: must be an environment variable name"),
    Case("bad cpu quantity", {"experiments/e.yaml": block("  resources:\n    cpu: lots\n")},
         expected="experiments/e.yaml: expctl.resources.cpu: must be a Kubernetes quantity"),
    Case("number for memory", {"experiments/e.yaml": block("  resources:\n    memory: 4\n")},
         expected="experiments/e.yaml: expctl.resources.memory: input should be a valid string (got 4)"),
    Case("invalid namespace", {"experiments/e.yaml": block("  namespace: Team_A\n")},
         expected="experiments/e.yaml: expctl.namespace: must be a lowercase RFC 1123 label"),
    Case("namespace not allowed", {"experiments/e.yaml": block("  namespace: elsewhere\n")},
         expected="experiments/e.yaml: expctl.namespace: namespace 'elsewhere' is not one expctl may write to"),
    Case("namespace of another team",
         {"expctl.yaml": "code_paths: [code]\nteams:\n  - {name: a, paths: [experiments/team-a], kubernetes: "
                         "{namespace: team-a}}\n  - {name: b, paths: [experiments/good.yaml, experiments/e.yaml], "
                         "kubernetes: {namespace: team-b}}\n",
          "experiments/team-a/e.yaml": block("  namespace: team-b\n")},
         expected="experiments/team-a/e.yaml: expctl.namespace: namespace 'team-b' is not team a's namespace"),
    Case("float timeout", {"experiments/e.yaml": block("  timeout: 1.5\n")},
         expected="experiments/e.yaml: expctl.timeout: input should be a valid integer (got 1.5)"),
    Case("timeout past int32", {"experiments/e.yaml": block("  timeout: 100000000000000000000\n")},
         expected="experiments/e.yaml: expctl.timeout: input should be less than or equal to 2147483647"),
    Case("TTL past int32", {"experiments/e.yaml": block("  ttl_seconds_after_finished: 2147483648\n")},
         expected="experiments/e.yaml: expctl.ttl_seconds_after_finished: input should be less than or equal to"),
    Case("backoff factor of 1e300", {"experiments/e.yaml": block("  retries: {backoff_factor: 1.0e+300}\n")},
         expected="experiments/e.yaml: expctl.retries.backoff_factor: input should be less than or equal to 100"),
    Case("bad toleration", {"experiments/e.yaml": block("  tolerations: [{key: a, operator: Exist}]\n")},
         expected="experiments/e.yaml: expctl.tolerations.0.operator: input should be 'Exists' or 'Equal'"),
    Case("expctl block not a mapping", {"experiments/e.yaml": BASE + "expctl: [1]\n"},
         expected="experiments/e.yaml: Cannot merge DictConfig with ListConfig"),
    Case("zero attempts", {"experiments/e.yaml": block("  retries: {max_attempts: 0}\n")},
         expected="experiments/e.yaml: expctl.retries.max_attempts: input should be greater than or equal to 1"),
    Case("string for a bool", {"experiments/e.yaml": block("  operator_restarts: 'yes'\n")},
         expected="experiments/e.yaml: expctl.operator_restarts: input should be a valid boolean"),
    # --- conf/ -------------------------------------------------------------------------------------------------
    Case("conf syntax error", {"conf/model/small.yaml": "name: [small\n"},
         expected="conf/model/small.yaml: line 2: YAML syntax error"),
    Case("conf duplicate key", {"conf/config.yaml": "seed: 0\nseed: 1\n"},
         expected="conf/config.yaml: line 2: duplicate key 'seed' (first defined on line 1)"),
    Case("conf group option is a word", {"conf/model/small.yaml": "small\n"},
         expected="conf/model/small.yaml: must be a mapping of keys to values (got str 'small')"),
    Case("conf file is a symbolic link", setup=symlink("conf/model/tiny.yaml", "small.yaml"),
         expected="conf/model/tiny.yaml: a symbolic link (to 'small.yaml')"),
    Case("conf alias bomb", {"conf/model/small.yaml": BOMB},
         expected="conf/model/small.yaml: line 1: document expands to more than 200,000 nodes"),
    # --- expctl.yaml -------------------------------------------------------------------------------------------
    Case("expctl.yaml duplicate key", {"expctl.yaml": "code_paths: [code]\nbackend: local\nbackend: kubernetes\n"},
         expected="expctl.yaml: line 3: duplicate key 'backend' (first defined on line 2)"),
    Case("expctl.yaml unknown key", {"expctl.yaml": "code_path: [code]\n"},
         expected="expctl.yaml: code_path: unknown key (did you mean 'code_paths'?)"),
    Case("expctl.yaml unknown backend", {"expctl.yaml": "backend: slurmm\n"},
         expected="expctl.yaml: backend: input should be"),
    Case("expctl.yaml bool for a number", {"expctl.yaml": "max_runs_per_experiment: true\n"},
         expected="expctl.yaml: max_runs_per_experiment: input should be a valid integer (got True)"),
    Case("expctl.yaml syntax", {"expctl.yaml": "backend: [local\n"}, expected="expctl.yaml: line 2: YAML syntax"),
    Case("expctl.yaml a pool of a million threads", {"expctl.yaml": "local:\n  write_concurrency: 1000000\n"},
         expected="expctl.yaml: local.write_concurrency: input should be less than or equal to 64"),
    Case("expctl.yaml an infinite QPS", {"expctl.yaml": "kubernetes:\n  qps: .inf\n"},
         expected="expctl.yaml: kubernetes.qps: input should be a finite number (got inf)"),
    Case("expctl.yaml a QPS of a billion", {"expctl.yaml": "kubernetes:\n  qps: 1000000000\n"},
         expected="expctl.yaml: kubernetes.qps: input should be less than or equal to 10000"),
    Case("expctl.yaml is a directory", setup=settings_directory,
         expected="expctl.yaml: a directory, not a file: the project settings were not read"),
    Case("expctl.yaml is a symbolic link", setup=symlink("expctl.yaml", "/etc/passwd", replace=True),
         expected="expctl.yaml: a symbolic link (to '/etc/passwd')"),
    Case("expctl.yaml is a word", {"expctl.yaml": "local\n"},
         expected="expctl.yaml: must be a mapping of keys to values (got str 'local')"),
    Case("expctl.yaml a hundred quintillion GPUs", {"expctl.yaml": "local:\n  gpus: 100000000000000000000\n"},
         expected="expctl.yaml: local.gpus: input should be less than or equal to 1024"),
    Case("EXPCTL_LOCAL_GPUS a hundred quadrillion", args=("apply", "-y"), env={"EXPCTL_LOCAL_GPUS": str(10**17)},
         expected="EXPCTL_LOCAL_GPUS: 100000000000000000 GPUs is more than one machine has (at most 1024)"),
    Case("EXPCTL_LOCAL_GPUS negative", args=("apply", "-y"), env={"EXPCTL_LOCAL_GPUS": "-1"},
         expected="EXPCTL_LOCAL_GPUS: a GPU count cannot be negative (got -1)"),
    Case("expctl.yaml NUL in a code path", {"expctl.yaml": 'code_paths: ["co\\0de"]\n'},
         expected="expctl.yaml: code_paths.0: must be a non-empty string without whitespace or control characters"),
    Case("expctl.yaml NUL in the data root", {"expctl.yaml": 'code_paths: [code]\ndata_root: "/da\\0ta"\n'},
         expected="expctl.yaml: data_root: must be one line without control characters"),
    Case("NUL in an experiment's code path", {"experiments/e.yaml": block('  code_paths: ["co\\0de"]\n')},
         expected="experiments/e.yaml: expctl.code_paths.0: must be a non-empty string without whitespace or "
                  "control characters (got 'co\\x00de')"),
    Case("expctl.yaml two tenants for one path",
         {"expctl.yaml": "tenants:\n  - {path: experiments/a, namespace: a}\n"
                         "  - {path: experiments/a/, namespace: b}\n"},
         expected="expctl.yaml: tenants.1.path: a second tenant for 'experiments/a/' (the first is tenants.0)"),
    Case("expctl.yaml code path that does not exist", {"expctl.yaml": "code_paths: [cdoe]\n"},
         expected="expctl.yaml: code_paths: 'cdoe' does not exist at commit "),
    Case("experiment's code path that does not exist", {"experiments/e.yaml": block("  code_paths: [code, tarin]\n")},
         expected="experiments/e.yaml: expctl.code_paths: 'tarin' does not exist at commit "),
    Case("slurm backend without a workdir", {"expctl.yaml": "code_paths: [code]\nbackend: slurm\n"},
         expected="expctl.yaml: slurm.workdir: required for the slurm backend"),
    Case("slurm backend with a relative workdir",
         {"expctl.yaml": "code_paths: [code]\nbackend: slurm\nslurm: {workdir: shared/expctl}\n"},
         expected="expctl.yaml: slurm.workdir: must be an absolute path (got 'shared/expctl')"),
    Case("expctl.yaml not a mapping", {"expctl.yaml": "- local\n"}, expected="expctl.yaml: must be a mapping"),
    Case("expctl.yaml bad namespace", {"expctl.yaml": "kubernetes:\n  namespace: Prod\n"},
         expected="expctl.yaml: kubernetes.namespace: must be a lowercase RFC 1123 label"),
    Case("expctl.yaml empty tracking uri", {"expctl.yaml": "tracking_uri: ''\n"},
         expected="expctl.yaml: tracking_uri: must be a non-empty string without whitespace"),
    # --- plan files ----------------------------------------------------------------------------------------------
    Case("plan file is not JSON", setup=saved_plan("{not json"), args=("apply", "-y", "saved.plan"),
         expected="saved.plan: not valid JSON (truncated?)", also_apply=False),
    Case("plan file of another schema", setup=saved_plan('{"schema_version": 99}'),
         args=("apply", "-y", "saved.plan"), expected="saved.plan: schema_version: not an expctl plan",
         also_apply=False),
    Case("plan file of the working tree", setup=saved_plan('{"schema_version": 1, "worktree": true}'),
         args=("apply", "-y", "saved.plan"), expected="saved.plan: a plan of the working tree cannot be applied",
         also_apply=False),
    Case("empty plan file", setup=saved_plan(""), args=("apply", "-y", "saved.plan"),
         expected="saved.plan: not valid JSON (truncated?)", also_apply=False),
    Case("plan file from another clone", setup=saved_plan(saved_plan_text(commit="1" * 40)),
         args=("apply", "-y", "saved.plan"),
         expected="saved.plan: commit: commit 111111111111 is not in this repository", also_apply=False),
    Case("plan file pinned to a ref", setup=saved_plan(saved_plan_text(commit="HEAD")),
         args=("apply", "-y", "saved.plan"), expected="saved.plan: commit: expected a full commit id, got 'HEAD'",
         also_apply=False),
    Case("plan file for a backend there is none of", setup=saved_plan(saved_plan_text(backend="mars")),
         args=("apply", "-y", "saved.plan"), expected="saved.plan: backend: unknown backend 'mars'",
         also_apply=False),
    Case("plan file with --rev", setup=saved_plan(saved_plan_text()),
         args=("apply", "-y", "saved.plan", "--rev", "HEAD~1"), code=2,
         expected="--rev cannot be combined with a saved plan", also_apply=False),
    Case("plan file with --prune", setup=saved_plan(saved_plan_text()), args=("apply", "-y", "--prune", "saved.plan"),
         code=2, expected="--prune cannot be combined with a saved plan", also_apply=False),
    Case("plan file does not exist", args=("apply", "-y", "nope.plan"), code=2,
         expected="File 'nope.plan' does not exist. (see '", also_apply=False),
    # --- CLI arguments -------------------------------------------------------------------------------------------
    Case("non-existent --rev", args=("validate", "--rev", "no-such-branch"),
         expected="--rev no-such-branch: no such commit"),
    Case("unknown backend", args=("plan", "--backend", "mars"), code=2,
         expected="Invalid value for '--backend': 'mars' is not one of 'local', 'kubernetes', 'slurm'.",
         also_apply=False),
    Case("unknown backend in the environment", args=("plan",), env={"EXPCTL_BACKEND": "mars"},
         expected="EXPCTL_BACKEND=mars: unknown backend (choose from local, kubernetes, slurm)"),
    Case("unknown option", args=("plan", "--bogus"), code=2, expected="No such option '--bogus'",
         also_apply=False),
    Case("lock timeout not a number", args=("apply", "--lock-timeout", "soon"), code=2,
         expected="Invalid value for '--lock-timeout': 'soon' is not a number of seconds", also_apply=False),
    Case("lock timeout NaN", args=("apply", "-y", "--lock-timeout", "nan"), code=2,
         expected="Invalid value for '--lock-timeout': 'nan' is not a number of seconds (a finite number, 0 or more)",
         also_apply=False),
    Case("negative wait timeout", args=("apply", "-y", "--wait", "--timeout", "-5"), code=2,
         expected="Invalid value for '--timeout': '-5' is not a number of seconds", also_apply=False),
    Case("status of a state that does not exist", args=("status", "--state", "Sucess"), code=2,
         expected="Invalid value for '--state': 'Sucess' is not one of 'pending', 'running', 'succeeded', 'failed', "
                  "'cancelled', 'waiting', 'blocked'.", also_apply=False),
    Case("history of no entries", args=("history", "--limit", "0"), code=2,
         expected="Invalid value for '--limit': 0 is not in the range x>=1.", also_apply=False),
    Case("UI on a port that does not exist", args=("ui", "--port", "70000"), code=2,
         expected="Invalid value for '--port': 70000 is not in the range 1<=x<=65535.", also_apply=False),
    Case("unknown run for logs", args=("logs", "nope-123"), expected="no local run named nope-123",
         also_apply=False, server=True),
    Case("unknown run for describe", args=("describe", "nope-123"), expected="nope-123", also_apply=False,
         server=True),
    # --- local state -----------------------------------------------------------------------------------------------
    Case("state dir is a file", setup=state_dir_is_a_file, args=("plan",), expected=".expctl",
         also_apply=False),
    Case("logs of a run with damaged state", setup=states("truncated"), args=("logs", "bad-1"),
         expected="bad-1/state.json: damaged run state", also_apply=False, server=True),
    Case("cancel a run with unreadable state", setup=states("unreadable"), args=("cancel", "bad-1"),
         expected="no run named bad-1", also_apply=False, server=True),
    # --- git states ------------------------------------------------------------------------------------------------
    Case("no commit yet", setup=no_commits, expected="--rev HEAD: no such commit"),
    # --- servers ---------------------------------------------------------------------------------------------------
    Case("MLflow unreachable", args=("plan",), env={"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{DEAD}"},
         expected=f"MLflow at http://127.0.0.1:{DEAD} is unreachable"),
    Case("tracking URI with a password", args=("plan",),
         env={"MLFLOW_TRACKING_URI": f"http://ada:hunter2@127.0.0.1:{DEAD}"},
         expected="MLflow at http://***@127.0.0.1:"),
    Case("tracking URI with a password no variable can hand to jobs", args=("plan",),
         env={"MLFLOW_TRACKING_URI": f"mysql://ml:hunter2@127.0.0.1:{DEAD}/mlflow"},
         expected="MLFLOW_TRACKING_URI: the tracking URI holds a secret that local jobs could only be handed inside "
                  "their state files: remove it from the URI and give it in the environment instead"),
    Case("tracking URI that does not parse", args=("plan",), env={"MLFLOW_TRACKING_URI": "http://[::1:5000"},
         expected="MLFLOW_TRACKING_URI: not a valid URI (Invalid IPv6 URL): http://[::1:5000"),
    Case("expctl.yaml tracking URI with a bad port", {"expctl.yaml": "tracking_uri: 'http://mlflow:99999'\n"},
         args=("plan",), expected="expctl.yaml: tracking_uri: not a valid URI (Port out of range 0-65535)"),
    Case("in-memory tracking store", args=("apply", "-y"), env={"MLFLOW_TRACKING_URI": "sqlite:///:memory:"},
         expected="MLFLOW_TRACKING_URI: an in-memory SQLite store (sqlite:///:memory:) forgets every run"),
    *(Case(f"kubeconfig {what}", {"expctl.yaml": "code_paths: [code]\nbackend: kubernetes\n"},
           setup=kubeconfig_bytes(data), args=("plan",), env={"KUBECONFIG": "kubeconfig"},
           expected=f"cannot load Kubernetes credentials: kubeconfig: {message}")
      for what, data, message in (
          ("with bad YAML", b"apiVersion: v1\nclusters: [\n", "not valid YAML (expected the node content, but "
                                                                "found '<stream end>', line 3)"),
          ("not UTF-8", b"apiVersion: v1\nkind: Conf\xe9g\n", "not UTF-8 text (byte 25)"),
          ("not a mapping", b"- clusters\n- users\n", "not a kubeconfig (a YAML mapping of clusters, users and "
                                                       "contexts)"))),
    Case("apiserver unreachable", {"expctl.yaml": "code_paths: [code]\nbackend: kubernetes\n"},
         setup=kubeconfig_to(DEAD), args=("plan",), env={"KUBECONFIG": "kubeconfig"},
         expected=f"Kubernetes API at https://127.0.0.1:{DEAD} is unreachable"),
]


def e2e_stop(repo: Path) -> None:
    """Kill what a test started (its own sessions outlive expctl); damaged states started nothing."""
    import signal

    for run_dir in (repo / ".expctl" / "runs").iterdir():
        try:
            state = local_state.load(run_dir)
        except local_state.StateUnreadable:
            continue
        for proc in state.processes if state else []:
            local_state.kill_group(proc, signal.SIGKILL)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(tmp_path: Path, case: Case, request: pytest.FixtureRequest) -> None:
    check(tmp_path, case, request)


def test_count_of_cases() -> None:
    assert len(CASES) >= 140


@pytest.mark.parametrize("damage", ["truncated", "foreign", "missing-fields", "binary", "unreadable", "bad-phase",
                                    "nested", "wrong-types"])
def test_one_damaged_run_state_is_skipped_with_a_warning(tmp_path: Path, damage: str, mlflow_server: Any) -> None:
    """status lists the other runs; the damaged one is one warning line; plan keeps working."""
    repo = minimal_repo(tmp_path / "repo", {"experiments/good.yaml": block("  kind: local\n  command: [python, -c, "
                                                                            "pass]\n"),
                                             ".gitignore": ".expctl/\n"})
    states(damage)(repo)
    store = mlflow_server.uri
    code, out, err = invoke(repo.path, ("status",), {"MLFLOW_TRACKING_URI": store})
    assert code == 0, err
    assert "good-1" in out and "bad-1" not in out
    warnings = err.strip().splitlines()
    assert len(warnings) == 1 and warnings[0].startswith("warning: ") and "bad-1/state.json" in warnings[0]
    assert "skipping this run" in warnings[0]
    for args in (("plan",), ("apply", "-y"), ("describe", "good-1"), ("logs", "good-1"), ("status", "--all")):
        code, out, err = invoke(repo.path, args, {"MLFLOW_TRACKING_URI": store})
        assert code == 0, (args, out, err)
        assert all(ln.startswith("warning: ") for ln in err.splitlines() if "bad-1" in ln), (args, err)
    e2e_stop(repo.path)


def test_a_damaged_state_is_rebuilt_by_create_and_kept_aside(git_repo: GitRepo, tmp_path: Path) -> None:
    """When the plan creates a run whose local state is damaged, the backend rebuilds it from the launch and
    keeps the damaged directory aside (nothing lost); other runs are untouched."""
    from expctl.backends.local.backend import LocalBackend
    from tests.support.factories import make_job, make_launch, make_spec

    commit = git_repo.head
    job = make_job(command=("python", "-c", "pass"))
    good, bad = (make_launch(make_spec(name, commit=commit, job=job)) for name in ("good", "bad"))
    backend = LocalBackend(tmp_path / "state", git_repo.path, parallelism=2)
    backend.create(good)
    damaged = tmp_path / "state" / "runs" / bad.name
    damaged.mkdir(parents=True)
    (damaged / "state.json").write_text('{"name": "bad", "truncat')
    assert [r.name for r in backend.observe()] == [good.name]  # skipped, with a warning
    backend.create(bad)
    assert sorted(r.name for r in backend.observe()) == sorted([good.name, bad.name])
    (kept,) = (tmp_path / "state" / "runs" / ".damaged").iterdir()
    assert kept.name.startswith(bad.name) and (kept / "state.json").read_text() == '{"name": "bad", "truncat'


def test_a_100_mb_experiment_is_refused_in_seconds(tmp_path: Path) -> None:
    repo = minimal_repo(tmp_path / "repo", {"experiments/good.yaml": BASE})
    with open(repo.path / "experiments" / "huge.yaml", "w") as fh:
        fh.write("x: '")
        chunk = "a" * (1 << 20)
        for _ in range(100):
            fh.write(chunk)
        fh.write("'\n")
    repo.commit("a huge file")
    code, _, err = invoke(repo.path, ("validate",), {})
    assert code == 1
    assert err.strip() == "error: experiments/huge.yaml: file is 100.0 MiB, over the limit of 1 MiB for a YAML config"


def test_validate_reports_every_error_at_once(tmp_path: Path) -> None:
    repo = minimal_repo(tmp_path / "repo", {"experiments/a.yaml": block("  replica: 2\n"),
                                             "experiments/b.yaml": BASE + "x: ${nope}\n",
                                             "experiments/ok.yaml": BASE})
    code, _, err = invoke(repo.path, ("validate",), {})
    assert code == 1
    assert [ln.split(":")[1].strip() for ln in err.strip().splitlines()] == ["experiments/a.yaml",
                                                                            "experiments/b.yaml"]


def run_expctl(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "expctl", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, check=False)


def test_subprocess_errors_are_one_line_and_debug_shows_the_traceback(tmp_path: Path) -> None:
    repo = minimal_repo(tmp_path / "repo", {"experiments/e.yaml": BASE + "seed: 1\nseed: 2\n"})
    proc = run_expctl(repo.path, "validate")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "error: experiments/e.yaml: line 5: duplicate key 'seed' (first defined on line 4)\n"
    proc = run_expctl(repo.path, "validate", env={"EXPCTL_DEBUG": "1"})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_subprocess_not_a_git_repository(tmp_path: Path) -> None:
    proc = run_expctl(tmp_path, "validate")
    assert proc.returncode == 1 and proc.stderr.startswith("error: ") and "not inside a git repository" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_no_experiments_directory(tmp_path: Path) -> None:
    repo = GitRepo(tmp_path / "empty")
    repo.write("README.md", "nothing\n")
    repo.commit()
    code, _, err = invoke(repo.path, ("validate",), {})
    assert code == 1
    assert err.strip() == "error: experiments/: no experiments/ directory at this commit (nothing is desired)"


@pytest.mark.parametrize("command", [("no-such-program-xyz",), ("python", "-c", "import os; os.abort()"),
                                     ("sh", "-c", "exit 127")])
def test_a_broken_command_is_a_code_failure_never_retried_as_infrastructure(
        git_repo: GitRepo, tmp_path: Path, command: tuple[str, ...]) -> None:
    from expctl.backends.local.backend import LocalBackend
    from expctl.core.model import FailureClass, Phase
    from tests.support.factories import make_job, make_launch, make_spec

    launch = make_launch(make_spec("broken", commit=git_repo.head, job=make_job(command=command)))
    backend = LocalBackend(tmp_path / "state", git_repo.path, parallelism=1)
    backend.create(launch)
    deadline = time.monotonic() + 60
    while (run := backend.observe()[0]).phase is not Phase.FAILED and time.monotonic() < deadline:
        time.sleep(0.1)
    assert run.phase is Phase.FAILED and run.failure is FailureClass.CODE, run.message
