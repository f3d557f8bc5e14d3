"""Describing the schema: the JSON Schema for editors, the Markdown field reference
(docs/scenarios.md) and the commented example ``moesim init`` writes.
"""

from __future__ import annotations

import inspect
import json
import re
import types
import typing
from typing import Literal

from pydantic import BaseModel

from moesim.scenario.schema import NAME_PATTERN, PublishedPoint, Scenario
from moesim.scenario.source import MAX_ALIASED_NODES, MAX_DEPTH, load_yaml_value


def scenario_json_schema() -> dict:
    """JSON Schema of a scenario file (for editors)."""
    schema = Scenario.model_json_schema()
    schema["title"] = "moesim scenario"
    return schema


def _type_name(annotation) -> str:
    """``Literal['a', 'b'] | None`` -> ``a \\| b \\| null`` (Markdown-table safe)."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " \\| ".join(f"`{choice}`" for choice in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " \\| ".join(_type_name(member) for member in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin is list:
        (item,) = typing.get_args(annotation)
        if typing.get_origin(item) is Literal:
            return "list of " + " / ".join(f"`{choice}`" for choice in typing.get_args(item))
        return f"list of {_type_name(item)}"
    text = annotation.__name__ if isinstance(annotation, type) else str(annotation)
    text = re.sub(r"\b[\w.]+\.(\w+)", r"\1", text)  # moesim.scenario.Variant -> Variant
    return text.replace("NoneType", "null").replace("|", "\\|")


def _bounds(field) -> str:
    parts = []
    for item in field.metadata:
        for attribute, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(item, attribute, None)
            if value is not None:
                parts.append(
                    f"{symbol} {value:g}" if isinstance(value, float) else f"{symbol} {value}"
                )
        if getattr(item, "pattern", None) == NAME_PATTERN:
            parts.append("letters, digits, `_ . + -`")
    return ", ".join(parts)


def render_scenario_docs() -> str:
    """Markdown reference of every scenario field (the content of docs/scenarios.md)."""
    lines = [
        "# Scenario reference",
        "",
        "Generated from the schema by `moesim schema --markdown > docs/scenarios.md`",
        "(`make docs`); a test fails when this file is out of date.",
        "Every field is optional, but an empty file is refused (`moesim init NAME` writes a",
        "commented example). Numbers may be written `1e-3`; a relative `tokens.file` is relative",
        "to the scenario file's folder. Anchors and aliases (`&name`, `*name`) may repeat at most",
        f"{MAX_ALIASED_NODES:,} nodes in all and nesting stops at {MAX_DEPTH} levels: a file",
        "beyond that is refused as it is read.",
        "",
    ]

    def section(title: str, model, prefix: str) -> None:
        heading = f"## `{prefix}`" if prefix else f"## {title}"
        lines.extend([heading, "", inspect.cleandoc(model.__doc__ or ""), ""])
        lines.append("| key | type | default | bounds | meaning |")
        lines.append("|---|---|---|---|---|")
        nested = []
        for name, field in model.model_fields.items():
            annotation = field.annotation
            key = f"{prefix}.{name}" if prefix else name
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                nested.append((key, annotation))
                lines.append(f"| `{key}` | section | | | {field.description} |")
                continue
            default = field.get_default(call_default_factory=True)
            shown = "[]" if default == [] else ("null" if default is None else repr(default))
            shown = "required" if field.is_required() else shown
            shown = shown.replace("True", "true").replace("False", "false").replace("'", "")
            shown = "`" + shown + "`" if shown else '`""`'
            type_name = _type_name(annotation)
            description = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{key}` | {type_name} | {shown} | {_bounds(field)} | {description} |")
        lines.append("")
        for key, model_ in nested:
            section(key, model_, key)

    section("Top level", Scenario, "")
    lines.extend(
        [
            "## Variants",
            "",
            "Each entry of `variants` has a `name` and any partial override of the sections",
            "above, as nested mappings; it runs on the same token stream as every other",
            "variant. `--set KEY=VALUE` overrides any field from the command line.",
            "",
        ]
    )
    section("Published points", PublishedPoint, "published[]")
    return "\n".join(lines)


def _yaml_text(text: str) -> str:
    """``text`` as a YAML scalar that reads back as that text (quoted when YAML would read
    ``-``, ``true``, ``1e3`` or ``010`` as something else)."""
    try:
        plain = load_yaml_value(text) == text
    except Exception:  # not valid YAML on its own, or a number YAML 1.1 misreads
        plain = False
    return text if plain else json.dumps(text)


def example_scenario_yaml(name: str = "scenario") -> str:
    """A commented example scenario (what ``moesim init`` writes)."""
    return f"""\
# A moesim scenario: every key is optional (see docs/scenarios.md for all of them).
name: {_yaml_text(name)}
seed: 0
steps: 500                   # simulated steps (one global batch each)

tokens:
  tokens_per_step: 4096      # T: tokens routed per step
  dim: 64                    # d: embedding dimension
  clusters: 32               # token domains; their skew drives imbalance
  cluster_weights: zipf
  zipf_exponent: 1.0
  seq_len: 512               # tokens per sequence (must divide tokens_per_step)

router:                      # DeepSeek-V3 style
  experts: 256
  top_k: 8
  score: sigmoid             # or softmax, softmax_after_topk
  groups: 8
  topk_groups: 4
  route_scale: 2.5

balance:
  bias:
    enabled: true            # auxiliary-loss-free balancing
    rate: 1e-3               # u: bias change per step

capacity:
  factor: null               # null: no token dropping (e.g. 1.25 to cap expert loads)

variants:                    # optional: compare settings on the same tokens
  - name: bias
  - name: no-bias
    balance: {{bias: {{enabled: false}}}}
"""
