"""moesim: simulate Mixture-of-Experts routing and load-balancing dynamics.

The kernels (``route``, ``apply_capacity``, ``update_bias``, ``load_stats``, ``routing_step``)
are Numba-compiled and cached on disk; the first call of each compiles it. The public names are
imported on first use, so ``import moesim`` (and ``moesim --help``) does not load Numba.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from moesim._version import __version__

#: Public name -> the module that defines it.
_PUBLIC = {
    "Result": "moesim.results.model",
    "VariantResult": "moesim.results.model",
    "simulate": "moesim.engine",
    "run_scenario": "moesim.engine",
    "ScenarioError": "moesim.errors",
    "Scenario": "moesim.scenario",
    "expand_variants": "moesim.scenario",
    "load_scenario": "moesim.scenario",
    "update_bias": "moesim.kernels.balance",
    "apply_capacity": "moesim.kernels.capacity",
    "expert_capacity": "moesim.kernels.capacity",
    "load_stats": "moesim.kernels.metrics",
    "route": "moesim.kernels.routing",
    "RoutingStep": "moesim.kernels.step",
    "routing_step": "moesim.kernels.step",
}

__all__ = [
    "Result",
    "RoutingStep",
    "Scenario",
    "ScenarioError",
    "VariantResult",
    "__version__",
    "apply_capacity",
    "expand_variants",
    "expert_capacity",
    "load_scenario",
    "load_stats",
    "route",
    "routing_step",
    "run_scenario",
    "simulate",
    "update_bias",
]


def __getattr__(name: str):
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(f"module 'moesim' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # for editors and type checkers: the same names, imported eagerly
    from moesim.engine import run_scenario, simulate
    from moesim.errors import ScenarioError
    from moesim.kernels.balance import update_bias
    from moesim.kernels.capacity import apply_capacity, expert_capacity
    from moesim.kernels.metrics import load_stats
    from moesim.kernels.routing import route
    from moesim.kernels.step import RoutingStep, routing_step
    from moesim.results.model import Result, VariantResult
    from moesim.scenario import Scenario, expand_variants, load_scenario
