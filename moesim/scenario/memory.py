"""Memory planning: how often a run records, and how much memory it will hold at its peak.

Used to refuse, at validation, a run that cannot fit in this machine's memory (the check is
in :mod:`moesim.scenario.checks`), and by the engine for the recording interval.

The estimate counts every array a run allocates, by what its size grows with; each term names
where the arrays are made. ``tests/test_memory.py`` runs small scenarios under ``tracemalloc``
and checks that the estimate stays an upper bound of what is allocated, and not far above it:
an array added to the engine without a term here fails it.
"""

from __future__ import annotations

import math
import os

from moesim.scenario.layers import moe_layer_numbers
from moesim.scenario.schema import Scenario

#: Work chunks of 256 tokens (moesim._jit.CHUNK_TOKENS; not imported here: it loads Numba).
_CHUNK_TOKENS = 256
#: Tokens the fidelity probe re-routes at a recorded step (engine/recorder.py FIDELITY_TOKENS).
_FIDELITY_TOKENS = 1024
#: Tokens whose pairs the co-routing of two layers is measured on (engine/layers.py).
_CO_ROUTING_TOKENS = 256
#: Bytes per record per variant of the history: 22 float64 columns rounded up to 32, and the
#: same row as CSV text (history.csv) while the folder is written, built and then encoded.
_HISTORY_BYTES = 32 * 8 + 2048
#: Bytes per cell of the clusters x experts table: the int64 counts, and specialization's
#: float64 temporaries (kernels/metrics.py: the float copy, p, the mask, the outer product,
#: the masked selections, their ratio and its log).
_JOINT_BYTES = 8 + 7 * 8 + 1

#: What to change when a part is the largest: (key path, hint).
PART_FIXES = {
    "step": (("tokens", "tokens_per_step"), "route fewer tokens per step"),
    "router": (("router", "experts"), "use fewer experts or a smaller tokens.dim"),
    "clusters": (
        ("tokens", "clusters"),
        "use fewer clusters (the run keeps a clusters x experts table)",
    ),
    "balance": (("metrics", "balance_window"), "judge balance over fewer steps"),
    "records": (("metrics", "record_every"), "record less often (a larger record_every)"),
    "trace": (("tokens", "file"), "replay a smaller trace"),
}


def record_every_for(scenario: Scenario) -> int:
    """Steps between recorded rows (``metrics.record_every`` or about 1000 rows per run)."""
    chosen = scenario.metrics.record_every
    return int(chosen) if chosen else max(1, math.ceil(scenario.steps / 1000))


def _threads() -> int:
    """Numba's worker threads (each holds per-expert scratch arrays while a kernel runs)."""
    return int(os.environ.get("NUMBA_NUM_THREADS") or os.cpu_count() or 1)


