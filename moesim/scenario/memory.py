"""Memory planning: how often a run records, and how much memory it will hold at its peak.

Used to refuse, at validation, a run that cannot fit in this machine's memory (the check is
in :mod:`moesim.scenario.checks`), and by the engine for the recording interval.
"""

from __future__ import annotations

import math
import os

from moesim.scenario.schema import Scenario


def record_every_for(scenario: Scenario) -> int:
    """Steps between recorded rows (``metrics.record_every`` or about 1000 rows per run)."""
    chosen = scenario.metrics.record_every
    return int(chosen) if chosen else max(1, math.ceil(scenario.steps / 1000))


def estimated_memory(scenario: Scenario, trace_shape: tuple[int, int] | None = None) -> dict:
    """Bytes a run of ``scenario`` holds at its peak, by what holds them (an estimate).

    Parameters
    ----------
    scenario : Scenario
        The run (every variant is counted for the records).
    trace_shape : (int, int) or None
        ``(rows, dim)`` of a replayed trace; None for synthetic tokens.

    Returns
    -------
    dict of str to int
        ``step``: one step's arrays (tokens, logits, assignments, learning's gradient sums);
        ``records``: every variant's recorded history and per-expert loads, kept until the end;
        ``trace``: a replayed trace, held whole. Python and Numba themselves come on top (about
        0.2 GB).
    """
    tokens, router = scenario.tokens, scenario.router
    n_tokens, n_experts, top_k = tokens.tokens_per_step, router.experts, router.top_k
    dim = trace_shape[1] if trace_shape else tokens.dim
    # Work chunks of 256 tokens (moesim._jit.CHUNK_TOKENS; not imported here: it loads Numba).
    n_chunks = -(-n_tokens // 256)
    # tokens, logits, and per assignment: index, weight, keep flag, reward.
    step = n_tokens * dim * 4 + n_tokens * n_experts * 4 + n_tokens * top_k * (8 + 4 + 1 + 8)
    if scenario.learning.enabled:
        # Per-chunk gradient and specialty-direction sums (kept between steps), the best
        # reward per token, and the aux losses' per-sequence counts (int64) and affinity sums.
        n_sequences = -(-n_tokens // tokens.seq_len)
        step += 2 * n_chunks * n_experts * dim * 8 + n_tokens * 8 + n_sequences * n_experts * 16
    records_per_variant = -(-scenario.steps // record_every_for(scenario))
    # Loads, demand (int64) and bias (float32) per expert; the history's 22 float64 columns
    # (results.metrics.HISTORY_COLUMNS), rounded up to 32.
    per_record = n_experts * (8 + 8 + 4) + 8 * 32
    records = records_per_variant * per_record * max(1, len(scenario.variants))
    trace = trace_shape[0] * trace_shape[1] * 4 if trace_shape else 0
    return {"step": step, "records": records, "trace": trace}


def physical_memory() -> int | None:
    """This machine's memory in bytes, or None where the OS does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
