"""A simulated EC2 fleet for demos, end-to-end tests and benchmarks (fleet_sim/README.md).

The names below are imported on first use, so ``python -m fleet_sim check`` never loads moto.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {  # ruff: ignore[non-empty-init-module] -- lazy on purpose: `python -m fleet_sim check` must not load moto
    "FleetSimulator": "fleet_sim.simulator",
    "SimulatorError": "fleet_sim.simulator",
    "Scenario": "fleet_sim.scenario",
    "ScenarioError": "fleet_sim.scenario",
    "load_scenario": "fleet_sim.scenario",
    "demo_job": "fleet_sim.fleet_config",
    "demo_runs": "fleet_sim.fleet_config",
    "sim_fleet_config": "fleet_sim.fleet_config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fleet_sim' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)
