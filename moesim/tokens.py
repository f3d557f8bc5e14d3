"""Synthetic token stream (docs/model.md §1) and trace replay.

A token of cluster ``c`` is ``x = (mu_c + noise * eps) / sqrt(d)`` with ``eps ~ N(0, I_d)`` and
cluster means ``mu_c ~ N(0, I_d) * separation`` drawn once. A step's ``T`` tokens form
``T / seq_len`` sequences; each sequence draws one cluster and each of its tokens keeps it with
probability ``seq_coherence`` (else draws from the cluster weights ``pi``).

Random numbers inside the kernel come from a counter-based generator: every token and every
sequence of every step has its own SplitMix64 stream keyed by ``(seed key, step, index)``. No
state is shared between threads, so the stream is the same whatever ``NUMBA_NUM_THREADS`` is,
and any step can be generated without generating the ones before it (drift aside).

``tokens.stream_version`` picks the numerics (docs/model.md §1): version 1 draws the noise by a
float64 Box-Muller through libm (moesim 0.1-0.2's tokens, bit for bit); version 2, the default,
by a float32 Box-Muller in SIMD loops (:mod:`moesim.kernels.normals`, about 7x faster) with the
same clusters, and the router computes float32 sigmoid scores in float32.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, njit, njit_parallel
from moesim.kernels.normals import _GOLDEN, _MIX_1, _mix64, normal_pairs_v2  # SplitMix64's

_TWO_POW_MINUS_53 = 1.0 / 9007199254740992.0
#: Stream tags, so that a sequence's stream never equals a token's.
_TAG_TOKEN = np.uint64(1)
_TAG_SEQUENCE = np.uint64(2)


@njit
def _stream_state(key, step, tag, index):
    """Initial state of the stream for ``(key, step, tag, index)``."""
    z = _mix64(key + _GOLDEN * np.uint64(step + 1))
    z = _mix64(z ^ (tag * _MIX_1))
    return _mix64(z + _GOLDEN * np.uint64(index + 1))


@njit
def _next_uniform(state):
    """Advance a one-element uint64 state array; return a float64 in (0, 1)."""
    state[0] += _GOLDEN
    return (np.float64(_mix64(state[0]) >> np.uint64(11)) + 0.5) * _TWO_POW_MINUS_53


@njit
def _next_normal_pair(state):
    """Two independent standard normals (Box-Muller)."""
    radius = math.sqrt(-2.0 * math.log(_next_uniform(state)))
    angle = 2.0 * math.pi * _next_uniform(state)
    return radius * math.cos(angle), radius * math.sin(angle)


@njit
def _sample_cluster(cumulative_weights, u):
    """Inverse-CDF draw from normalised cumulative weights (binary search)."""
    lo, hi = 0, cumulative_weights.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if u < cumulative_weights[mid]:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit_parallel
def _generate_cluster_tokens(
    means, cumulative_weights, key, step, seq_len, seq_coherence, noise, tokens, clusters
):
    """Fill ``tokens[T, d]`` (float32) and ``clusters[T]`` (int64) for one step."""
    n_tokens, dim = tokens.shape
    scale = 1.0 / math.sqrt(dim)
    n_chunks = (n_tokens + CHUNK_TOKENS - 1) // CHUNK_TOKENS
    for c in prange(n_chunks):
        state = np.empty(1, dtype=np.uint64)
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            sequence = t // seq_len
            state[0] = _stream_state(key, step, _TAG_SEQUENCE, sequence)
            sequence_cluster = _sample_cluster(cumulative_weights, _next_uniform(state))
            state[0] = _stream_state(key, step, _TAG_TOKEN, t)
            cluster = sequence_cluster
            if _next_uniform(state) >= seq_coherence:
                cluster = _sample_cluster(cumulative_weights, _next_uniform(state))
            clusters[t] = cluster
            for j in range(0, dim, 2):
                first, second = _next_normal_pair(state)
                tokens[t, j] = (means[cluster, j] + noise * first) * scale
                if j + 1 < dim:
                    tokens[t, j + 1] = (means[cluster, j + 1] + noise * second) * scale


@njit_parallel
def _generate_cluster_tokens_v2(
    means, cumulative_weights, key, step, seq_len, seq_coherence, noise, tokens, clusters
):
    """Stream version 2 of :func:`_generate_cluster_tokens`: the same clusters, float32 noise
    from :func:`moesim.kernels.normals.normal_pairs_v2` and float32 arithmetic (``means``
    float32 (C, d))."""
    n_tokens, dim = tokens.shape
    n_pairs = (dim + 1) // 2
    scale = np.float32(1.0 / math.sqrt(dim))
    noise = np.float32(noise)
    n_chunks = (n_tokens + CHUNK_TOKENS - 1) // CHUNK_TOKENS
    for c in prange(n_chunks):
        state = np.empty(1, dtype=np.uint64)
        first = np.empty(n_pairs, dtype=np.float32)
        second = np.empty(n_pairs, dtype=np.float32)
        radius_work = np.empty(n_pairs, dtype=np.float32)
        angle_work = np.empty(n_pairs, dtype=np.float32)
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            cluster = _token_cluster(
                cumulative_weights, key, step, seq_len, seq_coherence, t, state
            )
            clusters[t] = cluster
            normal_pairs_v2(
                _stream_state(key, step, _TAG_TOKEN, t), first, second, radius_work, angle_work
            )
            for i in range(n_pairs):
                tokens[t, i] = (means[cluster, i] + noise * first[i]) * scale
            for i in range(dim - n_pairs):
                tokens[t, n_pairs + i] = (means[cluster, n_pairs + i] + noise * second[i]) * scale


@njit
def _token_cluster(cumulative_weights, key, step, seq_len, seq_coherence, t, state):
    """Token ``t``'s cluster: its sequence's, kept with probability ``seq_coherence``, else a
    fresh draw (outputs 1 and 2 of the token's stream; ``state`` is one-element scratch)."""
    state[0] = _stream_state(key, step, _TAG_SEQUENCE, t // seq_len)
    cluster = _sample_cluster(cumulative_weights, _next_uniform(state))
    state[0] = _stream_state(key, step, _TAG_TOKEN, t)
    if _next_uniform(state) >= seq_coherence:
        cluster = _sample_cluster(cumulative_weights, _next_uniform(state))
    return cluster


@njit_parallel
def _gather_rows(source, rows, tokens):
    """``tokens[t] = source[rows[t]]`` (a pure copy: any split over threads gives the same)."""
    for t in prange(rows.shape[0]):
        tokens[t, :] = source[rows[t], :]


def cluster_weights(config, rng: np.random.Generator) -> np.ndarray:
    """Initial cluster weights ``pi`` [C] (sum 1) for a ``TokensConfig``."""
    n_clusters = config.clusters
    kind = config.cluster_weights
    if kind == "uniform":
        weights = np.ones(n_clusters)
    elif kind == "zipf":
        ranks = np.arange(1, n_clusters + 1, dtype=np.float64)
        weights = np.empty(n_clusters)
        weights[rng.permutation(n_clusters)] = ranks ** (-config.zipf_exponent)
    elif kind == "dirichlet":
        weights = rng.dirichlet(np.full(n_clusters, config.dirichlet_alpha))
    else:
        weights = np.asarray(config.explicit_weights, dtype=np.float64)
    return weights / weights.sum()


@dataclass
class TokenStream:
    """Everything needed to produce any step's tokens (plain arrays; see :func:`make_stream`).

    Attributes
    ----------
    dim : int
        Embedding dimension d.
    means : ndarray (C, d) float64 or None
        Cluster means (None when replaying a trace); float32 from stream version 2 on.
    base_weights : ndarray (C,) float64
        Cluster weights at step 0.
    key : numpy.uint64
        Key of the counter-based generator for token noise.
    """

    config: object
    dim: int
    means: np.ndarray | None
    base_weights: np.ndarray
    key: np.uint64
    drift_seed: np.random.SeedSequence
    trace: np.ndarray | None = None
    trace_clusters: np.ndarray | None = None
    _log_weights: np.ndarray | None = None
    _walk_step: int = 0
    _walk_rng: np.random.Generator | None = None
    _shift_permutation: np.ndarray | None = None


def make_stream(config, seed: np.random.SeedSequence) -> TokenStream:
    """Build the token stream of a ``TokensConfig`` from its own seed sequence.

    The stream depends only on the tokens config and the seed, so every variant of a scenario
    sees the same tokens (common random numbers).
    """
    structure_seed, noise_seed, drift_seed = seed.spawn(3)
    rng = np.random.default_rng(structure_seed)
    key = np.uint64(noise_seed.generate_state(1, np.uint64)[0])
    if config.source == "file":
        trace, labels = load_trace(config.file, config.file_key, config.clusters)
        n_clusters = int(labels.max()) + 1 if labels is not None else 1
        return TokenStream(
            config,
            trace.shape[1],
            None,
            np.ones(n_clusters) / n_clusters,
            key,
            drift_seed,
            trace=trace,
            trace_clusters=labels,
        )
    means = rng.standard_normal((config.clusters, config.dim)) * config.separation
    if config.stream_version >= 2:
        means = means.astype(np.float32)
    weights = cluster_weights(config, rng)
    return TokenStream(config, config.dim, means, weights, key, drift_seed)


def weights_at(stream: TokenStream, step: int) -> np.ndarray:
    """Cluster weights at ``step`` under the configured drift (docs/model.md §1).

    ``walk`` is a random walk, so it must be asked for steps in increasing order (the engine
    does); the others are pure functions of the step.
    """
    drift = stream.config.drift
    weights = stream.base_weights
    if drift.kind == "shift":
        if step >= drift.at_step:
            if stream._shift_permutation is None:
                rng = np.random.default_rng(stream.drift_seed)
                stream._shift_permutation = rng.permutation(weights.shape[0])
            weights = weights[stream._shift_permutation]
    elif drift.kind == "rotate":
        offset = (step * weights.shape[0]) // drift.period
        weights = np.roll(weights, offset % weights.shape[0])
    elif drift.kind == "walk":
        if stream._log_weights is None or step < stream._walk_step:
            stream._log_weights = np.log(np.maximum(weights, 1e-300))
            stream._walk_step = 0
            stream._walk_rng = np.random.default_rng(stream.drift_seed)
        while stream._walk_step < step:
            stream._log_weights = stream._log_weights + drift.sigma * (
                stream._walk_rng.standard_normal(weights.shape[0])
            )
            stream._walk_step += 1
        shifted = np.exp(stream._log_weights - stream._log_weights.max())
        weights = shifted / shifted.sum()
    return weights


def generate(stream: TokenStream, step: int, n_tokens: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens of one step.

    Returns
    -------
    tokens : ndarray, shape (T, d), float32
    clusters : ndarray, shape (T,), int64
        Cluster (domain) of each token; 0 for an unlabelled trace.
    """
    config = stream.config
    tokens = np.empty((n_tokens, stream.dim), dtype=np.float32)
    if stream.trace is not None:
        n_rows = stream.trace.shape[0]
        if config.file_order == "cycle":
            rows = (np.arange(n_tokens, dtype=np.int64) + step * n_tokens) % n_rows
        else:
            rng = np.random.default_rng([int(stream.key), step])
            rows = rng.integers(0, n_rows, size=n_tokens)
        _gather_rows(stream.trace, rows, tokens)
        if stream.trace_clusters is not None:
            return tokens, stream.trace_clusters[rows]
        return tokens, np.zeros(n_tokens, dtype=np.int64)
    cumulative = np.cumsum(weights_at(stream, step))
    cumulative /= cumulative[-1]
    clusters = np.empty(n_tokens, dtype=np.int64)
    generator = (
        _generate_cluster_tokens_v2 if config.stream_version >= 2 else _generate_cluster_tokens
    )
    generator(
        stream.means,
        cumulative,
        stream.key,
        np.int64(step),
        config.seq_len,
        config.seq_coherence,
        config.noise,
        tokens,
        clusters,
    )
    return tokens, clusters


class TraceError(ValueError):
    """A trace file that cannot be replayed; the message says why and what was expected.

    ``field`` names the ``tokens`` setting to change: ``file``, or ``file_key`` when the file
    is fine but the array named (or not named) in it is the problem.
    """

    def __init__(self, message: str, field: str = "file"):
        super().__init__(message)
        self.field = field


#: The largest ``tokens.clusters`` (moesim.scenario.schema.TokensConfig; not imported: floor 3).
MAX_CLUSTERS = 100_000
#: Rows checked for NaN/inf at a time when validating a memory-mapped trace.
_CHECK_ROWS = 65536


def _open_trace(path: Path, key: str | None, *, mmap: bool):
    """The embeddings array and the labels array (or None) of a trace file, unchecked.

    With ``mmap`` a ``.npy`` file is memory-mapped rather than read (members of a ``.npz`` are
    always read).
    """
    if path.is_dir():
        raise TraceError(f"{path} is a folder; expected a .npy or .npz file")
    if not path.is_file():
        raise TraceError(f"trace file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as error:  # numpy raises several types for a corrupt file
        raise TraceError(f"{path}: not a readable .npy/.npz file ({error})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        if key is not None:
            raise TraceError(
                f"{path}: tokens.file_key names an array in a .npz; a .npy holds one array "
                "(remove file_key)",
                field="file_key",
            )
        return _an_array(path, "embeddings", loaded), None
    with loaded:
        names = list(loaded.files)
        label_name = next((n for n in ("clusters", "labels") if n in names), None)
        candidates = [n for n in names if n != label_name]
        if key is None:
            if len(candidates) != 1:
                raise TraceError(
                    f"{path}: holds arrays {names}; set tokens.file_key to the embeddings",
                    field="file_key",
                )
            key = candidates[0]
        if key not in names:
            raise TraceError(f"{path}: no array {key!r}; it holds {names}", field="file_key")
        embeddings = _read_member(path, loaded, key)
        labels = _read_member(path, loaded, label_name) if label_name is not None else None
        return embeddings, labels


def _read_member(path: Path, loaded, name: str) -> np.ndarray:
    """Array ``name`` of an open ``.npz``; TraceError if it cannot be read as an array."""
    try:
        member = loaded[name]
    except Exception as error:  # object arrays (pickles), truncated or corrupt members
        raise TraceError(f"{path}: array {name!r} is not readable ({error})") from None
    return _an_array(path, repr(name), member)


def _an_array(path: Path, what: str, member) -> np.ndarray:
    # A .npz member whose name does not end in .npy is returned as raw bytes.
    if not isinstance(member, np.ndarray):
        raise TraceError(f"{path}: {what} is not a NumPy array (a .npz member not saved by NumPy)")
    return member


def _check_layout(path: Path, array: np.ndarray) -> None:
    """Raise TraceError unless the embeddings are 2-D, non-empty and numeric."""
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise TraceError(
            f"{path}: embeddings have shape {array.shape}; expected 2-D (tokens, dim), non-empty"
        )
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise TraceError(f"{path}: embeddings have dtype {array.dtype}; expected floats")


def _check_values(
    path: Path, array: np.ndarray, labels: np.ndarray | None, n_clusters: int | None
) -> None:
    """Raise TraceError unless the embeddings are finite in float32 and the labels valid
    (below ``n_clusters`` when given).

    Finiteness is checked a block of rows at a time, so a memory-mapped trace is never held in
    memory whole (a float32 array is checked in place, without copies).
    """
    for start in range(0, array.shape[0], _CHECK_ROWS):
        # float32 is what the router sees: a float64 value beyond its range is inf there too.
        block = np.asarray(array[start : start + _CHECK_ROWS], dtype=np.float32)
        finite = np.isfinite(block)
        if not finite.all():
            row = start + int(np.argwhere(~finite)[0, 0])
            raise TraceError(f"{path}: embeddings contain NaN or inf (first at row {row})")
    if labels is not None:
        _check_labels(path, labels, array.shape[0], n_clusters)


def _check_labels(path: Path, labels: np.ndarray, n_rows: int, n_clusters: int | None) -> None:
    """Raise TraceError unless the labels are integers in ``[0, n_clusters)``, one per row.

    Labels index per-cluster arrays: a label out of range would read outside them (a uint64
    above 2**63 wraps to a negative index) or size them by the label (1e11 asks for terabytes).
    """
    if labels.shape != (n_rows,) or not np.issubdtype(labels.dtype, np.integer):
        raise TraceError(
            f"{path}: labels must be integers, one per row ({n_rows}); "
            f"got {labels.dtype} {labels.shape}"
        )
    low, high = int(labels.min()), int(labels.max())  # Python ints: exact for uint64 too
    if low < 0:
        row = int(np.argmax(labels < 0))
        raise TraceError(f"{path}: labels must be non-negative (got {low} at row {row})")
    if n_clusters is not None and high >= n_clusters:
        row = int(np.argmax(labels == labels.max()))
        fix = (
            f"set tokens.clusters: {high + 1} or more"
            if high < MAX_CLUSTERS
            else f"number the clusters from 0; there can be at most {MAX_CLUSTERS:,}"
        )
        raise TraceError(
            f"{path}: label {high} at row {row} is not below tokens.clusters={n_clusters} ({fix})"
        )


def check_trace(path, key: str | None = None, n_clusters: int | None = None) -> tuple[int, int]:
    """Check a trace file as :func:`load_trace` would, without loading it; ``(rows, dim)``.

    Used when a scenario is validated, so that a bad trace is reported before anything runs.
    """
    path = Path(path)
    array, labels = _open_trace(path, key, mmap=True)
    _check_layout(path, array)
    _check_values(path, array, labels, n_clusters)
    return int(array.shape[0]), int(array.shape[1])


def load_trace(
    path, key: str | None = None, n_clusters: int | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read token embeddings (rows are tokens) from a ``.npy`` or ``.npz`` file.

    In a ``.npz``, ``key`` names the embeddings array (default: the only array, or the one that
    is not called ``clusters``/``labels``); an integer array ``clusters`` or ``labels`` of one
    entry per row, if present, gives each token's domain; with ``n_clusters`` (the scenario's
    ``tokens.clusters``) every label must be below it.

    Returns
    -------
    embeddings : ndarray (N, d) float32, C-contiguous
    labels : ndarray (N,) int64 or None

    Raises
    ------
    TraceError
        If the file is missing, unreadable, or its arrays have the wrong shape, type or values.
    """
    path = Path(path)
    array, labels = _open_trace(path, key, mmap=False)
    _check_layout(path, array)
    array = np.ascontiguousarray(array, dtype=np.float32)  # the one conversion
    _check_values(path, array, labels, n_clusters)
    if labels is not None:
        labels = labels.astype(np.int64)
    return array, labels
