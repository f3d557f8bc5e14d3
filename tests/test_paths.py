"""The token-path kernel of stream version 2 (moesim/kernels/paths.py) against its NumPy twin
(moesim/reference_paths.py), and the same bits whatever the thread count or the chunking."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moesim.kernels.paths import advance_tokens, path_noise_state
from moesim.reference_paths import (
    advance_tokens_reference,
    path_noise_reference,
    path_noise_state_reference,
)

#: The normals' tolerance (tests/test_tokens.py): float32 polynomial log and sincos against
#: float64 libm on the same 64-bit outputs, a few float32 ulp.
NORMALS_TOLERANCE = 2e-6


@st.composite
def path_inputs(draw):
    n_tokens = draw(st.integers(1, 40))
    dim = draw(st.integers(1, 40))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    tokens = (rng.standard_normal((n_tokens, dim)) * scale).astype(dtype)
    counters = {
        "key": draw(st.integers(0, 2**64 - 1)),
        "stream": draw(st.integers(0, 1)),
        "layer": draw(st.integers(0, 100)),
        "step": draw(st.integers(0, 10**6)),
    }
    correlation = draw(st.one_of(st.sampled_from([0.0, 1.0]), st.floats(0.0, 1.0)))
    return tokens, rng.permutation(dim), rng.choice([-1.0, 1.0], size=dim), correlation, counters


def kernel_noise(n_tokens: int, dim: int, counters: dict, dtype=np.float32) -> np.ndarray:
    """The kernel's own ``xi`` (T, d): at rho = 0 on tokens of ones (RMS exactly 1), the update
    is ``0 + 1 * xi`` with no rounding."""
    ones = np.ones((n_tokens, dim), dtype=dtype)
    return advance_tokens(ones, np.arange(dim), np.ones(dim), 0.0, **counters)


@settings(max_examples=40, deadline=None)
@given(path_inputs())
def test_kernel_is_its_twin_bit_for_bit_on_the_kernels_normals(inputs):
    """With the kernel's normals the twin does the same dtype operations: the same bits."""
    tokens, permutation, signs, correlation, counters = inputs
    ours = advance_tokens(tokens, permutation, signs, correlation, **counters)
    noise = kernel_noise(*tokens.shape, counters)
    theirs = advance_tokens_reference(
        tokens, permutation, signs, correlation, **counters, noise=noise
    )
    assert ours.dtype == tokens.dtype and ours.flags.c_contiguous
    np.testing.assert_array_equal(ours, theirs)


@settings(max_examples=40, deadline=None)
@given(path_inputs())
def test_kernel_matches_its_twin_within_the_normals_tolerance(inputs):
    """End to end: the twin draws its own float64 normals. Coordinate-wise,
    ``|ours - theirs| <= s_t * 2e-6 (1 + |xi|)`` (the normals' error, scaled by the token's
    noise scale ``s_t``) plus two ulp of the output (the product and the sum round in the
    dtype); exact at rho = 1 (no noise)."""
    tokens, permutation, signs, correlation, counters = inputs
    ours = advance_tokens(tokens, permutation, signs, correlation, **counters)
    theirs = advance_tokens_reference(tokens, permutation, signs, correlation, **counters)
    if correlation == 1.0:
        np.testing.assert_array_equal(ours, theirs)
        return
    noise = path_noise_reference(**counters, n_tokens=tokens.shape[0], dim=tokens.shape[1])
    np.testing.assert_allclose(
        kernel_noise(*tokens.shape, counters), noise, rtol=NORMALS_TOLERANCE, atol=NORMALS_TOLERANCE
    )
    rms = np.sqrt(np.mean(tokens.astype(np.float64) ** 2, axis=1, keepdims=True))
    noise_scale = np.sqrt(1.0 - correlation**2) * rms
    bound = noise_scale * NORMALS_TOLERANCE * (1 + np.abs(noise)) + 2 * np.spacing(np.abs(theirs))
    assert (np.abs(ours.astype(np.float64) - theirs) <= bound).all()


@settings(max_examples=30, deadline=None)
@given(
    key=st.integers(0, 2**64 - 1),
    stream=st.integers(0, 1),
    layer=st.integers(0, 1000),
    step=st.integers(0, 2**40),
    token=st.integers(0, 2**30),
)
def test_stream_states_match_the_python_integer_twin(key, stream, layer, step, token):
    state = path_noise_state(np.uint64(key), stream, layer, step, token)
    assert int(state) == path_noise_state_reference(key, stream, layer, step, token)


def test_a_tokens_noise_depends_on_its_counters_only():
    """The first tokens of a block of 5 are those of a block of 600 (several chunks), and each
    of key, stream, layer and step changes the noise."""
    counters = {"key": 7, "stream": 0, "layer": 2, "step": 3}
    long = kernel_noise(600, 9, counters)
    np.testing.assert_array_equal(kernel_noise(5, 9, counters), long[:5])
    for name in counters:
        other = kernel_noise(5, 9, {**counters, name: counters[name] + 1})
        assert not np.any(other == long[:5]), name
    # float64 tokens take the same normals, exactly.
    np.testing.assert_array_equal(kernel_noise(5, 9, counters, np.float64), long[:5])


def test_bad_arguments_are_refused_with_their_name():
    tokens = np.zeros((3, 4), np.float32)
    with pytest.raises(ValueError, match="permutation"):
        advance_tokens(tokens, [0, 1, 1, 3], np.ones(4), 0.5, key=1)
    with pytest.raises(ValueError, match="signs"):
        advance_tokens(tokens, np.arange(4), np.zeros(4), 0.5, key=1)
    with pytest.raises(ValueError, match="correlation"):
        advance_tokens(tokens, np.arange(4), np.ones(4), 1.5, key=1)
    with pytest.raises(ValueError, match="layer"):
        advance_tokens(tokens, np.arange(4), np.ones(4), 0.5, key=1, layer=-1)
    with pytest.raises(ValueError, match="tokens"):
        advance_tokens(tokens.astype(np.int32), np.arange(4), np.ones(4), 0.5, key=1)


#: Run by conftest.py's outputs_by_thread_count with 1 and with 2 Numba threads.
THREAD_COUNT_JOBS = {
    "token paths": """
import hashlib
import numpy as np
from moesim.kernels.paths import advance_tokens

rng = np.random.default_rng(5)
digest = hashlib.sha256()
for dtype in (np.float32, np.float64):
    for n_tokens, dim in ((1, 3), (1000, 64), (777, 7)):
        tokens = rng.standard_normal((n_tokens, dim)).astype(dtype)
        permutation, signs = rng.permutation(dim), rng.choice([-1.0, 1.0], size=dim)
        for correlation in (0.0, 0.9, 1.0):
            moved = advance_tokens(
                tokens, permutation, signs, correlation, key=2**63 + 11, stream=1, layer=4, step=9
            )
            digest.update(moved.tobytes())
print(digest.hexdigest())
"""
}


@pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="needs two cores for NUMBA_NUM_THREADS=2")
def test_token_paths_are_identical_whatever_the_thread_count(outputs_by_thread_count):
    one, two = outputs_by_thread_count["token paths"]
    assert len(one) == 64, one  # a SHA-256, not an error
    assert one == two
