"""Loading a scenario: the file, ``--set KEY=VALUE`` overrides, validation, and its variants.

:func:`load_scenario` is what every command calls; :func:`expand_variants` gives the scenarios
a run steps through.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path
from typing import Any

import yaml

from moesim.errors import Problem, ScenarioError
from moesim.scenario.checks import validate
from moesim.scenario.schema import Scenario
from moesim.scenario.source import (
    RefusedYAMLError,
    Source,
    has_path,
    load_yaml_value,
    read_yaml,
)

# ----------------------------------------------------------------------------------------------
# Overrides

_KEY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def parse_override(text: str) -> tuple[tuple, Any]:
    """``"router.top_k=4"`` -> ``(("router", "top_k"), 4)``.

    Values are read as YAML with the scenario loader: ``1e-4`` is a float, ``true``/``false``
    booleans, ``null`` None, ``[1, 2]`` a list; anything that is not valid YAML stays text.
    """
    key, separator, raw = text.partition("=")
    key = key.strip()
    if not separator or not _KEY.fullmatch(key):
        raise ScenarioError(
            [
                Problem(
                    f"--set {text}",
                    None,
                    None,
                    "",
                    "expected KEY=VALUE with a dotted key",
                    "e.g. --set router.top_k=4",
                )
            ]
        )
    try:
        value = load_yaml_value(raw) if raw.strip() else None
    except RefusedYAMLError as error:
        problem = Problem(f"--set {text}", None, None, "", error.problem, error.hint)
        raise ScenarioError([problem]) from None
    except yaml.YAMLError:
        value = raw
    return tuple(key.split(".")), value


def _apply_override(data: dict, path: tuple, value) -> None:
    node = data
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[path[-1]] = value


def _apply_overrides(data: dict, overrides) -> dict[tuple, str]:
    """Apply ``KEY=VALUE`` texts to ``data`` in place; key path -> text, to locate problems.

    The command line wins over the file, variants included: a variant that sets the same key
    gets the override too (its own name and the variants list excepted).
    """
    texts: dict[tuple, str] = {}
    for text in overrides:
        path, value = parse_override(text)
        _apply_override(data, path, value)
        texts[path] = text
        variants = data.get("variants")
        if path[0] not in ("name", "variants") and isinstance(variants, list):
            for index, variant in enumerate(variants):
                if has_path(variant, path):
                    _apply_override(variant, path, copy.deepcopy(value))
                    texts[("variants", index, *path)] = text
    return texts


def deep_merge(base: dict, update: dict) -> dict:
    """``base`` with ``update`` merged in, recursively for mappings (neither is modified)."""
    merged = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# ----------------------------------------------------------------------------------------------
# Loading


def _resolve_file(data, base_dir: Path | None) -> None:
    """Make a relative ``tokens.file`` and ``deployment.load_trace`` absolute against the
    scenario file's folder, and expand ``~`` in them and in ``output.dir``, in place
    (``output.dir`` stays relative to where moesim runs)."""
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if base_dir is not None and isinstance(tokens, dict) and isinstance(tokens.get("file"), str):
        file = Path(tokens["file"]).expanduser()
        if not file.is_absolute():
            tokens["file"] = str((base_dir / file).resolve())
    deployment = data.get("deployment") if isinstance(data, dict) else None
    if isinstance(deployment, dict) and isinstance(deployment.get("load_trace"), str):
        trace = Path(deployment["load_trace"]).expanduser()
        if base_dir is not None and not trace.is_absolute():
            trace = (base_dir / trace).resolve()
        deployment["load_trace"] = str(trace)
    output = data.get("output") if isinstance(data, dict) else None
    if isinstance(output, dict) and isinstance(output.get("dir"), str):
        # Not Path.expanduser: an unknown ~user stays as written, for the checks to refuse.
        output["dir"] = os.path.expanduser(output["dir"])


def _read_source(source) -> tuple[dict, dict, str | None, Path | None]:
    """``(data, marks, file, base_dir)`` of a file, a mapping or a scenario."""
    if isinstance(source, Scenario):
        return source.model_dump(mode="json"), {}, None, None
    if isinstance(source, dict):
        return copy.deepcopy(source), {}, None, None
    path = Path(source)
    data, marks = read_yaml(path)
    if not isinstance(data, dict):
        raise ScenarioError(
            [Problem(str(path), 1, 1, "", "expected a mapping of sections (tokens:, router:, ...)")]
        )
    return data, marks, str(path), path.parent


def load_scenario(source, overrides=()) -> Scenario:
    """Load, override and validate a scenario (and every one of its variants).

    Parameters
    ----------
    source : str, Path, dict or Scenario
        A YAML file, a mapping with the same structure, or a scenario (re-validated).
    overrides : iterable of str
        ``KEY=VALUE`` strings (``router.score=softmax``), applied after the file. They win
        over the variants too: a variant that sets the same key gets the override.

    Returns
    -------
    Scenario
        The base scenario, every default filled in; a relative ``tokens.file`` is made
        absolute against the scenario file's folder.

    Raises
    ------
    ScenarioError
        With one :class:`~moesim.errors.Problem` per thing wrong.
    """
    data, marks, file, base_dir = _read_source(source)
    override_texts = _apply_overrides(data, overrides)
    _resolve_file(data, base_dir)
    if isinstance(data.get("variants"), list):
        for variant in data["variants"]:
            _resolve_file(variant, base_dir)
    source_info = Source(file, marks, override_texts)
    scenario = validate(data, source_info)
    # Validate every variant now, so a bad one fails before anything runs.
    _expand(scenario, data, source_info)
    return scenario


# ----------------------------------------------------------------------------------------------
# Variants


#: Sections of the whole scenario, never of one variant (a variant's would be ignored): why.
WHOLE_SCENARIO_ONLY = {
    "variants": "variants do not nest",
    "published": "published numbers belong to the scenario",
    "output": "all variants go into the scenario's one results folder",
    "sweep": "a sweep runs the whole scenario, every variant at every point",
}


def _expand(scenario: Scenario, data: dict, source: Source) -> list[tuple[str, Scenario]]:
    base = {key: value for key, value in data.items() if key != "variants"}
    expanded = []
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for index, variant in enumerate(scenario.variants):
        where = ("variants", index)
        if variant.name in seen:
            message = f"duplicate variant name {variant.name!r}"
            hint = f"variants[{seen[variant.name]}] has it already"
            problems.append(source.problem((*where, "name"), message, hint))
        seen.setdefault(variant.name, index)
        overrides = variant.model_dump(exclude={"name"})
        # What only the whole scenario has: a variant setting it would be silently ignored.
        whole_only = [key for key in WHOLE_SCENARIO_ONLY if key in overrides]
        for key in whole_only:
            message = f"a variant cannot have {key}: {WHOLE_SCENARIO_ONLY[key]}"
            hint = f"give {key} in the scenario itself, or run the variant as its own scenario"
            problems.append(source.problem((*where, key), message, hint))
        if whole_only:
            continue
        merged = deep_merge(base, overrides)
        # Problems are reported under variants[i]; a key the variant did not set points at
        # the variant's own line.
        try:
            expanded.append((variant.name, validate(merged, source, where)))
        except ScenarioError as error:
            problems.extend(error.problems)
    if problems:
        raise ScenarioError(problems)
    return expanded


def expand_variants(scenario: Scenario) -> list[tuple[str, Scenario]]:
    """The scenarios to run, each with its name.

    Returns
    -------
    list of (str, Scenario)
        ``[(scenario.name, scenario)]`` when there are no variants; otherwise one entry per
        variant, in order: the base deep-merged with the variant's overrides, validated, with an
        empty ``variants`` list.

    Raises
    ------
    ScenarioError
        When a variant does not validate (path ``variants[i]...``).
    """
    if not scenario.variants:
        return [(scenario.name or "base", scenario)]
    data = scenario.model_dump(mode="json")
    return _expand(scenario, data, Source(None, {}, {}))


def dump_yaml(scenario: Scenario) -> str:
    """The resolved scenario as YAML (every default filled in, keys in schema order)."""
    return scenario.to_yaml()
