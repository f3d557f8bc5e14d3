"""Scenario loading: defaults, overrides, variants, and a corpus of broken files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import moesim
from moesim.errors import ScenarioError
from moesim.scenario import (
    dump_yaml,
    example_scenario_yaml,
    expand_variants,
    load_scenario,
    parse_override,
    render_scenario_docs,
    scenario_json_schema,
)

SHIPPED = sorted(Path("scenarios").glob("*.yaml"))


def test_defaults_fill_every_section():
    scenario = load_scenario({})
    assert scenario.router.experts == 256 and scenario.router.top_k == 8
    assert scenario.capacity.factor is None and scenario.balance.bias.rate == 1e-3
    resolved = scenario.resolved_dict()
    assert set(resolved) >= {"tokens", "router", "balance", "capacity", "learning", "metrics"}
    # The dump loads back to the same scenario.
    assert load_scenario(moesim.scenario.yaml.safe_load(dump_yaml(scenario))) == scenario


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_scenarios_load(path):
    scenario = load_scenario(path)
    assert scenario.name == path.stem
    assert expand_variants(scenario)


def test_deepseek_v3_scenario_is_the_671b_router():
    router = load_scenario("scenarios/deepseek_v3.yaml").router
    assert (router.experts, router.top_k, router.groups, router.topk_groups) == (256, 8, 8, 4)
    assert router.score == "sigmoid" and router.route_scale == 2.5 and router.normalize


def test_collapse_scenario_has_the_eight_named_variants():
    names = [name for name, _ in expand_variants(load_scenario("scenarios/collapse.yaml"))]
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
    scenario = load_scenario("scenarios/bias_rate.yaml", ["router.score=softmax", "steps=7"])
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


# A corpus of broken scenarios: (file content, exact message fragments). Each fragment includes
# the position, so the tests pin the line and column users are pointed at.
BROKEN = {
    "yaml_syntax": ("router: [1, 2\n", ["bad.yaml:2:1: invalid YAML: expected ','"]),
    "not_a_mapping": ("- 1\n- 2\n", ["bad.yaml:1:1: expected a mapping of sections"]),
    "unknown_section": (
        "rooter:\n  experts: 8\n",
        ["bad.yaml:1:1: rooter: unknown key; did you mean 'router'?"],
    ),
    "unknown_key": (
        "router:\n  topk: 3\n",
        ["bad.yaml:2:3: router.topk: unknown key; did you mean 'top_k'?"],
    ),
    "wrong_type": (
        "router:\n  top_k: eight\n",
        ["bad.yaml:2:3: router.top_k: expected an integer, got 'eight'"],
    ),
    "bad_choice": (
        "router:\n  score: sigmod\n",
        [
            "bad.yaml:2:3: router.score: expected one of 'sigmoid', 'softmax' or "
            "'softmax_after_topk', got 'sigmod'; did you mean 'sigmoid'?"
        ],
    ),
    "out_of_bounds": ("steps: 0\n", ["bad.yaml:1:1: steps: must be >= 1 (got 0)"]),
    "k_above_e": (
        "router:\n  experts: 8\n  top_k: 9\n",
        ["bad.yaml:3:3: router.top_k: must be <= router.experts (got top_k=9, experts=8)"],
    ),
    "groups_not_dividing": (
        "router:\n  experts: 10\n  groups: 4\n",
        ["bad.yaml:3:3: router.groups: must divide router.experts=10 (got 4)"],
    ),
    "too_few_kept_experts": (
        "router:\n  experts: 16\n  top_k: 6\n  groups: 4\n  topk_groups: 1\n",
        [
            "bad.yaml:5:3: router.topk_groups: kept groups hold 1 x 4 = 4 experts, fewer than "
            "router.top_k=6"
        ],
    ),
    "seq_len_not_dividing": (
        "tokens:\n  tokens_per_step: 1000\n  seq_len: 300\n",
        ["bad.yaml:3:3: tokens.seq_len: must divide tokens.tokens_per_step=1000 (got 300)"],
    ),
    "missing_trace": (
        "tokens:\n  source: file\n",
        ["bad.yaml:1:1: tokens.file: required when tokens.source is file"],
    ),
    "trace_not_found": (
        "tokens:\n  source: file\n  file: absent.npy\n",
        ["bad.yaml:3:3: tokens.file: trace file not found:"],
    ),
    "explicit_weights_length": (
        "tokens:\n  clusters: 3\n  cluster_weights: explicit\n  explicit_weights: [1, 2]\n",
        ["bad.yaml:4:3: tokens.explicit_weights: needs one weight per cluster (3), got 2"],
    ),
    "aux_without_alpha": (
        "learning: {enabled: true}\nbalance:\n  aux:\n    kind: batch\n",
        ["balance.aux.alpha: set balance.aux.alpha > 0 for kind 'batch'"],
    ),
    "aux_without_learning": (
        "balance:\n  aux: {kind: batch, alpha: 0.1}\n",
        ["learning.enabled: auxiliary losses act through router learning"],
    ),
    "bad_variant": (
        "variants:\n  - name: ok\n  - name: big\n    router: {top_k: 300}\n  - name: typo\n"
        "    rooter: {}\n",
        [
            "bad.yaml:4:14: variants[1].router.top_k: must be <= router.experts",
            "bad.yaml:6:5: variants[2].rooter: unknown key; did you mean 'router'?",
        ],
    ),
    "duplicate_variant": (
        "variants:\n  - name: a\n  - name: a\n",
        ["bad.yaml:3:5: variants[1].name: duplicate variant name 'a'"],
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_scenarios_explain_themselves(case, tmp_path):
    content, fragments = BROKEN[case]
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)
    message = str(caught.value).replace(str(tmp_path) + "/", "")
    for fragment in fragments:
        assert fragment in message, message
    assert "Traceback" not in message


def test_missing_file_and_bad_override():
    with pytest.raises(ScenarioError, match="scenario file not found: nowhere.yaml"):
        load_scenario("nowhere.yaml")
    with pytest.raises(ScenarioError, match=r"router\.top_k: must be <= router\.experts \(got"):
        load_scenario({}, ["router.experts=3"])
    with pytest.raises(ScenarioError, match=r"--set router\.top_k=0: router\.top_k: must be >= 1"):
        load_scenario({}, ["router.top_k=0"])
    with pytest.raises(ScenarioError, match="expected KEY=VALUE"):
        load_scenario({}, ["router.top_k"])
    with pytest.raises(ScenarioError, match=r"--set balance\.bias\.rat=1: .*did you mean 'rate'"):
        load_scenario({}, ["balance.bias.rat=1"])


def test_json_schema_and_docs_are_current():
    schema = scenario_json_schema()
    assert "router" in schema["properties"]
    json.dumps(schema)
    assert Path("docs/scenarios.md").read_text() == render_scenario_docs(), (
        "docs/scenarios.md is out of date: run `moesim schema --markdown > docs/scenarios.md`"
    )


def test_example_scenario_loads(tmp_path):
    path = tmp_path / "example.yaml"
    path.write_text(example_scenario_yaml("example"))
    scenario = load_scenario(path)
    assert scenario.name == "example" and len(expand_variants(scenario)) == 2
