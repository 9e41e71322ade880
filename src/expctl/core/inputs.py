"""An experiment's inputs: what it declares it consumes (``expctl.inputs``) and what that resolved to.

Pure values: no I/O. ``core.pipeline`` orders experiments by them and resolves them against what is observed.
"""

from __future__ import annotations

from dataclasses import dataclass

MODEL = "model"
EXPERIMENT = "experiment"
DATASET = "dataset"  # a dataset another experiment's run produced (its ``outputs: {dataset: NAME}``)
OUTPUT_ARTIFACT_DIR = "expctl/outputs"  # a producer run's artifacts: <dir>/<NAME>/ its files, <dir>/<NAME>.json


@dataclass(frozen=True)
class InputDecl:
    """One named input of an experiment: a registered model version (by alias or number), the successful
    run of another experiment (``each``: one downstream run per point of a sweep upstream; ``best``: the one
    succeeded point whose final ``best`` metric is the highest, or lowest with ``mode: min``), or a dataset
    another experiment's run produced (``dataset``: the name in that experiment's ``outputs``)."""

    name: str
    model: str | None = None
    alias: str | None = None
    version: int | None = None
    experiment: str | None = None
    each: bool = False
    best: str | None = None  # pick the succeeded upstream run with the best final value of this metric
    mode: str = "max"  # best: max or min
    dataset: str | None = None  # a produced dataset: the experiment declaring ``outputs: {dataset: NAME}``

    @property
    def wanted(self) -> str:
        """What it asks for, as people write it: ``pretrain-classifier@champion``, ``NAME/3``, ``pretrain``."""
        if self.model is not None:
            return f"{self.model}@{self.alias}" if self.alias else f"{self.model}/{self.version}"
        if self.dataset is not None:
            return f"dataset {self.dataset}"
        return f"{self.experiment}"


@dataclass(frozen=True)
class ModelVersion:
    """A registered model version an input resolved to, and the spec hash of the run that made it ("" when a
    run expctl did not launch made it)."""

    model: str
    version: str
    run_id: str
    spec_hash: str = ""


@dataclass(frozen=True)
class ResolvedInput:
    """An input as the job gets it: ``uri`` (``models:/NAME/VERSION``, ``runs:/RUN_ID``, or for a produced
    dataset ``runs:/RUN_ID/expctl/outputs/NAME``, its files) and what it is."""

    name: str
    kind: str  # MODEL, EXPERIMENT or DATASET
    source: str  # the model's, the upstream experiment's or the produced dataset's name
    uri: str
    run_id: str
    spec_hash: str  # the upstream run's spec hash (a model version's: the run that logged it)
    version: str = ""  # a model input's version
    after: str = ""  # the upstream attempt (object name) the scheduler must see succeed first ("": succeeded)
    digest: str = ""  # a produced dataset's manifest digest
    producer: str = ""  # a produced dataset: the experiment that produced it

    @property
    def label(self) -> str:
        """What the plan shows of it (``upstream-changed``: old → new): ``NAME v3`` or ``pretrain@<spec>``."""
        if self.kind == MODEL:
            return f"{self.source} v{self.version}"
        if self.kind == DATASET:
            return f"{self.source}@{self.digest[:12]}"
        return f"{self.source}@{self.spec_hash[:12]}"

    def identity(self) -> dict[str, str]:
        """What of it is part of the downstream's spec hash: which upstream computed it, not where it is."""
        if self.kind == MODEL:
            return {"model": self.source, "version": self.version, "spec": self.spec_hash}
        if self.kind == DATASET:  # what the files are, not which run wrote them
            return {"dataset": self.source, "digest": self.digest}
        return {"experiment": self.source, "spec": self.spec_hash}


def env_name(input_name: str) -> str:
    """``EXPCTL_INPUT_<NAME>_URI``: the input's name upper-cased, ``-`` as ``_``."""
    return f"EXPCTL_INPUT_{input_name.upper().replace('-', '_')}_URI"


def output_uri(run_id: str, dataset: str) -> str:
    """Where a produced dataset's files are: ``runs:/<producer run>/expctl/outputs/<NAME>``."""
    return f"runs:/{run_id}/{OUTPUT_ARTIFACT_DIR}/{dataset}"
