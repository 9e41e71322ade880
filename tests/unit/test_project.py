"""Which project a tracked run belongs to (``core.project``), and ``expctl.yaml``'s ``project:`` key."""

from __future__ import annotations

import pytest

from expctl.config.desired_state import load_settings
from expctl.core.errors import ConfigError
from expctl.core.project import label_value, owned

A = "github.com/org/vision"
SOURCE_A, SOURCE_B = {"mlflow.source.name": f"{A}#experiments/e.yaml"}, {"mlflow.source.name": "speech#e.yaml"}


@pytest.mark.parametrize(("tags", "project", "mine"), [
    ({"expctl.project": "vision", **SOURCE_A}, "vision", True),  # tagged: the tag decides
    ({"expctl.project": "speech", **SOURCE_A}, "vision", False),  # ... even when the source names this repository
    ({"expctl.project": A, **SOURCE_A}, A, True),  # a derived project
    (SOURCE_A, A, True),  # an older expctl's run, derived project: the source names the label
    (SOURCE_A, "vision", True),  # ... and a project declared later keeps it
    ({"expctl.project": A, **SOURCE_A}, "vision", True),  # ... and the runs tagged before it was declared
    (SOURCE_B, "vision", False),  # another repository's older run
    ({"mlflow.source.name": f"{A}-2#e.yaml"}, A, False),  # a label that only starts like this one
    ({"mlflow.source.name": "experiments/e.yaml"}, "vision", True),  # no repository named: everyone's, as before
    ({}, "vision", True),
    ({"expctl.project": "speech"}, None, True),  # a reader of every project's runs
])
def test_a_run_is_owned_by_its_tag_else_by_its_source(tags: dict[str, str], project: str | None,
                                                       mine: bool) -> None:
    assert owned(tags, project, A) is mine


def test_a_project_is_a_label_value_of_fixed_length() -> None:
    assert label_value(A) == label_value(A) != label_value("vision")
    assert len(label_value(A)) == 16 and label_value(A).isalnum()


@pytest.mark.parametrize("value", ["vision", "org/vision", "a.b_c-d", "0" * 100])
def test_a_declared_project_is_read(value: str) -> None:
    assert load_settings({"expctl.yaml": f"project: '{value}'\n".encode()}).project == value


@pytest.mark.parametrize("value", ["Vision", "/vision", "a b", "", "0" * 101, "x#y"])
def test_a_bad_project_is_one_line_naming_the_file_and_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings({"expctl.yaml": f"project: '{value}'\n".encode()})
    text = str(caught.value)
    assert "expctl.yaml" in text and "project" in text and "\n" not in text


def test_no_project_declared_is_none() -> None:
    assert load_settings({"expctl.yaml": b"backend: local\n"}).project is None


def test_kubernetes_objects_name_their_project_and_are_owned_by_it() -> None:
    from expctl.backends.kubernetes.manifests.common import PROJECT, KubeSettings, metadata, owned_object
    from tests.support.factories import make_launch, make_spec

    launch = make_launch(make_spec("resnet"))
    vision = KubeSettings(project=A, derived_project=A)
    meta = metadata(launch, vision)
    assert meta["labels"][PROJECT] == label_value(A) and meta["annotations"][PROJECT] == A
    older = metadata(launch, KubeSettings())  # no project: nothing added (what an older expctl rendered)
    assert PROJECT not in older["labels"] and PROJECT not in older["annotations"]
    speech, declared = KubeSettings(project="speech"), KubeSettings(project="vision", derived_project=A)
    ours, unlabelled = {"metadata": meta}, {"metadata": older}
    assert owned_object(ours, vision) and owned_object(ours, declared) and not owned_object(ours, speech)
    assert all(owned_object(unlabelled, s) for s in (vision, speech, declared, KubeSettings()))
