"""The kernel bodies run as plain Python too: a subset of the kernel tests with
NUMBA_DISABLE_JIT=1, so that their lines are executed (and readable in a traceback) as Python,
not only as compiled code. Numba can accept code that Python rejects and the reverse (an
out-of-range index, a float where an int is needed), so the two must agree on these tests.

Left out, as too slow unjitted (each would take minutes in Python loops): the hypothesis test of
the router logits (``test_router_logits_match_reference_bit_for_bit``, up to 600 x 40 x 140
multiply-adds per example; its small fixed cases run instead), the thread-count test (it runs
the engine) and the statistical drop-rate tests.

Left out as not meaningful unjitted: test_step.py's NaN-logits test (``math.floor(nan)`` raises
in Python; compiled, the row exp turns NaN logits into NaN scores, the case that test is about).
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Kernel-against-twin tests that take seconds unjitted. Every kernel module is represented:
#: numerics, normals, logits, routing, capacity, balance, metrics, learning, step, paths,
#: deployment.eplb. (normals wraps uint64 products on purpose: NumPy warns of the overflow.)
UNJITTED_TESTS = (
    "tests/test_numerics.py",
    "tests/test_tokens.py::test_stream_2_normals_match_their_numpy_twin",
    "tests/test_routing.py::test_route_matches_reference",
    "tests/test_routing.py::test_exact_ties_go_to_lower_index",
    "tests/test_conformance.py::test_deepseek_gate_conformance[v3-671b-negative]",
    "tests/test_routing.py::test_router_logits_small_cases_bit_for_bit",
    "tests/test_capacity.py::test_apply_capacity_matches_reference",
    "tests/test_balance.py::test_update_bias_matches_reference",
    "tests/test_metrics.py::test_load_stats_matches_reference_2d",
    "tests/test_metrics.py::test_top_k_overlap_matches_reference",
    "tests/test_metrics.py::test_assignment_counts_match_reference",
    "tests/test_learning.py::test_reward_gradient_kernel_matches_reference",
    "tests/test_learning.py::test_combined_objective_gradient_matches_finite_differences",
    "tests/test_learning.py::test_aux_loss_gradient_matches_finite_differences",
    "tests/test_learning.py::test_z_loss_gradient_matches_finite_differences",
    "tests/test_learning.py::test_aux_counts_are_a_plain_top_k_ignoring_bias_and_groups",
    "tests/test_learning.py::test_reward_model_competence_and_affinity",
    "tests/test_step.py::test_routing_step_equals_composition",
    "tests/test_paths.py::test_kernel_is_its_twin_bit_for_bit_on_the_kernels_normals",
    "tests/test_eplb.py::test_matches_the_slow_twin",
)


def test_kernel_tests_pass_with_jit_disabled(tmp_path):
    report = tmp_path / "unjitted.xml"
    environment = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    outcome = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={report}",
            *UNJITTED_TESTS,
        ],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert outcome.returncode == 0, outcome.stdout[-4000:] + outcome.stderr[-2000:]
    suites = ElementTree.parse(report).getroot()
    ran = {(case.get("classname"), case.get("name")) for case in suites.iter("testcase")}
    suite = suites.find("testsuite")
    counts = {key: int(suite.get(key)) for key in ("tests", "failures", "errors", "skipped")}
    assert counts["failures"] == counts["errors"] == counts["skipped"] == 0, counts
    # Every selected test ran (a renamed test would otherwise drop out of the run unnoticed),
    # among them the one that checks the kernels really were plain Python functions there.
    ran_names = {name.split("[")[0] for _, name in ran}
    for selected in UNJITTED_TESTS:
        if "::" in selected:
            assert selected.split("::")[1].split("[")[0] in ran_names, selected
    assert ("tests.test_numerics", "test_kernels_are_compiled_unless_jit_is_disabled") in ran
    assert counts["tests"] == len(ran) >= 30
