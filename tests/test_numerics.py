"""The shared kernel math (moesim.kernels.numerics) against NumPy, and one value per guard."""

from __future__ import annotations

import ast
import os
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from moesim import reference_learning as ref
from moesim.kernels import metrics, routing
from moesim.kernels.numerics import (
    NORM_EPS,
    NORMALIZE_EPS,
    exp_inplace,
    log_sum_exp,
    sigmoid,
    sigmoid_row,
    sigmoid_row_float32,
    softmax_normalizer,
    softmax_normalizer_at,
    softmax_row,
)

PACKAGE = Path(__file__).resolve().parents[1] / "moesim"

#: Logit rows: 1 to 40 experts, values up to +-60 (softmax and sigmoid both saturate there).
ROWS = st.integers(1, 40).flatmap(
    lambda n: arrays(np.float64, n, elements=st.floats(-60, 60, allow_subnormal=False))
)


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float64, st.integers(1, 64), elements=st.floats(-700, 700)))
def test_row_exp_is_within_3_ulp_of_numpy(values):
    got = values.copy()
    exp_inplace(got, np.empty(values.shape[0], np.int64))
    expected = np.exp(values)
    assert (np.abs(got - expected) <= 3 * np.spacing(expected)).all()


@settings(max_examples=60, deadline=None)
@given(values=ROWS, dtype=st.sampled_from([np.float32, np.float64]))
def test_sigmoid_and_softmax_rows_match_numpy(values, dtype):
    """Computed in float64, stored in the row's dtype (the router's scores)."""
    row = values.astype(dtype)
    n = row.shape[0]
    out = np.empty(n, dtype)
    # Relative to the dtype's precision, absolute below its smallest normal number.
    tolerance = {"rtol": 1e-6 if dtype == np.float32 else 1e-13, "atol": np.finfo(dtype).tiny}
    sigmoid_row(row, out, np.empty(n), np.empty(n, np.int64))
    np.testing.assert_allclose(out, ref.sigmoid(row.astype(np.float64)), **tolerance)
    softmax_row(row, out, np.empty(n), np.empty(n, np.int64))
    np.testing.assert_allclose(out, ref.softmax(row.astype(np.float64)), **tolerance)
    # work may be out itself when out is float64 (as learning's affinities use it).
    in_place = np.empty(n)
    sigmoid_row(row, in_place, in_place, np.empty(n, np.int64))
    np.testing.assert_allclose(in_place, ref.sigmoid(row.astype(np.float64)), rtol=1e-13)


@settings(max_examples=60, deadline=None)
@given(values=arrays(np.float32, st.integers(1, 64), elements=st.floats(-100, 100, width=32)))
def test_float32_sigmoid_row_is_within_2_ulp_of_the_rounded_sigmoid(values):
    """Token stream version 2's scores: computed in float32, 2 ulp of float64's rounded."""
    n = values.shape[0]
    got = np.empty(n, np.float32)
    sigmoid_row_float32(values, got, np.empty(n, np.float32), np.empty(n, np.int32))
    expected = ref.sigmoid(values.astype(np.float64)).astype(np.float32)
    normal = expected >= np.finfo(np.float32).tiny
    assert (np.abs(got - expected) <= 2 * np.spacing(expected))[normal].all()
    assert (got[~normal] < 1e-37).all()


@settings(max_examples=60, deadline=None)
@given(values=ROWS)
def test_softmax_normalizer_and_log_sum_exp_match_numpy(values):
    shift, total = softmax_normalizer(values)
    assert shift == values.max()
    np.testing.assert_allclose(np.exp(values - shift) / total, ref.softmax(values), rtol=1e-13)
    lse, lse_shift, lse_total = log_sum_exp(values)
    assert (lse_shift, lse_total) == (shift, total)
    assert lse == pytest.approx(ref.log_sum_exp(values[None, :])[0], rel=1e-13, abs=1e-13)
    assert sigmoid(values[0]) == pytest.approx(ref.sigmoid(values[0]), rel=1e-15)


@settings(max_examples=60, deadline=None)
@given(values=ROWS, data=st.data())
def test_softmax_normalizer_at_is_the_softmax_of_the_selected(values, data):
    chosen = data.draw(st.permutations(range(values.shape[0])))
    indices = np.array(chosen[: data.draw(st.integers(1, len(chosen)))], dtype=np.int64)
    shift, total = softmax_normalizer_at(values, indices)
    np.testing.assert_allclose(
        np.exp(values[indices] - shift) / total, ref.softmax(values[indices]), rtol=1e-13
    )


def _numbers_in(path: Path) -> set[float]:
    tree = ast.parse(path.read_text())
    return {
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, float)
    }


def test_each_guard_has_one_value_and_one_name():
    """NORMALIZE_EPS and NORM_EPS are written once, in numerics.py: no kernel or twin repeats
    their values as literals."""
    sources = [*(PACKAGE / "kernels").glob("*.py"), *PACKAGE.glob("reference*.py")]
    repeated = [
        f"{path.relative_to(PACKAGE)}: {value}"
        for path in sources
        if path.name != "numerics.py"
        for value in _numbers_in(path) & {NORMALIZE_EPS, NORM_EPS}
    ]
    assert not repeated
    assert NORMALIZE_EPS == 1e-20 and NORM_EPS == 1e-30  # changing either changes results


def test_kernels_are_compiled_unless_jit_is_disabled():
    """Part of the NUMBA_DISABLE_JIT=1 run (tests/test_unjitted.py): there the kernels must be
    plain Python functions, so that the run exercises their bodies, not compiled code."""
    kernels = [routing._route_chunks, metrics._top_k_overlap, exp_inplace, softmax_normalizer]
    compiled = [isinstance(kernel, numba.core.dispatcher.Dispatcher) for kernel in kernels]
    if os.environ.get("NUMBA_DISABLE_JIT") == "1":
        assert not any(compiled)
    else:
        assert all(compiled)
