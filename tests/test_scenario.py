"""Scenario loading: defaults, overrides, variants, and a corpus of broken files."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel
from typer.testing import CliRunner

import moesim.results
import moesim.scenario.memory
import moesim.scenario.source
from moesim.cli import app
from moesim.errors import ScenarioError
from moesim.scenario import (
    Scenario,
    dump_yaml,
    example_scenario_yaml,
    expand_variants,
    load_scenario,
    parse_override,
    render_scenario_docs,
    scenario_json_schema,
)

ROOT = Path(__file__).parent.parent
SHIPPED = sorted((ROOT / "scenarios").glob("*.yaml"))


def test_defaults_fill_every_section():
    scenario = load_scenario({})
    assert scenario.router.experts == 256 and scenario.router.top_k == 8
    assert scenario.capacity.factor is None and scenario.balance.bias.rate == 1e-3
    resolved = scenario.resolved_dict()
    assert set(resolved) >= {"tokens", "router", "balance", "capacity", "learning", "metrics"}
    # The dump loads back to the same scenario.
    assert load_scenario(yaml.safe_load(dump_yaml(scenario))) == scenario


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_load_and_stay_small(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    for _, variant in expand_variants(scenario):
        assert variant.tokens.tokens_per_step <= 4096 and variant.router.experts <= 256
        assert variant.steps <= 1000


@pytest.mark.parametrize(
    "name", ["deepseek_v3", "deepseek_v2", "switch", "sigmoid_vs_softmax", "bias_rate"]
)
def test_example_scenarios_give_a_reason_for_every_setting(name):
    # style.md: "every experiment file sets only what differs, each line with a one-line reason"
    for line in (ROOT / "scenarios" / f"{name}.yaml").read_text().splitlines():
        key, _, value = line.partition(":")
        if key.startswith(" ") and value.strip() and not key.strip().startswith(("-", "#")):
            if not value.strip().startswith("{"):  # a variant's override: its name says why
                assert "#" in value, f"{name}.yaml: no reason given for: {line.strip()}"


def _load(name: str):
    return load_scenario(ROOT / "scenarios" / f"{name}.yaml")


def test_deepseek_v3_scenario_is_the_671b_router():
    scenario = _load("deepseek_v3")
    router = scenario.router
    assert (router.experts, router.top_k, router.groups, router.topk_groups) == (256, 8, 8, 4)
    assert router.score == "sigmoid" and router.route_scale == 2.5 and router.normalize
    bias = scenario.balance.bias
    assert bias.enabled and bias.rate == 1e-3 and bias.rule == "sign"
    assert scenario.capacity.factor is None
    tokens = scenario.tokens
    assert (tokens.tokens_per_step, tokens.dim, tokens.clusters) == (4096, 64, 64)
    assert tokens.cluster_weights == "zipf" and tokens.zipf_exponent == 1.0


def test_deepseek_v2_and_switch_scenarios():
    v2 = _load("deepseek_v2")
    assert (v2.router.experts, v2.router.top_k, v2.router.groups, v2.router.topk_groups) == (
        160,
        6,
        8,
        3,
    )
    assert v2.router.score == "softmax" and v2.router.route_scale == 16.0
    assert v2.capacity.factor == 1.0 and not v2.balance.bias.enabled
    assert v2.balance.aux.kind == "none" and v2.steps == 300
    switch = _load("switch")
    assert (switch.router.experts, switch.router.top_k, switch.router.score) == (64, 1, "softmax")
    assert switch.capacity.factor == 1.25 and switch.capacity.policy == "probs"
    assert not switch.balance.bias.enabled and switch.steps == 300


def test_comparison_scenarios_differ_only_where_they_say():
    rates = {n: v.balance.bias.rate for n, v in expand_variants(_load("bias_rate"))}
    assert rates == {"u-1e-4": 1e-4, "u-1e-3": 1e-3, "u-1e-2": 1e-2}
    assert _load("bias_rate").router.init_skew > 0
    scores = {n: v.router.score for n, v in expand_variants(_load("sigmoid_vs_softmax"))}
    assert scores == {"sigmoid": "sigmoid", "softmax": "softmax"}
    assert _load("sigmoid_vs_softmax").balance.bias.enabled


def test_collapse_scenario_has_the_eight_named_variants():
    names = [name for name, _ in expand_variants(_load("collapse"))]
    assert names == [
        f"{score}-{method}"
        for score in ("sigmoid", "softmax")
        for method in ("none", "aux-1e-2", "aux-1e-1", "bias-1e-3")
    ]


@pytest.mark.parametrize(
    ("text", "path", "value"),
    [
        ("balance.bias.rate=1e-4", ("balance", "bias", "rate"), 1e-4),
        ("router.score=softmax", ("router", "score"), "softmax"),
        ("capacity.factor=null", ("capacity", "factor"), None),
        ("learning.enabled=true", ("learning", "enabled"), True),
        ("tokens.explicit_weights=[1, 2.5]", ("tokens", "explicit_weights"), [1, 2.5]),
        ("steps=10", ("steps",), 10),
    ],
)
def test_override_values_are_yaml(text, path, value):
    assert parse_override(text) == (path, value)


def test_yaml_reads_exponents_without_a_dot(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("balance:\n  bias:\n    rate: 1e-4\n")
    assert load_scenario(path).balance.bias.rate == 1e-4


def test_overrides_apply_after_the_file_and_reach_variants():
    scenario = load_scenario(
        ROOT / "scenarios" / "bias_rate.yaml", ["router.score=softmax", "steps=7"]
    )
    for _, variant in expand_variants(scenario):
        assert variant.router.score == "softmax" and variant.steps == 7
    rates = [v.balance.bias.rate for _, v in expand_variants(scenario)]
    assert rates == [1e-4, 1e-3, 1e-2]


def test_relative_trace_path_resolves_against_the_scenario(tmp_path):
    import numpy as np

    np.save(tmp_path / "trace.npy", np.zeros((8, 4), dtype=np.float32))
    path = tmp_path / "s.yaml"
    path.write_text("tokens: {source: file, file: trace.npy, tokens_per_step: 8, seq_len: 8}\n")
    assert load_scenario(path).tokens.file == str((tmp_path / "trace.npy").resolve())


# A corpus of broken scenarios: tests/data/bad/NAME.yaml, each paired with NAME.expected, the exact
# error message (paths relative to the corpus folder). Messages include the position, so the tests
# pin the line and column users are pointed at. Traces the scenarios name sit beside them.
BAD = Path(__file__).parent / "data" / "bad"
BROKEN = sorted(BAD.glob("*.yaml"))


def _error_lines(path) -> list[str]:
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value)
    assert "Traceback" not in message
    assert message == "\n".join(str(problem) for problem in caught.value.problems)
    return message.replace(str(BAD) + "/", "").splitlines()


@pytest.mark.parametrize("path", BROKEN, ids=lambda p: p.stem)
def test_broken_scenarios_explain_themselves(path):
    assert _error_lines(path) == path.with_suffix(".expected").read_text().splitlines()


def test_the_broken_corpus_is_complete():
    assert len(BROKEN) >= 30
    assert sorted(BAD.glob("*.expected")) == [p.with_suffix(".expected") for p in BROKEN]


def test_an_unknown_key_without_a_likely_match_has_no_suggestion():
    (line,) = _error_lines(BAD / "unknown_key_no_guess.yaml")
    assert line.endswith("router.flux_capacitor: unknown key")


# ----------------------------------------------------------------------------------------------
# Files that would not end: refused while the YAML is read, before anything is built from them


def _laughs_in_one_line(levels: int) -> str:
    """A flow-style "billion laughs": ``levels`` anchors, each nine aliases to the one before."""
    items = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    items += [f"&a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


@pytest.mark.parametrize(
    "command", [["validate"], ["run", "-q"], ["sweep", "-q"]], ids=lambda c: c[0]
)
def test_a_billion_laughs_is_refused_within_a_second_by_every_command(tmp_path, command):
    # The commands' own imports (Numba, the kernels) are loaded first: what is timed is reading
    # the file, which took minutes when every alias was expanded.
    import moesim.engine  # noqa: F401
    import moesim.sweep  # noqa: F401

    laughs = BAD / "billion_laughs.yaml"
    started = time.perf_counter()
    result = CliRunner().invoke(
        app,
        [
            command[0],
            str(laughs),
            *command[1:],
            *(["-o", str(tmp_path / "out")] * (len(command) > 1)),
        ],
    )
    elapsed = time.perf_counter() - started
    assert result.exit_code == 2, result.output
    assert f"{laughs}:8:10: too many aliases" in result.output
    assert elapsed < 1.0, f"{command[0]} took {elapsed:.2f} s to refuse a billion laughs"
    assert not (tmp_path / "out").exists()


def test_an_empty_file_is_an_invalid_scenario_for_the_command_line(tmp_path):
    path = tmp_path / "empty.yaml"
    path.write_text("")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 2 and "the file is empty" in result.output
    assert "moesim init" in result.output


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("tokens: &a {drift: *a}\n", "1:20: alias *a is inside its own anchor &a, so it would "),
        ("router: " + "[" * 200 + "]" * 200 + "\n", "1:109: nested more than 100 levels deep"),
        (f"tokens:\n  explicit_weights: {_laughs_in_one_line(7)}\n", "2:264: too many aliases"),
    ],
    ids=["recursive", "deep", "laughs"],
)
def test_files_that_would_not_end_are_refused(tmp_path, text, message):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert str(caught.value).startswith(f"{path}:{message}")


def test_an_override_that_would_not_end_is_refused():
    with pytest.raises(ScenarioError, match=r"^--set tokens.explicit_weights=\[&a0 .*: too many"):
        load_scenario({}, [f"tokens.explicit_weights={_laughs_in_one_line(9)}"])


def test_aliases_and_merge_keys_still_share_settings(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(
        "router: &router {experts: 64, top_k: 4}\n"
        "variants:\n"
        "  - name: same\n"
        "    router: *router\n"
        "  - name: softmax\n"
        "    router: {<<: *router, score: softmax, topk: 2}\n"
    )
    with pytest.raises(ScenarioError) as caught:  # positions are still found through a merge
        load_scenario(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.path) == (6, "variants[1].router.topk")
    path.write_text(path.read_text().replace(", topk: 2", ""))
    routers = [v.router for _, v in expand_variants(load_scenario(path))]
    assert [(r.experts, r.top_k, r.score) for r in routers] == [
        (64, 4, "sigmoid"),
        (64, 4, "softmax"),
    ]


def test_problems_carry_their_parts():
    with pytest.raises(ScenarioError) as caught:
        load_scenario(BAD / "unknown_key.yaml")
    (problem,) = caught.value.problems
    assert (problem.line, problem.column, problem.path) == (3, 3, "router.topk")
    assert problem.message == "unknown key" and problem.hint == "did you mean 'top_k'?"
    assert problem.file == str(BAD / "unknown_key.yaml")
    assert isinstance(caught.value, ValueError)


def test_every_problem_of_a_file_is_reported_at_once(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("steps: 0\nrouter:\n  topk: 3\n  score: sigmod\n")
    lines = str(pytest.raises(ScenarioError, load_scenario, path).value).splitlines()
    assert [line.split(": ")[1] for line in lines] == ["steps", "router.topk", "router.score"]


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ScenarioError) as caught:
        load_scenario("nowhere.yaml")
    assert str(caught.value) == "scenario file not found: nowhere.yaml"
    with pytest.raises(ScenarioError, match="is a folder, not a scenario file"):
        load_scenario(tmp_path)


@pytest.mark.parametrize("text", ["", "\n  \n", "# nothing set\n", "---\n# still nothing\n"])
def test_an_empty_file_is_refused_not_taken_as_the_default(tmp_path, text):
    path = tmp_path / "empty.yaml"
    path.write_text(text)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    (problem,) = caught.value.problems
    assert problem.message == "the file is empty" and "moesim init" in problem.hint
    # An explicit null is not empty, and not a scenario either.
    path.write_text("null\n")
    with pytest.raises(ScenarioError, match="expected a mapping of sections"):
        load_scenario(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["router.experts=3"], "--set router.experts=3: router.top_k: must be <= router.experts"),
        (["router.top_k=0"], "--set router.top_k=0: router.top_k: must be >= 1 (got 0)"),
        (["router.top_k"], "--set router.top_k: expected KEY=VALUE with a dotted key"),
        (["=3"], "--set =3: expected KEY=VALUE"),
        (["router..top_k=3"], "--set router..top_k=3: expected KEY=VALUE"),
        (["balance.bias.rat=1"], "--set balance.bias.rat=1: balance.bias.rat: unknown key; did "),
        (["rooter.top_k=1"], "--set rooter.top_k=1: rooter: unknown key; did you mean 'router'?"),
        (["router.top_k=eight"], "--set router.top_k=eight: router.top_k: expected an integer"),
        (["steps.x=1"], "--set steps.x=1: steps: expected an integer, got {'x': 1}"),
        (["balance.aux.kind=batch"], "--set balance.aux.kind=batch: balance.aux.alpha: set"),
        (["steps=010"], "--set steps=010: 010 has a leading zero, which YAML 1.1 reads as octal"),
        (["steps=1:30"], "--set steps=1:30: 1:30 is a YAML 1.1 base-60 number (90)"),
        ([f"steps={'9' * 5000}"], f"--set steps={'9' * 5000}: an integer of 5,000 digits"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_overrides_name_the_override(overrides, message):
    with pytest.raises(ScenarioError) as caught:
        load_scenario({}, overrides)
    assert str(caught.value).startswith(message), str(caught.value)


def test_overrides_beat_the_file_and_the_variants(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("steps: 5\nvariants:\n  - name: a\n    steps: 6\n  - name: b\n")
    scenario = load_scenario(path, ["steps=7", "name=renamed"])
    assert scenario.steps == 7 and scenario.name == "renamed"
    assert [(n, v.steps) for n, v in expand_variants(scenario)] == [("a", 7), ("b", 7)]
    # A bad override reaching a variant is reported at the override.
    with pytest.raises(ScenarioError, match=r"^--set steps=0: steps: must be >= 1"):
        load_scenario(path, ["steps=0"])
    assert expand_variants(load_scenario(path, ["variants=[]"])) == [
        ("scenario", load_scenario(path, ["variants=[]"]))
    ]


@pytest.mark.parametrize(
    ("text", "value"),
    [("1e-3", 1e-3), ("-2.5E+4", -2.5e4), ("1.0e-3", 1e-3), ("12", 12), (".5", 0.5)],
)
def test_files_read_exponents_as_floats(tmp_path, text, value):
    path = tmp_path / "s.yaml"
    path.write_text(f"learning:\n  competence_tokens: {text}\n")
    if value < 0:  # out of bounds, but read as a number
        with pytest.raises(ScenarioError, match=r"must be > 0\.0 \(got -25000\.0\)"):
            load_scenario(path)
        return
    loaded = load_scenario(path).learning.competence_tokens
    assert loaded == value and type(loaded) is float


def test_integral_floats_are_accepted_for_integers():
    scenario = load_scenario({}, ["steps=1e3", "tokens.tokens_per_step=2048.0"])
    assert scenario.steps == 1000 and type(scenario.steps) is int
    assert scenario.tokens.tokens_per_step == 2048


def test_variants_expand_in_order_with_common_settings():
    scenario = _load("sigmoid_vs_softmax")
    expanded = expand_variants(scenario)
    assert [name for name, _ in expanded] == ["sigmoid", "softmax"]
    sigmoid, softmax = (variant for _, variant in expanded)
    assert (sigmoid.router.score, softmax.router.score) == ("sigmoid", "softmax")
    assert sigmoid.variants == [] and softmax.variants == []
    # Apart from the score, the variants are the base.
    assert sigmoid.model_dump(exclude={"router", "variants"}) == softmax.model_dump(
        exclude={"router", "variants"}
    )
    assert softmax.balance.bias.enabled and softmax.tokens == scenario.tokens
    assert expand_variants(load_scenario({})) == [("scenario", load_scenario({}))]


def test_expand_variants_of_an_unchecked_scenario_names_the_variant():
    scenario = Scenario(variants=[{"name": "big", "router": {"top_k": 300}}])
    with pytest.raises(ScenarioError, match=r"^variants\[0\]\.router\.top_k: must be <= "):
        expand_variants(scenario)


def test_variant_trace_paths_resolve_against_the_scenario(tmp_path):
    import numpy as np

    (tmp_path / "traces").mkdir()
    for name in ("a", "b"):
        np.save(tmp_path / "traces" / f"{name}.npy", np.zeros((8, 4), dtype=np.float32))
    path = tmp_path / "s.yaml"
    path.write_text(
        "tokens: {source: file, file: traces/a.npy, tokens_per_step: 8, seq_len: 8}\n"
        "variants:\n  - name: a\n  - name: b\n    tokens: {file: traces/b.npy}\n"
    )
    files = [v.tokens.file for _, v in expand_variants(load_scenario(path))]
    assert files == [str((tmp_path / "traces" / f"{n}.npy").resolve()) for n in ("a", "b")]


def test_the_resolved_dump_reloads_identically(tmp_path):
    scenario = _load("deepseek_v3")
    path = tmp_path / "scenario.resolved.yaml"
    path.write_text(dump_yaml(scenario))
    assert load_scenario(path) == scenario
    assert load_scenario(scenario) == scenario


def test_json_schema_describes_every_field():
    schema = scenario_json_schema()
    json.dumps(schema)
    assert schema["title"] == "moesim scenario" and "router" in schema["properties"]
    router = schema["$defs"]["RouterConfig"]
    assert router["additionalProperties"] is False
    assert router["properties"]["score"]["enum"] == ["sigmoid", "softmax", "softmax_after_topk"]
    assert router["properties"]["experts"]["maximum"] == 65536

    def models(model):
        yield model
        for field in model.model_fields.values():
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                yield from models(field.annotation)

    for model in models(Scenario):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert name in render_scenario_docs()


def test_docs_are_current():
    docs = Path(__file__).parent.parent / "docs" / "scenarios.md"
    assert docs.read_text() == render_scenario_docs(), (
        "docs/scenarios.md is out of date: run `make docs` "
        "(moesim schema --markdown > docs/scenarios.md)"
    )


def test_schema_markdown_prints_the_docs():
    done = CliRunner().invoke(app, ["schema", "--markdown"])
    assert done.exit_code == 0 and done.output == render_scenario_docs()


def test_example_scenario_loads(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(example_scenario_yaml("example"))
    scenario = load_scenario(path)
    assert scenario.name == "example" and len(expand_variants(scenario)) == 2


# ----------------------------------------------------------------------------------------------
# Properties

_finite = st.floats(allow_nan=False, allow_infinity=False)


@given(st.one_of(_finite, st.integers(-(10**12), 10**12), st.booleans(), st.none()))
def test_override_values_round_trip(value):
    words = {True: "true", False: "false", None: "null"}
    text = words[value] if isinstance(value, bool) or value is None else repr(value)
    assert parse_override(f"balance.bias.rate={text}") == (("balance", "bias", "rate"), value)


@given(
    experts=st.integers(1, 64),
    top_k=st.integers(1, 70),
    groups=st.integers(1, 9),
    topk_groups=st.integers(1, 9),
)
def test_router_combinations_load_exactly_when_routable(experts, top_k, groups, topk_groups):
    router = dict(experts=experts, top_k=top_k, groups=groups, topk_groups=topk_groups)
    routable = (
        top_k <= experts
        and experts % groups == 0
        and topk_groups <= groups
        and topk_groups * (experts // groups) >= top_k
    )
    try:
        loaded = load_scenario({"router": router}).router
    except ScenarioError as error:
        assert not routable
        assert all(p.path.startswith("router.") for p in error.problems)
    else:
        assert routable and loaded.model_dump(include=set(router)) == router


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 10**9),
    _finite,
    st.text(max_size=8),
    st.lists(st.integers(-2, 3), max_size=3),
    st.dictionaries(st.sampled_from(["x", "top_k", "rate"]), st.integers(), max_size=2),
)
_LEAVES = [
    f"{section}.{name}"
    for section in ("tokens", "router", "capacity", "learning", "metrics", "output")
    for name in Scenario.model_fields[section].annotation.model_fields
] + ["balance.bias.rate", "balance.aux.kind", "steps", "name", "variants", "tokens.drift"]


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(_LEAVES), _JUNK, max_size=4))
def test_any_input_is_a_scenario_or_a_scenario_error(assignments):
    data: dict = {}
    for dotted, value in assignments.items():
        node = data
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    try:
        scenario = load_scenario(data)
    except ScenarioError as error:
        assert error.problems and all(str(p) for p in error.problems)
    else:
        expand_variants(scenario)


def test_runs_that_cannot_fit_in_memory_are_refused_at_the_key_to_change(monkeypatch):
    memory = moesim.scenario.memory
    monkeypatch.setattr(memory, "physical_memory", lambda: 8 * 2**30)  # an 8 GiB box
    base = {"router": {"experts": 256, "top_k": 8}, "tokens": {"seq_len": 512}}
    # T x E float32 logits alone: 2M tokens x 256 experts x 4 B = 2 GiB (fits); 8M: 8 GiB.
    assert load_scenario(base, ["tokens.tokens_per_step=2097152"])
    with pytest.raises(ScenarioError) as caught:
        load_scenario(base, ["tokens.tokens_per_step=8388608"])
    (problem,) = caught.value.problems
    assert problem.path == "tokens.tokens_per_step"
    assert "more than this machine's 8.0 GiB" in problem.message
    assert problem.hint == "route fewer tokens per step"
    # A million steps recorded every step keep 1M x 256 x 20 B = 4.8 GiB per variant.
    with pytest.raises(ScenarioError) as caught:
        load_scenario(
            {**base, "variants": [{"name": "a"}, {"name": "b"}]},
            ["steps=1000000", "metrics.record_every=1"],
        )
    assert [p.path for p in caught.value.problems] == ["metrics.record_every"]
    # Learning adds per-chunk sums (kept between steps), not T x E float64 arrays; how the
    # estimate follows the real allocations is tests/test_memory.py's.
    learning = memory.estimated_memory(
        load_scenario(base, ["learning.enabled=true", "tokens.tokens_per_step=4096"])
    )
    plain = memory.estimated_memory(load_scenario(base, ["tokens.tokens_per_step=4096"]))
    chunk_sums = 2 * (4096 // 256) * 256 * 64 * 8
    assert chunk_sums < learning["step"] - plain["step"] < chunk_sums + 4096 * 256 * 8


# ----------------------------------------------------------------------------------------------
# YAML 1.1 numbers that do not read as they look, and numbers too long to convert


@pytest.mark.parametrize(
    ("text", "value"),
    [("0", 0), ("10", 10), ("-7", -7), ("1_000", 1000), ("0x10", 16), ("0b11", 3), ("08", "08")],
)
def test_plain_integers_still_read_as_integers(text, value):
    assert moesim.scenario.source.load_yaml_value(text) == value


def test_integers_are_checked_in_lists_and_keys_too(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text("tokens:\n  explicit_weights: [1, 07]\n010: 1\n")
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    assert [(p.line, p.path) for p in caught.value.problems] == [
        (2, "tokens.explicit_weights[1]"),
        (3, ""),
    ]


# ----------------------------------------------------------------------------------------------
# Where results go: -o and output.dir


def _small_scenario(tmp_path, extra: str = "") -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(
        "name: small\nsteps: 2\nrouter: {experts: 8, top_k: 2}\n"
        "tokens: {tokens_per_step: 64, seq_len: 64, dim: 4, clusters: 2}\n" + extra
    )
    return path


@pytest.mark.parametrize("output", ["", " "])
def test_an_empty_output_path_is_refused_not_taken_as_this_folder(tmp_path, monkeypatch, output):
    monkeypatch.chdir(tmp_path)
    path = _small_scenario(tmp_path)
    result = CliRunner().invoke(app, ["run", "-q", str(path), "-o", output])
    assert result.exit_code == 2, result.output
    assert "an empty path" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.yaml"]


def test_output_dir_expands_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    path = _small_scenario(tmp_path, "output: {dir: ~/runs/small}\n")
    assert load_scenario(path).output.dir == str(tmp_path / "home" / "runs" / "small")
    result = CliRunner().invoke(app, ["run", "-q", str(path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "runs" / "small" / "summary.json").is_file()
    assert not (tmp_path / "~").exists()
    result = CliRunner().invoke(app, ["run", "-q", str(path), "-o", "~/other"])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "home" / "other" / "summary.json").is_file()


@pytest.mark.parametrize(
    ("value", "message"),
    [('""', "output.dir: an empty path"), ("~nosuchuser42/x", "cannot expand ~nosuchuser42")],
)
def test_output_dirs_that_name_no_folder_are_refused(tmp_path, value, message):
    path = _small_scenario(tmp_path, f"output: {{dir: {value}}}\n")
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


# ----------------------------------------------------------------------------------------------
# moesim init


@pytest.mark.parametrize(
    "name", ["", " ", ".hidden", "a b", "-", "true", "1e3", "010", "null", "x/.yaml", "x/", "a\n"]
)
def test_init_refuses_a_name_its_own_validate_would_reject(tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "--", name])
    written = list(tmp_path.rglob("*.yaml"))
    if result.exit_code == 0:  # "-" or "true" is a valid name: then the file must validate
        (path,) = written
        assert CliRunner().invoke(app, ["validate", str(path)]).exit_code == 0
    else:
        assert result.exit_code == 2, result.output
        assert "is not a scenario name" in result.output
        assert written == []


@settings(max_examples=40, deadline=None)
@given(st.text(st.characters(codec="utf-8", exclude_characters="\x00/"), max_size=12))
def test_init_writes_only_what_validate_accepts(name):
    import tempfile

    runner = CliRunner()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as folder:
        os.chdir(folder)
        try:
            result = runner.invoke(app, ["init", "--", name])
            assert result.exit_code in (0, 1, 2), result.output
            assert "Traceback" not in result.output
            if result.exit_code == 0:
                (path,) = Path(folder).glob("*.y*ml")
                checked = runner.invoke(app, ["validate", str(path)])
                assert checked.exit_code == 0, path.read_text()
        finally:
            os.chdir(here)


def test_init_into_a_missing_or_unwritable_folder_exits_1(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["init", "missing/x"])
    assert result.exit_code == 1, result.output
    assert "cannot write missing/x.yaml: no such folder" in result.output

    def refuse(path, data):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(moesim.results, "write_atomic", refuse)
    result = CliRunner().invoke(app, ["init", "x"])
    assert result.exit_code == 1, result.output
    assert "cannot write x.yaml: Permission denied" in result.output
    assert "Traceback" not in result.output


def test_brackets_in_quotes_and_comments_are_not_nesting(tmp_path):
    brackets = "[" * 300
    path = tmp_path / "s.yaml"
    path.write_text(f'name: s\ndescription: "{brackets}"  # {"{" * 300}\nsteps: 5\n')
    assert load_scenario(path).description == brackets
