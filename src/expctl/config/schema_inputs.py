"""The ``inputs:`` of an experiment's ``expctl`` block (pydantic): what it consumes, each input named.

    inputs:
      base: {model: pretrain-classifier@champion}   # a registered model version by alias
      teacher: {model: pretrain-classifier, version: 3}
      points: {experiment: pretrain-sweep, each: true}   # one run per point of a sweep upstream
      top: {experiment: pretrain-sweep, best: {metric: val_accuracy, mode: max}}   # its best succeeded point
      raw: {dataset: blobs-raw}   # the dataset another experiment's run produced
    outputs: {dataset: blobs-raw}   # what this experiment's job writes into EXPCTL_OUTPUT_DIR becomes a dataset

What one block can say is checked here; what needs the other experiments (an unknown one, ``each`` on an
upstream that is not a sweep, a cycle, a dataset nobody or two experiments produce) is checked by
``core.pipeline.graph_errors`` once all are composed.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from expctl.config.schema_types import ALIAS, MODEL_NAME, Strict, _not_reserved_alias
from expctl.core.inputs import InputDecl

DATASET_NAME = r"^[a-z0-9][a-z0-9_.-]{0,99}$"  # a file name in the producer's artifacts
INPUT_NAME = r"^[A-Za-z][A-Za-z0-9_]{0,62}$"  # EXPCTL_INPUT_<NAME>_URI: a name an environment variable can hold
InputName = Annotated[str, Field(pattern=INPUT_NAME)]


class BestIn(Strict):
    metric: str = Field(min_length=1, max_length=250, description="the metric whose final value picks the run")
    mode: Literal["max", "min"] = "max"


class InputIn(Strict):
    model: str | None = Field(None, max_length=512, description="NAME@ALIAS, or NAME with version")
    version: int | None = Field(None, ge=1, le=2**31 - 1)
    experiment: Annotated[str, Field(max_length=255, pattern=r"^[a-z][a-z0-9/-]*$")] | None = None
    each: bool = False
    best: BestIn | None = None
    dataset: Annotated[str, Field(pattern=DATASET_NAME)] | None = None

    @field_validator("model")
    @classmethod
    def _model_ref(cls, value: str | None) -> str | None:
        if value is None:
            return None
        name, _, alias = value.rpartition("@") if "@" in value else (value, "", "")
        if not re.match(MODEL_NAME, name):
            raise ValueError(f"{value!r}: expected NAME@ALIAS (e.g. pretrain-classifier@champion), or NAME with "
                             "version: N")
        if "@" in value:
            if not re.match(ALIAS, alias):
                raise ValueError(f"{value!r}: the alias after '@' must be letters, digits, '_' and '-'")
            _not_reserved_alias(alias)
        return value

    @model_validator(mode="after")
    def _one_source(self) -> InputIn:
        if sum(x is not None for x in (self.model, self.experiment, self.dataset)) != 1:
            raise ValueError("an input is either {model: NAME@ALIAS} (or {model: NAME, version: N}), "
                             "{experiment: NAME} or {dataset: NAME}")
        if self.dataset is not None and (self.version is not None or self.each or self.best is not None):
            raise ValueError("a dataset input takes no version, each or best: its producer is one run")
        if self.model is not None and ("@" in self.model) == (self.version is not None):
            raise ValueError("a model input names an alias (NAME@ALIAS) or a version, exactly one of them")
        if self.experiment is not None and self.version is not None:
            raise ValueError("version is for model inputs")
        if self.model is not None and self.each:
            raise ValueError("each is for experiment inputs (one run per point of a sweep upstream)")
        if self.best is not None and self.model is not None:
            raise ValueError("best is for experiment inputs (the best run of another experiment)")
        if self.best is not None and self.each:
            raise ValueError("best picks one run, each takes every run: say one of them")
        return self


def to_decls(inputs: dict[str, InputIn]) -> tuple[InputDecl, ...]:
    """The domain declarations of validated inputs, by name."""
    out = []
    for name, item in sorted(inputs.items()):
        model, alias = None, None
        if item.model is not None:
            model, _, alias = item.model.rpartition("@") if "@" in item.model else (item.model, "", "")
        out.append(InputDecl(name=name, model=model, alias=alias or None, version=item.version,
                             experiment=item.experiment, each=item.each,
                             best=item.best.metric if item.best else None,
                             mode=item.best.mode if item.best else "max", dataset=item.dataset))
    return tuple(out)


class OutputsIn(Strict):
    """``outputs:``: what the job writes into ``EXPCTL_OUTPUT_DIR`` becomes this dataset (docs/pipelines.md)."""

    dataset: Annotated[str, Field(pattern=DATASET_NAME)]
