"""Each layer's scenario (docs/model.md §1.1): the scenario as one layer of the model sees it.

:func:`layer_scenarios` gives one entry per layer of the model, in order: the layer's resolved
scenario, or None for a dense layer (no router; tokens only pass through it).
"""

from __future__ import annotations

from moesim.scenario.schema import Scenario


def layer_scenarios(scenario: Scenario) -> list[Scenario | None]:
    """The resolved scenario of every layer of ``scenario`` (None: a dense layer)."""
    return [scenario] * scenario.layers


def moe_layer_numbers(scenario: Scenario) -> list[int]:
    """Numbers (0-based) of the layers that have a router."""
    return [n for n, layer in enumerate(layer_scenarios(scenario)) if layer is not None]
