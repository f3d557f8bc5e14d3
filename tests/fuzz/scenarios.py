"""Scenario files for the fuzzer: a tiny valid skeleton, then fields set at and beyond their
bounds, inconsistent combinations, and odd YAML text and bytes.

Everything is a hypothesis strategy of :class:`ScenarioFile` (the text as bytes, and the data it
was written from, for the report of a failing case).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from hypothesis import strategies as st

from .schema_values import FieldSpec, Raw, field_values, schema_fields, valid_values

FIELDS = schema_fields()
#: A run of this scenario takes well under a second.
TINY = {
    "name": "tiny",
    "steps": 6,
    "tokens": {"tokens_per_step": 64, "dim": 4, "clusters": 3, "seq_len": 16},
    "router": {"experts": 8, "top_k": 2},
    "variants": [{"name": "bias"}, {"name": "nobias", "balance": {"bias": {"enabled": False}}}],
}


@dataclass
class ScenarioFile:
    text: bytes
    data: object = None
    note: str = ""

    def describe(self) -> dict:
        return {"note": self.note, "text": self.text[:600].decode("utf-8", "replace")}


def scalar(value) -> str:
    """One value as YAML text."""
    if isinstance(value, Raw):
        return str(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{scalar(str(k))}: {scalar(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_yaml(data: dict, indent: int = 0) -> str:
    """Block-style YAML of nested mappings, with :class:`Raw` scalars written as they are."""
    lines = []
    for key, value in data.items():
        pad = " " * indent
        if isinstance(value, dict) and value:
            lines.append(f"{pad}{key}:")
            lines.append(to_yaml(value, indent + 2))
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{pad}{key}:")
            for item in value:
                body = to_yaml(item, indent + 4).lstrip()
                lines.append(f"{pad}  - {body}")
        else:
            lines.append(f"{pad}{key}: {scalar(value)}")
    return "\n".join(lines)


def set_path(data: dict, path: tuple, value) -> dict:
    node = data
    for key in path[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            return data
    node[path[-1]] = value
    return data


def _copy(data):
    return json.loads(json.dumps(data))


@st.composite
def settings(
    draw, *, cheap: bool, count: tuple[int, int] = (1, 3)
) -> list[tuple[FieldSpec, object]]:
    """A few fields of the schema, each with a value in, at or beyond its bounds (half the
    time only values the schema accepts, so that runs get past validation)."""
    fields = draw(st.lists(st.sampled_from(FIELDS), min_size=count[0], max_size=count[1]))
    values = valid_values if draw(st.booleans()) else field_values
    return [(spec, draw(values(spec, cheap=cheap))) for spec in fields]


#: Combinations that the schema alone accepts and that contradict each other or are ignored.
INCONSISTENT = [
    {"tokens": {"file": "trace.npy"}},
    {"tokens": {"explicit_weights": [1.0, 2.0, 3.0]}},
    {"tokens": {"cluster_weights": "explicit", "explicit_weights": [1e308, 1e308, 1e308]}},
    {"tokens": {"cluster_weights": "explicit", "explicit_weights": [1.0]}},
    {"tokens": {"cluster_weights": "explicit"}},
    {"tokens": {"file_key": "x"}},
    {"tokens": {"source": "file"}},
    {"router": {"top_k": 9}},
    {"router": {"groups": 3}},
    {"router": {"groups": 4, "topk_groups": 5}},
    {"router": {"group_score_topk": 8}},
    {"tokens": {"seq_len": 7}},
    {"metrics": {"window": 1000}},
    {"metrics": {"record_every": 1000}},
    {"balance": {"aux": {"kind": ["batch", "global"], "alpha": [0.1]}}},
    {"balance": {"aux": {"kind": "batch", "alpha": 0.1}}},
    {"balance": {"aux": {"z_loss": 1000}}, "learning": {"enabled": True, "rate": 1e6}},
    {
        "learning": {"enabled": True, "rate": 1e6},
        "balance": {"aux": {"kind": "batch", "alpha": 1e6}},
    },
    {"capacity": {"factor": 1e-9}},
    {"capacity": {"factor": 1e6, "pad_to_capacity": True}},
    {"balance": {"bias": {"schedule": "warmup", "warmup_steps": 10**8}}},
    {"tokens": {"drift": {"kind": "shift", "at_step": 10**8}}},
    {"variants": [{"name": "a", "output": {"dir": "elsewhere"}}]},
    {"variants": [{"name": "a", "sweep": {"seeds": 2}}]},
    {"variants": [{"name": "a"}, {"name": "a"}]},
    {"variants": [{"name": "../up"}]},
    {"variants": [{"name": "a", "variants": [{"name": "b"}]}]},
    {"variants": []},
    {"sweep": {"grid": {"balance.bias.rate": "range(0,1e9)"}}},
    {"sweep": {"grid": {"balance.bias.rate": "range(0,1,1e-300)"}}},
    {"sweep": {"grid": {"balance.bias.rate": "linspace(0,1,nan)"}}},
    {"sweep": {"grid": {"balance.bias.rate": "logspace(1e-4,1e-2,1e12)"}}},
    {"sweep": {"grid": {"router.top_k": "range(0,inf)"}}},
    {"name": "[bold]x"},
    {"name": ""},
    {"output": {"dir": ""}},
    {"output": {"dir": "~/x"}},
    {"output": {"dir": "out/[bold]br"}},
    {"output": {"dir": "out/[/]"}},
]


def _merge(base: dict, extra: dict) -> dict:
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


@st.composite
def scenario_data(draw, *, cheap: bool) -> dict:
    """The tiny skeleton with a few fields at or beyond their bounds, maybe an inconsistency,
    maybe a variant that sets fields too."""
    data = _copy(TINY)
    if cheap and draw(st.integers(0, 2)) > 0:
        # Mostly runs that get past validation: one or two fields at valid values.
        fields = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=2))
        for spec in fields:
            set_path(data, spec.path, draw(valid_values(spec, cheap=True)))
        return data
    for spec, value in draw(settings(cheap=cheap)):
        set_path(data, spec.path, value)
    if draw(st.booleans()):
        _merge(data, _copy(draw(st.sampled_from(INCONSISTENT))))
    if draw(st.integers(0, 3)) == 0:
        variant = {"name": draw(st.sampled_from(["v", "v2", "x.y", "+1"]))}
        for spec, value in draw(settings(cheap=cheap, count=(1, 2))):
            set_path(variant, spec.path, value)
        data["variants"] = [*data.get("variants", []), variant]
    return data


@st.composite
def scenario_files(draw, *, cheap: bool) -> ScenarioFile:
    """A scenario file with fields at and beyond their bounds (written as YAML)."""
    data = draw(scenario_data(cheap=cheap))
    return ScenarioFile(to_yaml(data).encode(), data, "fields")


def _nested(depth: int, style: str) -> str:
    if style == "flow":
        return "steps: " + "[" * depth + "]" * depth
    if style == "map":
        return "steps: " + "{a: " * depth + "1" + "}" * depth
    return "".join(" " * i + "a:\n" for i in range(depth)) + " " * depth + "b: 1"


def _laughs(levels: int, width: int) -> str:
    lines = ["a0: &a0 [1, 2, 3, 4, 5, 6, 7, 8, 9]"]
    for level in range(1, levels):
        refs = ", ".join([f"*a{level - 1}"] * width)
        lines.append(f"a{level}: &a{level} [{refs}]")
    return "\n".join(lines)


def _yaml_text_cases(base: str) -> st.SearchStrategy:
    """Odd YAML built around a valid scenario text."""
    lines = base.split("\n")
    return st.one_of(
        st.sampled_from(
            [
                ("empty", ""),
                ("comments only", "# nothing\n\n"),
                ("bare document", "---\n"),
                ("two documents", base + "\n---\n" + base),
                ("self alias", "a: &a [*a]"),
                ("self alias map", "a: &a {b: *a}"),
                ("undefined alias", base + "\nseed: *nope"),
                ("billion laughs", _laughs(9, 9)),
                ("wide aliases", _laughs(3, 60)),
                ("merge keys", "base: &b {steps: 6}\n" + base.replace("steps: 6", "<<: *b")),
                (
                    "anchored section",
                    base.replace("router:", "router: &r").replace(
                        'name: "tiny"', 'name: "tiny"\nextra: *r'
                    ),
                ),
                ("list at top", "- 1\n- 2"),
                ("scalar at top", "42"),
                ("tabs", base.replace("  ", "\t")),
                ("BOM", "\ufeff" + base),
                ("CRLF", base.replace("\n", "\r\n")),
                ("NUL", base + "\n\x00"),
                ("control", base + '\ndescription: "\x07"'),
                ("long line", base + "\ndescription: " + "x" * 200_000),
                ("huge int", base.replace("steps: 6", "steps: " + "9" * 5000)),
                ("huge float", base.replace("steps: 6", "steps: 1e400")),
                ("yaml 1.1 octal", base.replace("steps: 6", "steps: 010")),
                ("yaml 1.1 sexagesimal", base.replace("steps: 6", "steps: 1:30")),
                ("yaml 1.1 bool", base.replace("experts: 8", "experts: 8\n  normalize: yes")),
                ("hex", base.replace("steps: 6", "steps: 0x6")),
                ("tagged", base.replace("steps: 6", "steps: !!str 6")),
                ("python tag", base + "\nseed: !!python/object/apply:os.system ['true']"),
                ("set", base + "\nseed: !!set {a, b}"),
                ("timestamp", base + "\ndescription: 2001-12-14"),
                ("binary", base + "\ndescription: !!binary aGVsbG8="),
                ("complex key", base + "\n? [a, b]\n: 1"),
                ("null key", base + "\n~: 1"),
                ("int key", base + "\n1: 1"),
            ]
        ).map(lambda c: (c[0], c[1].encode())),
        st.integers(50, 6000).flatmap(
            lambda depth: st.sampled_from(["flow", "map", "block"]).map(
                lambda style: (f"nested {depth} {style}", _nested(depth, style).encode())
            )
        ),
        st.integers(0, len(lines) - 1).map(
            lambda i: (
                "duplicate key",
                "\n".join([*lines[: i + 1], lines[i], *lines[i + 1 :]]).encode(),
            )
        ),
        st.integers(0, len(base)).map(lambda i: ("truncated", base[:i].encode())),
        st.sampled_from([b"\xff\xfe", b"\xc3\x28", b"\x80", "é".encode("latin-1")]).map(
            lambda junk: ("not UTF-8", base.encode() + b"\ndescription: " + junk)
        ),
        st.binary(max_size=200).map(lambda junk: ("random bytes", junk)),
    )


@st.composite
def odd_yaml_files(draw) -> ScenarioFile:
    """Valid-looking scenarios in odd YAML: aliases, duplicates, tabs, nesting, bytes."""
    base = to_yaml(_copy(TINY))
    note, text = draw(_yaml_text_cases(base))
    return ScenarioFile(text, None, note)
