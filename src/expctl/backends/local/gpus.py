"""GPUs of one machine for the local backend: the inventory, and gang allocation of devices to a run's replicas.

The inventory is what ``EXPCTL_LOCAL_GPUS`` (or ``local.gpus`` in expctl.yaml) declares — a count (``4``) or a
list of device ids (``0,2,3``) — restricted to what ``nvidia-smi`` detects when it is present; with neither, the
machine's GPUs are not managed (runs start as if GPUs did not exist, as before). There is no allocation table:
the devices in use are those recorded in the state of the started runs, so an allocation survives restarts of
expctl. ``allocate`` is pure: all replicas of a run get their devices at once, or none do (gang semantics).
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from expctl.backends.local.settings import local_settings
from expctl.config.schema_types import MAX_GPUS
from expctl.core.errors import BackendError

ENV_VAR = "EXPCTL_LOCAL_GPUS"
NVIDIA_SMI_TIMEOUT_SECONDS = 10.0


def parse_declared(value: object, where: str = ENV_VAR) -> tuple[str, ...] | int | None:
    """A declaration as a count (int) or a tuple of device ids; None when nothing is declared.

    ``4`` / ``"4"`` → 4; ``"0,2"`` / ``[0, 2]`` → ("0", "2"); ``""`` / ``"none"`` / ``0`` → () (no GPUs at all).
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise BackendError(f"{where}: expected a GPU count or a list of device ids, got {value!r}")
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():  # "4", and "-1" (refused as a count)
        value = int(value.strip())
    if isinstance(value, int):
        if value < 0:
            raise BackendError(f"{where}: a GPU count cannot be negative (got {value})")
        if value > MAX_GPUS:  # fake ids 0..N-1 are made when nvidia-smi is absent: never a billion of them
            raise BackendError(f"{where}: {value} GPUs is more than one machine has (at most {MAX_GPUS})")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.lower() in ("", "none"):
            return ()
        items: Iterable[object] = text.split(",")
    elif isinstance(value, Sequence):
        items = value
    else:
        raise BackendError(f"{where}: expected a GPU count or a list of device ids, got {value!r}")
    ids = tuple(str(item).strip() for item in itertools.islice(items, MAX_GPUS + 1))
    if len(ids) > MAX_GPUS:
        raise BackendError(f"{where}: more than {MAX_GPUS} device ids")
    if any(not i for i in ids) or len(set(ids)) != len(ids):
        raise BackendError(f"{where}: device ids must be distinct and non-empty (got {value!r})")
    # a job gets its devices as CUDA_VISIBLE_DEVICES=a,b: an id with a comma would hand it two devices, and a
    # negative one (-1) hides every GPU from it
    bad = [i for i in ids if "," in i or i.startswith("-") or not i.isprintable() or any(c.isspace() for c in i)]
    if bad:
        raise BackendError(f"{where}: device id {bad[0]!r} is not a device index (0, 1, ...) or UUID (GPU-...)")
    return ids


def parse_nvidia_smi(output: str) -> tuple[str, ...]:
    """Device indices from ``nvidia-smi --query-gpu=index --format=csv,noheader`` output."""
    return tuple(line.strip() for line in output.splitlines() if line.strip())


def detect() -> tuple[str, ...] | None:
    """The indices ``nvidia-smi`` lists, or None when it is absent or fails (no NVIDIA driver here)."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index", "--format=csv,noheader"], capture_output=True, text=True,
                             timeout=NVIDIA_SMI_TIMEOUT_SECONDS, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_nvidia_smi(out)


def inventory(declared: tuple[str, ...] | int | None, detected: tuple[str, ...] | None,
              where: str = ENV_VAR) -> tuple[str, ...] | None:
    """Pure: the device ids expctl may hand out, or None when GPUs are not managed on this machine.

    A count takes the first N detected devices (or fake ids 0..N-1 when nothing is detected, e.g. in tests); a
    list must name detected devices when detection works.
    """
    if declared is None:
        return detected or None
    if isinstance(declared, int):
        if detected is None:
            return tuple(str(i) for i in range(declared))
        if declared > len(detected):
            raise BackendError(f"{where}: {declared} GPUs declared, but nvidia-smi shows only {len(detected)}")
        return detected[:declared]
    if detected is not None:
        unknown = [d for d in declared if d not in detected]
        if unknown:
            raise BackendError(f"{where}: no GPU {', '.join(unknown)} on this machine "
                               f"(nvidia-smi shows {', '.join(detected) or 'none'})")
    return declared


def declared(setting: object) -> tuple[tuple[str, ...] | int | None, str]:
    """What ``EXPCTL_LOCAL_GPUS`` (wins), else ``setting`` (``local.gpus``), declares, and where it says so.
    Checked when the backend is opened: a bad declaration fails the command before any write."""
    env = os.environ.get(ENV_VAR)
    where = ENV_VAR if env is not None else "expctl.yaml: local.gpus"
    return parse_declared(env if env is not None else setting, where), where


def check_settings(settings: Any) -> None:
    """``expctl validate``: the declaration the local backend would refuse when opened (nvidia-smi not asked:
    the machine that validates need not be the one that runs)."""
    declared(local_settings(settings).gpus)


def machine_inventory(setting: object) -> tuple[str, ...] | None:
    """This machine's GPUs from ``EXPCTL_LOCAL_GPUS`` (wins), else ``setting`` (``local.gpus``), and nvidia-smi."""
    value, where = declared(setting)
    return inventory(value, detect(), where)


@dataclass(frozen=True)
class Placement:
    """Where a queued run's replicas go: their devices, or why it waits, or why it can never start."""

    devices: list[list[str]] | None
    waiting: str = ""
    impossible: str = ""


def place(inv: Sequence[str] | None, replicas: int, per_replica: int, in_use: Collection[str],
          blocked: bool = False) -> Placement:
    """Pure: gang placement of a run on the machine (``blocked``: an earlier GPU run waits, so this one does)."""
    if inv is None or per_replica <= 0:
        return Placement([[] for _ in range(replicas)])
    needed = replicas * per_replica
    if needed > len(inv):
        return Placement(None, impossible=f"needs {needed} GPUs ({replicas} x {per_replica}) but this machine "
                                          f"has {len(inv)} (local.gpus / {ENV_VAR})")
    free = free_devices(inv, in_use)
    if blocked:
        return Placement(None, waiting=f"waiting for {needed} GPUs (behind an earlier run that waits for GPUs)")
    got = allocate(free, replicas, per_replica)
    return Placement(got, waiting="" if got is not None else waiting_message(needed, len(free), len(inv)))


def allocate(free: Sequence[str], replicas: int, per_replica: int) -> list[list[str]] | None:
    """Pure: ``per_replica`` devices for each of ``replicas`` replicas from ``free`` (in order), or None when
    they do not all fit at once."""
    needed = replicas * per_replica
    if needed > len(free):
        return None
    return [list(free[i * per_replica : (i + 1) * per_replica]) for i in range(replicas)]


def free_devices(inv: Sequence[str], in_use: Collection[str]) -> list[str]:
    return [d for d in inv if d not in in_use]


def waiting_message(needed: int, free: int, total: int) -> str:
    return f"waiting for {needed} GPUs ({free} of {total} free)"


def visible_devices(devices: Sequence[str]) -> dict[str, str]:
    """The environment that shows a replica exactly ``devices`` (none: an empty list), in nvidia-smi's order."""
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
