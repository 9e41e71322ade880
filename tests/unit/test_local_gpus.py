"""The local backend's GPU inventory and gang placement (pure logic, table-driven)."""

from __future__ import annotations

import pytest

from expctl.backends.local import gpus as gpu
from expctl.core.errors import BackendError


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), (4, 4), ("4", 4), (" 2 ", 2), ("0,2,3", ("0", "2", "3")), ([0, 2], ("0", "2")),
    (["GPU-a", "GPU-b"], ("GPU-a", "GPU-b")), ("", ()), ("none", ()), (0, 0), ("1", 1),
])
def test_parse_declared(value: object, expected: object) -> None:
    assert gpu.parse_declared(value) == expected


@pytest.mark.parametrize("value", [-1, True, "0,0", "1,,2", 1.5, "-1", 10**20, str(10**17), list(range(2000)),
                                   ",".join(map(str, range(2000)))])
def test_parse_declared_rejects(value: object) -> None:
    with pytest.raises(BackendError, match="EXPCTL_LOCAL_GPUS"):
        gpu.parse_declared(value)


def test_parse_nvidia_smi() -> None:
    assert gpu.parse_nvidia_smi("0\n1\n\n2\n") == ("0", "1", "2")


@pytest.mark.parametrize(("declared", "detected", "expected"), [
    (None, None, None),  # nothing declared, no driver: GPUs are not managed
    (None, (), None),
    (None, ("0", "1"), ("0", "1")),  # detected: all of them
    (4, None, ("0", "1", "2", "3")),  # declared count without a driver: fake ids (tests, containers)
    (2, ("0", "1", "2", "3"), ("0", "1")),  # a count restricts to the first N detected
    (("1", "3"), ("0", "1", "2", "3"), ("1", "3")),  # a list restricts to those devices
    (("5", "7"), None, ("5", "7")),
    ((), ("0",), ()),  # declared none: runs that need GPUs can never start here
])
def test_inventory(declared: tuple[str, ...] | int | None, detected: tuple[str, ...] | None,
                   expected: tuple[str, ...] | None) -> None:
    assert gpu.inventory(declared, detected) == expected


def test_inventory_refuses_more_than_the_machine_has() -> None:
    with pytest.raises(BackendError, match="8 GPUs declared, but nvidia-smi shows only 4"):
        gpu.inventory(8, ("0", "1", "2", "3"))
    with pytest.raises(BackendError, match="no GPU 9"):
        gpu.inventory(("1", "9"), ("0", "1"))


@pytest.mark.parametrize(("free", "replicas", "per", "expected"), [
    (["0", "1", "2", "3"], 2, 2, [["0", "1"], ["2", "3"]]),
    (["0", "1", "2", "3"], 1, 3, [["0", "1", "2"]]),
    (["1", "3"], 2, 1, [["1"], ["3"]]),
    (["0", "1", "2"], 2, 2, None),  # gang: three free devices are not enough for 2 x 2
    ([], 1, 1, None),
])
def test_allocate_is_all_or_nothing(free: list[str], replicas: int, per: int,
                                    expected: list[list[str]] | None) -> None:
    assert gpu.allocate(free, replicas, per) == expected


def test_place() -> None:
    inv = ("0", "1", "2", "3")
    assert gpu.place(None, 2, 1, set()).devices == [[], []]  # not managed: start as before
    assert gpu.place(inv, 2, 0, set()).devices == [[], []]  # a CPU-only run needs no device
    assert gpu.place(inv, 1, 3, {"0"}).devices == [["1", "2", "3"]]
    waits = gpu.place(inv, 1, 3, {"0", "1"})
    assert waits.devices is None and waits.waiting == "waiting for 3 GPUs (2 of 4 free)"
    blocked = gpu.place(inv, 1, 1, set(), blocked=True)
    assert blocked.devices is None
    assert blocked.waiting == "waiting for 1 GPUs (behind an earlier run that waits for GPUs)"
    never = gpu.place(inv, 2, 4, set())
    assert never.devices is None and "needs 8 GPUs (2 x 4) but this machine has 4" in never.impossible


def test_visible_devices() -> None:
    assert gpu.visible_devices(["2", "3"]) == {"CUDA_VISIBLE_DEVICES": "2,3", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    assert gpu.visible_devices([])["CUDA_VISIBLE_DEVICES"] == ""