def _step_bytes(scenario: Scenario, dim: int) -> int:
    """One step's arrays, alive together while the step runs (freed before the next)."""
    tokens, n_experts, top_k = scenario.tokens, scenario.router.experts, scenario.router.top_k
    n_tokens = tokens.tokens_per_step
    n_chunks = -(-n_tokens // _CHUNK_TOKENS)
    # tokens.generate: tokens (float32), clusters, and a trace's rows and their labels (int64).
    size = n_tokens * dim * 4 + n_tokens * 3 * 8
    # kernels/logits.py: the logits (float32).
    size += n_tokens * n_experts * 4
    # kernels/step.py: per assignment an index, a weight, a keep flag; per chunk and expert the
    # counts; kernels/capacity.py: the chunk offsets, each expert's slots (token and k) and its
    # sort keys and order.
    size += n_tokens * top_k * (8 + 4 + 1) + n_chunks * n_experts * 8
    if scenario.router.algorithm == "noisy_top_k":
        # kernels/noisy.py: the noise logits x W_noise and the noisy logits H (float32).
        size += 2 * n_tokens * n_experts * 4
    # The loop's names keep the previous step's tokens, logits and routing alive while the next
    # step's are made: two of each at the peak.
    size *= 2
    if scenario.capacity.factor is not None:
        size += n_chunks * n_experts * 8 + n_tokens * top_k * (16 + 16)
    # engine/recorder.py FidelityProbe: the first tokens routed again without the bias.
    fidelity_tokens = min(n_tokens, _FIDELITY_TOKENS)
    size += fidelity_tokens * top_k * 12 + (-(-fidelity_tokens // _CHUNK_TOKENS)) * n_experts * 8
    # Per-thread scratch of the kernels (a few per-expert and per-group vectors each).
    size += _threads() * n_experts * 128
    if scenario.learning.enabled:
        size += _learning_step_bytes(scenario, dim, n_chunks)
    return size + _layers_step_bytes(scenario, dim, n_chunks)


def _layers_step_bytes(scenario: Scenario, dim: int, n_chunks: int) -> int:
    """What more layers add to a step: engine/paths.py's next inputs (the moved tokens, the
    noise, the tokens' scale in float64, for the batch and the held-out batch: stream version
    1's NumPy update, an upper bound for version 2's kernel, which writes the next inputs only),
    each further layer's learning sums kept between steps, engine/layers.py's co-routing pairs."""
    extra_layers = _moe_layers(scenario) - 1
    if extra_layers <= 0:
        return 0
    n_tokens = scenario.tokens.tokens_per_step
    n_eval = scenario.learning.eval_tokens if scenario.learning.enabled else 0
    size = (n_tokens + n_eval) * (dim * (4 + 4 + 8) + 8)
    if scenario.learning.enabled:
        size += extra_layers * (2 * n_chunks * scenario.router.experts * dim * 8 + n_chunks * 8)
    pairs = _CO_ROUTING_TOKENS * (_CO_ROUTING_TOKENS - 1) // 2
    size += _CO_ROUTING_TOKENS * (scenario.router.experts + _CO_ROUTING_TOKENS) * 4 + 4 * pairs
    return size


def _moe_layers(scenario: Scenario) -> int:
    """Layers with a router (each holds its own router, counters and records)."""
    return len(moe_layer_numbers(scenario))


def _learning_step_bytes(scenario: Scenario, dim: int, n_chunks: int) -> int:
    """engine/learner.py, kernels/learning.py and kernels/rewards.py: one learning step's arrays."""
    tokens, n_experts, top_k = scenario.tokens, scenario.router.experts, scenario.router.top_k
    n_tokens = tokens.tokens_per_step
    # Rewards, and at a recorded step the weights as float64 and their products; best rewards.
    size = n_tokens * top_k * 3 * 8 + n_tokens * 2 * 8
    aux_terms = len(scenario.balance.aux.terms())
    if aux_terms:
        # Per-sequence counts and affinity sums, the coefficients, each term's fractions and the
        # products of the measured losses (all sequences x experts, 8 bytes).
        n_sequences = -(-n_tokens // tokens.seq_len)
        size += n_sequences * n_experts * 8 * (6 + 2 * aux_terms)
    # Per-chunk gradient and specialty-direction sums (kept between steps).
    size += 2 * n_chunks * n_experts * dim * 8 + n_chunks * 8
    if scenario.router.algorithm == "noisy_top_k":
        # kernels/noisy.py: the per-chunk gradient of W_noise, per-chunk importance and load;
        # W_noise's summed gradient and optimizer step as for the centroids below.
        size += n_chunks * n_experts * (dim + 2) * 8 + n_experts * dim * (8 + 8 + 4 + 6 * 8)
    # Experts x dim: the summed gradient, its scaled copy (float64, then float32), the specialty
    # update (sums, mean direction, update, norms) and AdamW's step (kernels/optimizer.py:
    # the float64 copy, the bias-corrected moments, their root, the step).
    size += n_experts * dim * (8 + 8 + 4 + 4 * 8 + 6 * 8)
    # engine/learner.py held_out_loss, at a recorded step: a held-out batch routed without
    # drops (tokens, logits, assignments, and per-assignment rewards and losses in float64).
    n_eval = scenario.learning.eval_tokens
    eval_chunks = -(-n_eval // _CHUNK_TOKENS)
    size += n_eval * (dim * 4 + n_experts * 4 + top_k * (8 + 4 + 1 + 3 * 8) + 4 * 8)
    size += eval_chunks * n_experts * 8
    return size


def _router_bytes(scenario: Scenario, dim: int) -> int:
    """engine/router.py: the centroids (float32), drawn in float64; the reward model's
    specialty directions (float64), drawn and normalised."""
    size = scenario.router.experts * dim * (4 + 8 + 8)
    if scenario.router.algorithm == "noisy_top_k":
        # engine/router.py NoisyGate: W_noise (float32), drawn in float64; AdamW's moments.
        size += scenario.router.experts * dim * (4 + 8 + 2 * 8 * scenario.learning.enabled)
    if scenario.learning.enabled:
        # The specialty directions, drawn and normalised; AdamW's two moments (float64).
        size += scenario.router.experts * dim * (3 * 8 + 2 * 8)
    return size


def _clusters_bytes(scenario: Scenario, dim: int) -> int:
    """tokens.make_stream: the cluster means (float64, drawn then scaled); engine/recorder.py:
    the clusters x experts table and the specialization computed from it."""
    n_clusters = scenario.tokens.clusters
    # Learning's held-out stream is a copy of the stream (engine/learner.py): its means too.
    copies = 2 + scenario.learning.enabled
    means = n_clusters * dim * 8 * copies if scenario.tokens.source == "clusters" else 0
    return means + n_clusters * 8 * 4 + n_clusters * scenario.router.experts * _JOINT_BYTES


def _records_bytes(scenario: Scenario) -> int:
    """engine/recorder.py and results/folder.py: every variant's records, kept until the end.

    Per record: loads, demand (int64) and bias (float32) per expert, and a history row. The
    variant running holds its own and, when it ends, the copies it returns; writing the
    folder holds the compressed arrays once more.
    """
    records = -(-scenario.steps // record_every_for(scenario))
    per_record = scenario.router.experts * (8 + 8 + 4) + _HISTORY_BYTES
    n_variants = max(1, len(scenario.variants))
    return records * per_record * (2 * n_variants + 1)


def estimated_memory(scenario: Scenario, trace_shape: tuple[int, int] | None = None) -> dict:
    """Bytes a run of ``scenario`` holds at its peak, by what holds them (an upper estimate).

    Parameters
    ----------
    scenario : Scenario
        The run (every variant is counted for the records).
    trace_shape : (int, int) or None
        ``(rows, dim)`` of a replayed trace; None for synthetic tokens.

    Returns
    -------
    dict of str to int
        ``step``: one step's arrays (tokens, logits, assignments, capacity, learning's per-token
        and per-chunk arrays, the held-out batch); ``router``: experts x dim (centroids, specialty
        directions, optimizer moments);
        ``clusters``: the cluster means and the clusters x experts table; ``balance``: the
        trailing balance window (steps x experts); ``records``: every variant's recorded
        history and per-expert loads, kept until the end; ``trace``: a replayed trace, held
        whole (read in its own dtype, then converted). :data:`PART_FIXES` says what to change
        for each. Python and Numba themselves come on top (about 0.2 GB).
    """
    dim = trace_shape[1] if trace_shape else scenario.tokens.dim
    # Every MoE layer holds its own router, counters, balance window and records.
    layers = _moe_layers(scenario)
    window = min(scenario.steps, scenario.metrics.balance_window)
    # A trace is read in its own dtype (up to 8 bytes) then converted to float32; learning's
    # held-out stream holds a copy of it (engine/learner.py).
    trace_bytes = 8 + 4 + 4 * scenario.learning.enabled
    trace = trace_shape[0] * (trace_shape[1] * trace_bytes + 2 * 8) if trace_shape else 0
    return {
        "step": _step_bytes(scenario, dim),
        "router": _router_bytes(scenario, dim) * layers,
        "clusters": _clusters_bytes(scenario, dim) * layers,
        "balance": window * scenario.router.experts * 8 * layers,
        "records": _records_bytes(scenario) * layers,
        "trace": trace,
    }


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
