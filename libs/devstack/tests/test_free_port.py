"""`free_port`: each pytest-xdist worker picks from a slice of its own, never twice."""

import pytest

from devstack.testing import _free_port_range, free_port


def test_workers_pick_from_disjoint_slices(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    slices = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        first, last = _free_port_range()
        ports = [free_port() for _ in range(20)]
        assert all(first <= port < last for port in ports)
        slices.append(range(first, last))
    assert slices[0].stop <= slices[1].start
    assert len(slices[0]) > 1000


def test_a_port_is_handed_out_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    ports = [free_port() for _ in range(200)]
    assert len(set(ports)) == len(ports)
