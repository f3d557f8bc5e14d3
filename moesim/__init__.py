"""moesim: simulate Mixture-of-Experts routing and load-balancing dynamics.

The kernels (``route``, ``apply_capacity``, ``update_bias``, ``load_stats``, ``routing_step``)
are Numba-compiled and cached on disk; the first call of each compiles it.
"""

from moesim.engine import Result, VariantResult, simulate
from moesim.errors import ScenarioError
from moesim.kernels.balance import update_bias
from moesim.kernels.capacity import apply_capacity, expert_capacity
from moesim.kernels.metrics import load_stats
from moesim.kernels.routing import route
from moesim.kernels.step import RoutingStep, routing_step
from moesim.scenario import Scenario, expand_variants, load_scenario

__version__ = "0.1.0"
__all__ = [
    "Result",
    "RoutingStep",
    "Scenario",
    "ScenarioError",
    "VariantResult",
    "expand_variants",
    "load_scenario",
    "simulate",
    "__version__",
    "apply_capacity",
    "expert_capacity",
    "load_stats",
    "route",
    "routing_step",
    "update_bias",
]
