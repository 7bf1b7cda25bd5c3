"""Fixtures for the simulator's tests. Helpers live in fleet_sim_testing.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fleet_testing import FAST

from fleet_sim import FleetSimulator


@pytest.fixture
def make_sim(tmp_path) -> Iterator[Any]:
    """``make_sim(**kwargs)``: a started simulator (role ``tasks`` and fast timings by default)."""
    started: list[FleetSimulator] = []

    def make(**kwargs: Any) -> FleetSimulator:
        if "fleet_config" not in kwargs:
            kwargs.setdefault("roles", ["tasks"])
        kwargs.setdefault("workdir", tmp_path / f"sim{len(started)}")
        kwargs["scenario"] = {**FAST, **(kwargs.get("scenario") or {})}
        sim = FleetSimulator(**kwargs).start()
        started.append(sim)
        return sim

    yield make
    for sim in started:
        sim.close()


@pytest.fixture
def sim(make_sim) -> FleetSimulator:
    return make_sim()
