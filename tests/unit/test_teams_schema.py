"""The ``teams:`` block: what validate refuses (one line naming the file and the key) and where runs go."""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from expctl.config.job_spec import to_job_spec
from expctl.config.schema import ExpctlBlock, parse_settings
from expctl.core.errors import ConfigError, ConfigErrors

VISION = {"name": "vision", "paths": ["experiments/vision"], "members": ["@alice", "@org/vision"],
          "kubernetes": {"namespace": "vision", "queue": "vision-q", "priority_class": "research"},
          "slurm": {"partition": "gpu", "account": "vision", "qos": "vision"}, "gpus": 8, "max_gpus_per_run": 4}
NLP = {"name": "nlp", "paths": ["experiments/nlp/"], "members": ["@bob", "carol@example.com"],
       "kubernetes": {"namespace": "nlp"}, "slurm": {"account": "nlp"}, "gpus": 16}


def teams(*extra: dict[str, Any], **changes: Any) -> dict[str, Any]:
    return {"teams": [{**VISION, **changes}, NLP, *extra]}


def error_of(data: Any) -> str:
    with pytest.raises((ConfigError, ConfigErrors)) as exc:
        parse_settings(data)
    return str(exc.value)


@pytest.mark.parametrize(("data", "expected"), [
    (teams(gpus=0), "expctl.yaml: teams.0.gpus: input should be greater than or equal to 1 (got 0)"),
    (teams(gpus=-3), "expctl.yaml: teams.0.gpus: input should be greater than or equal to 1 (got -3)"),
    (teams(max_gpus_per_run=0), "expctl.yaml: teams.0.max_gpus_per_run: input should be greater than or equal"),
    (teams(max_gpus_per_run=9), "expctl.yaml: teams.0.max_gpus_per_run: 9 is over the team's quota of 8 GPUs"),
    (teams(paths=[]), "expctl.yaml: teams.0.paths: list should have at least 1 item"),
    (teams(paths=["../elsewhere"]), "expctl.yaml: teams.0.paths.0: value error, must be a path inside the repo"),
    (teams(name="Vision Team"), "expctl.yaml: teams.0.name: must be a lowercase RFC 1123 label"),
    (teams(members=["alice"]), "expctl.yaml: teams.0.members.0: must be one line"),
    (teams(gpu=8), "expctl.yaml: teams.0.gpu: unknown key (did you mean 'gpus'?)"),
    (teams(share="everyone"), "expctl.yaml: teams.0.share: input should be a valid boolean"),
    (teams({**NLP, "paths": ["experiments/other"], "kubernetes": None, "slurm": None}),
     "expctl.yaml: teams.2.name: a second team named 'nlp' (the first is teams.1)"),
    (teams(paths=["experiments/vision", "experiments/nlp/bert"]),
     "expctl.yaml: teams.1.paths.0: path 'experiments/nlp/' overlaps 'experiments/nlp/bert' of team vision "
     "(teams.0.paths.1): an experiment belongs to exactly one team"),
    (teams(paths=["experiments", "x"]), "expctl.yaml: teams.1.paths.0: path 'experiments/nlp/' overlaps "
     "'experiments' of team vision"),
    (teams(paths=["experiments/v", "experiments/v/"]), "expctl.yaml: teams.0.paths.1: path 'experiments/v/' "
     "overlaps 'experiments/v' of this team"),
    (teams(kubernetes={"namespace": "nlp"}), "expctl.yaml: teams.1.kubernetes.namespace: namespace 'nlp' is team "
     "vision's already (teams.0.kubernetes.namespace): each team has its own"),
    (teams(slurm={"account": "nlp"}), "expctl.yaml: teams.1.slurm.account: account 'nlp' is team vision's"),
    ({**teams(), "tenants": [{"path": "experiments/x", "namespace": "x"}]},
     "expctl.yaml: tenants: tenants are replaced by teams: move each tenant's path"),
])
def test_bad_teams_are_one_line(data: dict[str, Any], expected: str) -> None:
    message = error_of(data)
    assert "\n" not in message
    assert message.startswith(expected), message


