"""Each layer's settings (docs/model.md §1.1): which ``by_layer`` entries apply to a layer, and
the scenario as that layer sees it.

A ``by_layer`` entry selects layers (``3``, ``"0-2"``, ``"40-"``, ``"all"`` or a list of these)
and makes them dense or gives partial ``router``, ``balance``, ``capacity`` and ``learning``
sections, merged into the scenario's in the order of the entries (later entries win).
:func:`layer_scenarios` gives one entry per layer of the model: the layer's resolved scenario,
or None for a dense layer (no router; tokens only pass through it). The checks of these
settings (selectors in range, nothing set on a dense layer, values valid for every layer) are in
:mod:`moesim.scenario.checks`.
"""

from __future__ import annotations

import re

from moesim.scenario.schema import Scenario

_RANGE = re.compile(r"\s*(\d+)\s*-\s*(\d+)?\s*")

#: What a layer's scenario never takes from ``by_layer`` (checked in scenario/checks/layers.py):
#: every layer routes to the same experts (loads are a layers x experts matrix), and the held-out
#: batch that measures quality is the model's, so is the loss model that scores it.
SAME_IN_EVERY_LAYER = {
    ("router", "experts"): "every MoE layer has the same experts (loads are layers x experts)",
    ("learning", "enabled"): "router learning is on or off for the whole model",
    ("learning", "reward"): "one loss model scores the whole model",
    ("learning", "eval_tokens"): "one held-out batch measures the whole model",
}


class SelectorError(ValueError):
    """A ``by_layer`` selector that names no layer of the model: ``(message, hint)``."""


def _last_layer_words(n_layers: int) -> str:
    return f"layers: {n_layers} numbers them 0-{n_layers - 1}" if n_layers > 1 else "layer 0"


def _select_one(part, n_layers: int) -> range:
    if isinstance(part, bool):
        raise SelectorError(f"expected a layer number or range, got {part!r}", None)
    if isinstance(part, int):
        first, last = part, part
    elif part.strip() == "all":
        return range(n_layers)
    else:
        match = _RANGE.fullmatch(part)
        if match is None:
            raise SelectorError(
                f"expected a layer number, a range such as '0-2' or '3-', or 'all', got {part!r}",
                None,
            )
        first = int(match.group(1))
        last = int(match.group(2)) if match.group(2) is not None else n_layers - 1
        if last < first:
            raise SelectorError(f"range {part!r} ends before it starts", f"write '{last}-{first}'")
    if first < 0 or last >= n_layers:
        wrong = first if first < 0 or first >= n_layers else last
        raise SelectorError(
            f"layer {wrong} is not in the model ({_last_layer_words(n_layers)})",
            "raise `layers`, or select layers below it",
        )
    return range(first, last + 1)


def selected_layers(selector, n_layers: int) -> list[int]:
    """The layer numbers a selector names, in order; :class:`SelectorError` when it names a
    layer the model does not have or is not a selector."""
    parts = selector if isinstance(selector, list) else [selector]
    if not parts:
        raise SelectorError("an empty list selects no layer", "give numbers, ranges or 'all'")
    chosen: set[int] = set()
    for part in parts:
        chosen.update(_select_one(part, n_layers))
    return sorted(chosen)


def layer_entries(scenario: Scenario) -> list[tuple[int, ...]]:
    """For every layer, the indices of the ``by_layer`` entries that select it (in order);
    entries whose selector is not valid select nothing (the checks report them)."""
    entries: list[list[int]] = [[] for _ in range(scenario.layers)]
    for index, settings in enumerate(scenario.by_layer):
        try:
            numbers = selected_layers(settings.layers, scenario.layers)
        except SelectorError:
            continue
        for number in numbers:
            entries[number].append(index)
    return [tuple(chosen) for chosen in entries]


def dense_layer_numbers(scenario: Scenario) -> list[int]:
    """Numbers of the layers an entry makes dense."""
    return [
        number
        for number, chosen in enumerate(layer_entries(scenario))
        if any(scenario.by_layer[index].dense for index in chosen)
    ]


def moe_layer_numbers(scenario: Scenario) -> list[int]:
    """Numbers (0-based) of the layers that have a router."""
    dense = set(dense_layer_numbers(scenario))
    return [number for number in range(scenario.layers) if number not in dense]


def merge_sections(base: dict, update: dict) -> dict:
    """``base`` with the mappings of ``update`` merged in, recursively (``base`` is not changed)."""
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_sections(merged[key], value)
        else:
            merged[key] = value
    return merged


def layer_data(scenario: Scenario, chosen: tuple[int, ...], base: dict | None = None) -> dict:
    """A layer's scenario as data: the scenario (one layer, no ``by_layer``, no variants) with
    the sections of the entries ``chosen`` merged in, in order."""
    data = base if base is not None else scenario.model_dump(mode="json")
    data = {**data, "layers": 1, "by_layer": [], "variants": []}
    for index in chosen:
        data = merge_sections(data, scenario.by_layer[index].overrides())
    return data


def layer_scenarios(scenario: Scenario) -> list[Scenario | None]:
    """The resolved scenario of every layer of ``scenario`` (None: a dense layer).

    Layers that no entry changes share the scenario itself (so ``layers: 1`` runs it as it is);
    layers with the same entries share one validated scenario.
    """
    if not scenario.by_layer:
        return [scenario] * scenario.layers
    dense = set(dense_layer_numbers(scenario))
    base = scenario.model_dump(mode="json")
    resolved: dict[tuple[int, ...], Scenario] = {}
    layers: list[Scenario | None] = []
    for number, chosen in enumerate(layer_entries(scenario)):
        if number in dense:
            layers.append(None)
            continue
        chosen = tuple(i for i in chosen if scenario.by_layer[i].overrides())
        if not chosen:
            layers.append(scenario)
            continue
        if chosen not in resolved:
            resolved[chosen] = Scenario.model_validate(layer_data(scenario, chosen, base))
        layers.append(resolved[chosen])
    return layers
