"""Scenario files: a validated schema, variants, command-line overrides and readable errors.

A scenario is YAML mapping onto :class:`Scenario` (pydantic, unknown keys rejected). Every field
has a default, bounds and a description (the source of docs/scenarios.md, written by
``moesim schema --markdown``). Problems are reported as ``file:line:column: key.path: what was
expected`` with a suggestion for likely typos.

Where things are:

- :mod:`~moesim.scenario.schema`: the sections and :class:`Scenario`;
- :mod:`~moesim.scenario.source`: reading YAML with the position of every key, and its limits;
- :mod:`~moesim.scenario.checks`: problem messages, validation and the cross-field checks;
- :mod:`~moesim.scenario.loading`: :func:`load_scenario`, ``--set`` overrides, variants;
- :mod:`~moesim.scenario.memory`: the recording interval and the memory a run needs;
- :mod:`~moesim.scenario.docs`: the JSON Schema, the field reference and the example.
"""

from moesim.scenario.docs import (
    example_scenario_yaml,
    render_scenario_docs,
    scenario_json_schema,
)
from moesim.scenario.layers import layer_scenarios, moe_layer_numbers
from moesim.scenario.loading import (
    deep_merge,
    dump_yaml,
    expand_variants,
    load_scenario,
    parse_override,
)
from moesim.scenario.memory import estimated_memory, physical_memory, record_every_for
from moesim.scenario.schema import (
    SECTIONS,
    AuxConfig,
    BalanceConfig,
    BiasConfig,
    CapacityConfig,
    DriftConfig,
    LearningConfig,
    MetricsConfig,
    OutputConfig,
    PublishedPoint,
    RouterConfig,
    Scenario,
    SweepConfig,
    TokensConfig,
    Variant,
)
from moesim.scenario.source import MAX_ALIASED_NODES, MAX_DEPTH, format_path

__all__ = [
    "layer_scenarios",
    "moe_layer_numbers",
    "MAX_ALIASED_NODES",
    "MAX_DEPTH",
    "SECTIONS",
    "AuxConfig",
    "BalanceConfig",
    "BiasConfig",
    "CapacityConfig",
    "DriftConfig",
    "LearningConfig",
    "MetricsConfig",
    "OutputConfig",
    "PublishedPoint",
    "RouterConfig",
    "Scenario",
    "SweepConfig",
    "TokensConfig",
    "Variant",
    "deep_merge",
    "dump_yaml",
    "estimated_memory",
    "example_scenario_yaml",
    "expand_variants",
    "format_path",
    "load_scenario",
    "parse_override",
    "physical_memory",
    "record_every_for",
    "render_scenario_docs",
    "scenario_json_schema",
]