def test_a_member_may_belong_to_two_teams() -> None:
    settings = parse_settings(teams({"name": "infra", "paths": ["experiments/infra"], "members": ["@alice"]}))
    assert [t.name for t in settings.teams] == ["vision", "nlp", "infra"]


def test_tenants_keep_working_with_one_deprecation_line() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = parse_settings({"tenants": [{"path": "experiments/a", "namespace": "a"}]})
    assert settings.tenant_for("experiments/a/e.yaml") is not None
    assert [str(w.message) for w in caught] == [
        "expctl.yaml: tenants are deprecated: declare teams instead (each tenant's path, namespace/queue and "
        "slurm.tenants' partition/account/qos become one team's; docs/teams.md)"]


def job(block: dict[str, Any], file: str = "experiments/vision/resnet.yaml", data: Any = None) -> Any:
    return to_job_spec(ExpctlBlock.model_validate(block), parse_settings(data or teams()), file)


def test_runs_take_their_teams_placement() -> None:
    spec = job({"resources": {"gpus": 2}, "replicas": 2})
    assert (spec.team, spec.namespace, spec.scheduling.queue, spec.scheduling.priority_class) == \
        ("vision", "vision", "vision-q", "research")
    assert (spec.scheduling.partition, spec.scheduling.account, spec.scheduling.qos) == ("gpu", "vision", "vision")
    nlp = job({"slurm": {"qos": "long"}}, "experiments/nlp/bert/base.yaml",
              {**teams(), "slurm": {"partition": "cpu", "qos": "normal"}})
    assert (nlp.team, nlp.namespace, nlp.scheduling.queue) == ("nlp", "nlp", None)
    assert (nlp.scheduling.partition, nlp.scheduling.account, nlp.scheduling.qos) == ("cpu", "nlp", "long")


def test_team_is_not_in_the_spec_hash() -> None:
    spec = job({})
    assert "team" not in spec.shape()


@pytest.mark.parametrize(("block", "file", "expected"), [
    ({}, "experiments/misc/e.yaml", "experiments/misc/e.yaml: belongs to no team (expctl.yaml's teams own "
     "experiments/vision, experiments/nlp/): add its path to one team's paths"),
    ({"namespace": "nlp"}, None, "experiments/vision/resnet.yaml: expctl.namespace: namespace 'nlp' is not team "
     "vision's namespace 'vision' (experiments under experiments/vision use vision)"),
    ({"namespace": "nlp"}, "experiments/nlp/x.yaml", None),  # its own team's: fine
    ({"queue": "other"}, None, "experiments/vision/resnet.yaml: expctl.queue: queue 'other' is not team vision's"),
    ({"slurm": {"account": "nlp"}}, None, "experiments/vision/resnet.yaml: expctl.slurm.account: account 'nlp' is "
     "not team vision's account 'vision'"),
    ({"resources": {"gpus": 3}, "replicas": 2}, None, "experiments/vision/resnet.yaml: expctl.resources.gpus: a run "
     "asks for 6 GPUs (3 x 2 replicas), over team vision's per-run maximum of 4"),
    ({"resources": {"gpus": 17}}, "experiments/nlp/x.yaml", "experiments/nlp/x.yaml: expctl.resources.gpus: a run "
     "asks for 17 GPUs (17 x 1 replicas), over team nlp's whole quota of 16"),
])
def test_experiments_stay_in_their_team(block: dict[str, Any], file: str | None, expected: str | None) -> None:
    if expected is None:
        assert job(block, file or "experiments/vision/resnet.yaml").namespace == "nlp"
        return
    with pytest.raises(ConfigError) as exc:
        job(block, file or "experiments/vision/resnet.yaml")
    assert str(exc.value).startswith(expected), str(exc.value)


def test_an_experiment_of_a_team_without_a_namespace_cannot_choose_anothers() -> None:
    data = teams({"name": "infra", "paths": ["experiments/infra"]})
    with pytest.raises(ConfigError) as exc:
        job({"namespace": "vision"}, "experiments/infra/e.yaml", data)
    assert str(exc.value) == ("experiments/infra/e.yaml: expctl.namespace: namespace 'vision' is team vision's: "
                              "experiments of team infra cannot run there")
