"""Section 2, the full step against its BLAS matmuls.

A full simulated step (tokens -> logits -> route -> capacity -> bias -> metrics, learning off and
on) of a DeepSeek-V3-like scenario, against the matmuls the step contains: ``X @ W.T`` (T×d by
d×E) and, with learning, the gradient ``G.T @ X`` (NumPy, float32). The three biggest pieces of a
step are also timed alone, on the same shapes.
"""

from __future__ import annotations

import numpy as np

from moesim.bench.common import DEEPSEEK_V3_EXPERTS, step_scenario, summarize_samples, time_call

#: Width of the token vectors (``tokens.dim`` of :func:`step_scenario`).
STEP_DIM = 64


def time_steps(scenario_dict: dict, *, repeats: int, marginal: bool = False) -> dict:
    """Seconds per step of ``simulate_variant`` (median over repeats; one warm-up run).

    With ``marginal``, the cost of a step once the run is built: each sample is a run of the
    scenario's steps minus a one-step run, over the steps between. Building a run (every
    layer's centroids, learner, recorder and first arrays) is otherwise counted as stepping,
    which at a few steps of many layers is most of the time measured.
    """
    from moesim.engine import simulate_variant
    from moesim.scenario import load_scenario

    scenario = load_scenario(scenario_dict)
    one_step = load_scenario({**scenario_dict, "steps": 1})
    simulate_variant(load_scenario({**scenario_dict, "steps": 2}))  # warm-up: compile, caches
    steps = scenario.steps
    if not marginal or steps < 2:
        timing = time_call(lambda: simulate_variant(scenario), repeats=repeats, warmup=0)
        return {"median": timing["median"] / steps, "iqr": timing["iqr"] / steps,
                "repeats": repeats}  # fmt: skip
    samples = []
    for _ in range(repeats):
        built = time_call(lambda: simulate_variant(one_step), repeats=1, warmup=0)["median"]
        whole = time_call(lambda: simulate_variant(scenario), repeats=1, warmup=0)["median"]
        # At tiny sizes the difference can drown in noise: then the plain mean over the run.
        samples.append((whole - built) / (steps - 1) if whole > built else whole / steps)
    return summarize_samples(samples)


def bench_step(n_tokens: int, *, steps: int, repeats: int) -> dict:
    """Section 2: a step, learning off and on, against ``X @ W.T`` and ``G.T @ X`` (float32)."""
    many = max(20, 4 * repeats)  # the matmuls and pieces are short: more samples, same cost
    result = {
        "tokens": n_tokens,
        "experts": DEEPSEEK_V3_EXPERTS,
        "dim": STEP_DIM,
        **time_blas(n_tokens, repeats=many),
    }
    for learning in (False, True):
        scenario = step_scenario(
            tokens_per_step=n_tokens, learning=learning, steps=steps, record_every=steps
        )
        result["learning_on" if learning else "learning_off"] = time_steps(
            scenario, repeats=repeats
        )
    result["pieces"] = time_step_pieces(n_tokens, repeats=many)
    return result


def time_blas(n_tokens: int, *, repeats: int) -> dict:
    """``{"blas_logits", "blas_gradient"}``: ``X @ W.T`` and ``G.T @ X`` on random float32
    matrices of the step's shapes (X (T, d), W (E, d), G (T, E))."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((n_tokens, STEP_DIM)).astype(np.float32)
    w = rng.standard_normal((DEEPSEEK_V3_EXPERTS, STEP_DIM)).astype(np.float32)
    g = rng.standard_normal((n_tokens, DEEPSEEK_V3_EXPERTS)).astype(np.float32)
    return {
        "blas_logits": time_call(lambda: x @ w.T, repeats=repeats, warmup=3),
        "blas_gradient": time_call(lambda: g.T @ x, repeats=repeats, warmup=3),
    }


def time_step_pieces(n_tokens: int, *, repeats: int) -> dict:
    """Where a step's time goes: token generation, logits and the routing step, timed alone on
    the inputs a step of :func:`step_scenario` gives them."""
    from moesim import tokens as token_stream
    from moesim.engine import initial_centroids, router_spec_for
    from moesim.kernels.capacity import POLICY_CODES, expert_capacity
    from moesim.kernels.routing import router_logits
    from moesim.kernels.step import run_routing_step
    from moesim.scenario import load_scenario

    scenario = load_scenario(step_scenario(tokens_per_step=n_tokens))
    n_experts = scenario.router.experts
    stream = token_stream.make_stream(scenario.tokens, np.random.SeedSequence(0))
    centroids = initial_centroids(scenario.router, STEP_DIM, np.random.SeedSequence(1))
    spec = router_spec_for(scenario)
    capacity = expert_capacity(n_tokens, spec.top_k, n_experts, scenario.capacity.factor)
    tokens, _ = token_stream.generate(stream, 0, n_tokens)
    logits = router_logits(tokens, centroids)
    bias = np.zeros(n_experts, dtype=np.float32)
    return {
        "tokens": time_call(
            lambda: token_stream.generate(stream, 0, n_tokens), repeats=repeats, warmup=2
        ),
        "logits": time_call(lambda: router_logits(tokens, centroids), repeats=repeats, warmup=2),
        "routing_step": time_call(
            lambda: run_routing_step(logits, bias, True, spec, capacity, POLICY_CODES["probs"]),
            repeats=repeats,
            warmup=2,
        ),
    }
