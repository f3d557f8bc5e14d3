"""The closed loop of model.md section 1, one scenario variant at a time.

    tokens X[T,d] -> logits Z = X W^T -> route (scores, bias, groups, top-K) -> capacity
      -> loads and metrics -> bias update -> (router learning)

State is plain arrays (centroids ``W``, bias ``b``, counters). Per-step scalars are recorded
every ``record_every`` steps; per-expert loads are summed over each record window, so memory
grows with the number of records, not of steps.
"""

from __future__ import annotations

import math
import time

import numpy as np

from moesim import tokens as token_stream
from moesim._jit import n_chunks_for
from moesim.kernels.balance import RULE_CODES, _bias_update
from moesim.kernels.capacity import POLICY_CODES, expert_capacity
from moesim.kernels.learning import (
    REWARD_MODELS,
    _aux_counts,
    _router_gradient,
    combined_aux_coefficients,
    reusable_zeros,
)
from moesim.kernels.metrics import (
    _assignment_counts,
    _top_k_overlap,
    load_stats,
    max_vio_noise_floor,
    specialization,
)
from moesim.kernels.routing import (
    RouterSpec,
    _route_chunks,
    resolve_router_spec,
    router_logits,
)
from moesim.kernels.step import NO_CAPACITY, run_routing_step
from moesim.progress import progress_bar
from moesim.results.metrics import HISTORY_COLUMNS
from moesim.results.model import Result, VariantResult
from moesim.scenario import record_every_for

#: Tokens of a recorded step on which routing fidelity is measured.
FIDELITY_TOKENS = 1024


def final_window_for(scenario) -> int:
    """Steps in the final window (``metrics.window`` or the last 10% of the run)."""
    chosen = scenario.metrics.window
    return min(scenario.steps, int(chosen) if chosen else max(1, scenario.steps // 10))


def router_spec_for(scenario) -> RouterSpec:
    router = scenario.router
    return resolve_router_spec(
        router.experts,
        top_k=router.top_k,
        score=router.score,
        n_groups=router.groups,
        topk_groups=router.topk_groups,
        group_score_topk=router.group_score_topk,
        normalize=router.normalize,
        route_scale=router.route_scale,
        has_bias=scenario.balance.bias.enabled,
    )


def bias_rate_at(bias_config, step: int, steps: int) -> float:
    """Bias update rate at ``step`` under the configured schedule (model.md 1.4)."""
    rate = bias_config.rate
    schedule = bias_config.schedule
    if schedule == "freeze":
        return rate if step < bias_config.freeze_at * steps else 0.0
    if schedule == "warmup" and bias_config.warmup_steps > 0:
        return rate * min(1.0, (step + 1) / bias_config.warmup_steps)
    if schedule == "decay" and bias_config.warmup_steps > 0:
        decay_start = steps - bias_config.warmup_steps
        if step >= decay_start:
            return rate * max(0.0, 1.0 - (step - decay_start + 1) / bias_config.warmup_steps)
    return rate


def initial_centroids(router_config, dim: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Router centroids ``W`` (E, d) float32: N(0, 1) * init_scale.

    ``init_skew`` adds a common component to the first 1/16 of the experts (at least one) along
    the mean token direction, so they start with higher logits for every token: the seed of a
    rich-get-richer collapse.
    """
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((router_config.experts, dim)) * router_config.init_scale
    if router_config.init_skew > 0:
        favoured = max(1, router_config.experts // 16)
        direction = rng.standard_normal(dim)
        centroids[:favoured] += router_config.init_skew * direction / np.linalg.norm(direction)
    return centroids.astype(np.float32)


def bias_oscillation(low, high, start, end) -> float:
    """Bias oscillation amplitude over the final window, without its drift (model.md 2).

    Per expert, the range of the bias over the window less the size of its net change,
    ``(max - min) - |end - start|``, averaged over experts. A bias that only moves one way (a
    slow rate still converging) gives 0; one that swings back and forth gives its swings. Needs
    only running extremes and the two end values, not the window's history.

    Parameters
    ----------
    low, high : ndarray (E,)
        Smallest and largest bias of each expert over the window.
    start, end : ndarray (E,)
        Bias at the window's first and last step.
    """
    # float64: the differences of float32 values are exact, so no expert goes below 0.
    extent = np.asarray(high, np.float64) - np.asarray(low, np.float64)
    net = np.abs(np.asarray(end, np.float64) - np.asarray(start, np.float64))
    return float((extent - net).mean())


def simulate_variant(
    scenario, name: str = "base", *, stream=None, on_step=None, should_stop=None
) -> VariantResult:
    """Run one resolved scenario (no variants) and return its result.

    Parameters
    ----------
    stream : TokenStream, optional
        Token stream to share between variants (common random numbers); made from the
        scenario's seed when omitted.
    on_step : callable(int), optional
        Called with the number of finished steps (progress bars).
    should_stop : callable() -> bool, optional
        Checked every step; a true value (or KeyboardInterrupt) ends the run early and the
        result is marked partial.
    """
    started = time.perf_counter()
    tokens_seed, init_seed, learning_seed = np.random.SeedSequence(scenario.seed).spawn(3)
    if stream is None:
        stream = token_stream.make_stream(scenario.tokens, tokens_seed)
    router = scenario.router
    bias_config = scenario.balance.bias
    n_tokens = scenario.tokens.tokens_per_step
    n_experts = router.experts
    steps = scenario.steps
    spec = router_spec_for(scenario)
    has_bias = bool(bias_config.enabled)
    capacity_factor = scenario.capacity.factor
    capacity = (
        NO_CAPACITY
        if capacity_factor is None
        else expert_capacity(n_tokens, spec.top_k, n_experts, capacity_factor)
    )
    policy_code = POLICY_CODES[scenario.capacity.policy]
    rule_code = RULE_CODES[bias_config.rule]
    metrics_config = scenario.metrics

    centroids = initial_centroids(router, stream.dim, init_seed)
    bias = np.zeros(n_experts, dtype=np.float32)
    n_clusters = stream.base_weights.shape[0]

    record_every = record_every_for(scenario)
    window = final_window_for(scenario)
    window_start = steps - window
    n_records = math.ceil(steps / record_every)
    history = {name_: np.full(n_records, np.nan) for name_ in HISTORY_COLUMNS}
    record_loads = np.zeros((n_records, n_experts), dtype=np.int64)
    record_demand = np.zeros((n_records, n_experts), dtype=np.int64)
    record_bias = np.zeros((n_records, n_experts), dtype=np.float32)

    bias_window_counts = np.zeros(n_experts, dtype=np.int64)
    joint = np.zeros((n_clusters, n_experts), dtype=np.int64)
    final_loads = np.zeros(n_experts, dtype=np.int64)
    # Bias oscillation in the final window: per expert, the range of the bias less its net
    # change, so a bias still drifting one way counts as drift, not oscillation.
    bias_low = np.full(n_experts, np.inf)
    bias_high = np.full(n_experts, -np.inf)
    bias_window_start = np.zeros(n_experts, dtype=np.float32)
    window_loads = np.zeros(n_experts, dtype=np.int64)
    window_kept = np.zeros(n_experts, dtype=np.int64)
    window_drops = np.zeros(3, dtype=np.int64)  # assignments, tokens with any, fully dropped
    run_drops = np.zeros(3, dtype=np.int64)
    final_drops = np.zeros(3, dtype=np.int64)
    sum_max_vio = 0.0
    sum_max_vio_final = 0.0
    final_max_vio_steps = 0
    last_unbalanced = -1
    noise_floor = max_vio_noise_floor(n_tokens, spec.top_k, n_experts)
    threshold = metrics_config.balance_threshold
    # Balance is judged on loads summed over a short trailing window: one batch's MaxVio has a
    # sampling floor (and sequences make it larger), which a threshold should not chase.
    balance_window = min(steps, metrics_config.balance_window)
    trailing = np.zeros((balance_window, n_experts), dtype=np.int64)
    trailing_sum = np.zeros(n_experts, dtype=np.int64)
    # Fidelity is measured on the first tokens of a recorded step: 1024 tokens pin the
    # overlap to about 1%, without routing the whole batch twice.
    fidelity_tokens = min(n_tokens, FIDELITY_TOKENS)
    unbiased_indices = np.empty((fidelity_tokens, spec.top_k), dtype=np.int64)
    unbiased_weights = np.empty((fidelity_tokens, spec.top_k), dtype=np.float32)
    fidelity_chunk_counts = np.zeros((n_chunks_for(fidelity_tokens), n_experts), dtype=np.int64)
    learner = RouterLearner(scenario, spec, stream.dim, learning_seed)
    records_done = 0
    steps_done = 0
    partial = False
    try:
        for step in range(steps):
            if should_stop is not None and should_stop():
                partial = True
                break
            x, clusters = token_stream.generate(stream, step, n_tokens)
            logits = router_logits(x, centroids)
            routed = run_routing_step(logits, bias, has_bias, spec, capacity, policy_code)
            demand, kept = routed.demand, routed.kept
            any_dropped, all_dropped = _assignment_counts(
                routed.indices, routed.keep, clusters, joint
            )
            drops = np.array([demand.sum() - kept.sum(), any_dropped, all_dropped], dtype=np.int64)
            window_drops += drops
            run_drops += drops
            window_loads += demand
            window_kept += kept
            mean_load = n_tokens * spec.top_k / n_experts
            max_vio = demand.max() / mean_load - 1.0
            sum_max_vio += max_vio
            slot = step % balance_window
            trailing_sum += demand - trailing[slot]
            trailing[slot] = demand
            trailing_max_vio = trailing_sum.max() / trailing_sum.mean() - 1.0
            if step + 1 < balance_window or trailing_max_vio >= threshold:
                last_unbalanced = step
            if step >= window_start:
                final_loads += demand
                final_drops += drops
                sum_max_vio_final += max_vio
                final_max_vio_steps += 1

            # Loss-free balancing: counts over the update window, then one bias update.
            if has_bias:
                bias_window_counts += kept if bias_config.counts == "kept" else demand
                if (step + 1) % bias_config.every == 0:
                    rate = bias_rate_at(bias_config, step, steps)
                    if rate > 0:
                        _bias_update(
                            bias, bias_window_counts, rate, rule_code, bias_config.center, bias
                        )
                    bias_window_counts[:] = 0
                if step == window_start:
                    bias_window_start[:] = bias
                if step >= window_start:
                    np.minimum(bias_low, bias, out=bias_low)
                    np.maximum(bias_high, bias, out=bias_high)

            is_record = (step + 1) % record_every == 0 or step == steps - 1
            learned = learner.step(x, logits, routed, centroids, step, measure=is_record)

            if is_record:
                r = records_done
                for key, value in learned.items():
                    history[key][r] = value
                stats = load_stats(demand, metrics_config.starved_fraction)
                row = history
                row["step"][r] = step
                row["max_vio_batch"][r] = max_vio
                row["max_vio_window"][r] = window_loads.max() / window_loads.mean() - 1.0
                for key in ("cv", "entropy", "gini", "starved", "top10_share"):
                    row[key][r] = stats[key]
                row["max_vio_batch_kept"][r] = kept.max() / mean_load - 1.0
                window_steps = step + 1 - (r * record_every)
                row["drop_rate"][r] = window_drops[0] / (window_steps * n_tokens * spec.top_k)
                row["token_drop_rate"][r] = window_drops[1] / (window_steps * n_tokens)
                row["fully_dropped_rate"][r] = window_drops[2] / (window_steps * n_tokens)
                if capacity != NO_CAPACITY and scenario.capacity.pad_to_capacity:
                    slots = window_steps * n_experts * capacity
                    row["padding_waste"][r] = 1.0 - window_kept.sum() / slots
                else:
                    row["padding_waste"][r] = 0.0
                row["bias_min"][r] = bias.min()
                row["bias_mean"][r] = bias.mean()
                row["bias_max"][r] = bias.max()
                if has_bias and metrics_config.fidelity:
                    if unbiased_weights.dtype != logits.dtype:
                        unbiased_weights = unbiased_weights.astype(logits.dtype)
                    # The same router without the bias: what the scores alone would choose.
                    fidelity_chunk_counts[:] = 0
                    _route_chunks(
                        logits[:fidelity_tokens],
                        bias,
                        False,
                        spec,
                        unbiased_indices,
                        unbiased_weights,
                        fidelity_chunk_counts,
                    )
                    row["fidelity"][r] = _top_k_overlap(
                        routed.indices[:fidelity_tokens], unbiased_indices, n_experts
                    )
                else:
                    row["fidelity"][r] = 1.0
                row["specialization"][r] = specialization(joint) if n_clusters > 1 else np.nan
                record_loads[r] = window_kept
                record_demand[r] = window_loads
                record_bias[r] = bias
                records_done += 1
                window_loads[:] = 0
                window_kept[:] = 0
                window_drops[:] = 0
                joint[:] = 0
            steps_done = step + 1
            if on_step is not None:
                on_step(steps_done)
    except KeyboardInterrupt:
        partial = True

    history = {key: values[:records_done].copy() for key, values in history.items()}
    final_steps = steps_done - window_start
    if final_steps <= 0:
        # Interrupted before the final window: use the steps not yet recorded plus the last
        # recorded windows instead.
        last_records = max(1, math.ceil(window / record_every))
        final_loads = record_demand[:records_done][-last_records:].sum(axis=0) + window_loads
        final_steps = min(records_done, last_records) * record_every + (
            steps_done - records_done * record_every
        )
    summary = summarize(
        scenario,
        name=name,
        steps_done=steps_done,
        partial=partial or steps_done < steps,
        history=history,
        final_loads=final_loads,
        final_window_steps=final_steps,
        sum_max_vio=sum_max_vio,
        sum_max_vio_final=sum_max_vio_final,
        final_max_vio_steps=final_max_vio_steps,
        run_drops=run_drops,
        final_drops=final_drops,
        last_unbalanced=last_unbalanced,
        threshold=threshold,
        balance_window=balance_window,
        noise_floor=noise_floor,
        oscillation=(
            bias_oscillation(bias_low, bias_high, bias_window_start, bias)
            if has_bias and steps_done > window_start
            else None
        ),
        seconds=time.perf_counter() - started,
        spec=spec,
        capacity=capacity,
    )
    return VariantResult(
        name=name,
        scenario=scenario,
        summary=summary,
        history=history,
        loads=record_loads[:records_done].copy(),
        demand=record_demand[:records_done].copy(),
        bias=record_bias[:records_done].copy(),
        final_loads=final_loads,
        final_bias=bias.copy(),
        partial=summary["partial"],
    )


class RouterLearner:
    """Router learning state and step (model.md 1.5-1.6); inert when ``learning.enabled`` is off.

    Holds the reward model and the aux-loss window counts; ``step`` updates the centroids in
    place and returns the quality / loss measurements of the step when asked to.
    """

    def __init__(self, scenario, spec: RouterSpec, dim: int, seed: np.random.SeedSequence):
        self.enabled = bool(scenario.learning.enabled)
        self.spec = spec
        self.learning = scenario.learning
        self.aux_terms = scenario.balance.aux.terms()
        self.global_aux = any(kind == "global" for kind, _ in self.aux_terms)
        self.z_loss = float(scenario.balance.aux.z_loss)
        self.seq_len = scenario.tokens.seq_len
        self.window = scenario.balance.bias.every
        n_experts = scenario.router.experts
        from moesim.kernels.routing import SCORE_SIGMOID, SCORE_SOFTMAX

        # Aux affinities: normalised sigmoid for sigmoid routers, else softmax over all experts.
        self.aux_score_code = SCORE_SIGMOID if spec.score_code == SCORE_SIGMOID else SCORE_SOFTMAX
        self.window_counts = np.zeros(n_experts, dtype=np.int64)
        self.window_tokens = 0
        self._chunk_gradients: np.ndarray | None = None  # kept between steps (reusable_zeros)
        if self.enabled:
            model = REWARD_MODELS[self.learning.reward]
            self.reward = model.from_config(
                n_experts, dim, self.learning, np.random.default_rng(seed)
            )

    def step(self, tokens, logits, routed, centroids, step: int, *, measure: bool) -> dict:
        """One gradient-ascent step on ``J = R - L_aux - L_z``; updates ``centroids`` in place."""
        if not self.enabled:
            return {}
        n_tokens, n_experts = logits.shape
        spec = self.spec
        rewards = self.reward.rewards(tokens, routed.indices, routed.keep)
        measured = {}
        if measure:
            weight_sums = routed.weights.astype(np.float64).sum(axis=1)
            per_token = (routed.weights * rewards).sum(axis=1) / np.maximum(weight_sums, 1e-30)
            quality = float(per_token.mean())
            best = float(self.reward.best(tokens).mean())
            measured = {"quality": quality, "quality_ratio": quality / best if best > 0 else np.nan}
        coefficients = np.empty((0, n_experts))
        if self.aux_terms:
            n_sequences = -(-n_tokens // self.seq_len)
            counts = np.zeros((n_sequences, n_experts), dtype=np.int64)
            affinity_sums = np.zeros((n_sequences, n_experts))
            _aux_counts(
                logits, self.aux_score_code, spec.top_k, self.seq_len, counts, affinity_sums
            )
            if self.global_aux:
                if step % self.window == 0:
                    self.window_counts[:] = 0
                    self.window_tokens = 0
                self.window_counts += counts.sum(axis=0)
                self.window_tokens += n_tokens
            coefficients, fractions = combined_aux_coefficients(
                self.aux_terms,
                spec.top_k,
                counts,
                n_tokens,
                self.seq_len,
                self.window_counts,
                self.window_tokens,
            )
            if measure:
                total = 0.0
                for (kind, alpha), term_fractions in zip(self.aux_terms, fractions, strict=True):
                    if kind == "sequence":
                        mean_affinity = affinity_sums / self.seq_len
                        loss = (term_fractions * mean_affinity).sum(axis=1).mean()
                    else:
                        loss = (term_fractions[0] * affinity_sums.sum(axis=0) / n_tokens).sum()
                    total += alpha * float(loss)
                measured["aux_loss"] = total
        n_chunks = n_chunks_for(n_tokens)
        chunk_gradients = self._chunk_gradients = reusable_zeros(
            self._chunk_gradients, (n_chunks, n_experts, tokens.shape[1])
        )
        chunk_lse_sq = np.zeros(n_chunks)
        _router_gradient(
            logits,
            tokens,
            routed.indices,
            rewards,
            spec.score_code,
            spec.normalize,
            spec.route_scale,
            self.aux_score_code,
            coefficients,
            self.seq_len,
            self.z_loss,
            chunk_gradients,
            chunk_lse_sq,
        )
        # Chunks are summed in a fixed order: the update does not depend on the thread count.
        gradient = chunk_gradients.sum(axis=0)
        centroids += (self.learning.rate * gradient).astype(np.float32)
        self.reward.observe(tokens, routed.indices, routed.keep, routed.kept)
        if measure and self.z_loss > 0:
            measured["z_loss"] = self.z_loss * float(chunk_lse_sq.sum()) / n_tokens
        return measured


def summarize(
    scenario,
    *,
    name,
    steps_done,
    partial,
    history,
    final_loads,
    final_window_steps,
    sum_max_vio,
    sum_max_vio_final,
    final_max_vio_steps,
    run_drops,
    final_drops,
    last_unbalanced,
    threshold,
    balance_window,
    noise_floor,
    oscillation,
    seconds,
    spec,
    capacity,
) -> dict:
    """Per-run summary (model.md 2): MaxVio_global, balance, drops and a collapse verdict."""
    metrics_config = scenario.metrics
    n_tokens = scenario.tokens.tokens_per_step
    n_experts = scenario.router.experts
    assignments_per_step = n_tokens * spec.top_k
    final_stats = load_stats(final_loads, metrics_config.starved_fraction)
    starved = int(final_stats["starved"]) if np.isfinite(final_stats["starved"]) else 0
    max_vio_global = final_stats["max_vio"]
    nan = float("nan")

    def mean_of(column: str) -> float:
        values = history[column]
        finite = values[np.isfinite(values)]
        return float(finite[-max(1, len(finite) // 10) :].mean()) if len(finite) else nan

    if not steps_done:
        verdict, reason = "no data", "no step finished"
    elif max_vio_global > metrics_config.collapse_max_vio:
        verdict = "collapsed"
        reason = f"MaxVio_global {max_vio_global:.2f} > {metrics_config.collapse_max_vio:g}"
    elif starved > metrics_config.collapse_starved_fraction * n_experts:
        verdict = "collapsed"
        reason = (
            f"{starved} of {n_experts} experts starved "
            f"(> {metrics_config.collapse_starved_fraction:.0%})"
        )
    elif max_vio_global < metrics_config.balanced_max_vio and starved == 0:
        verdict = "balanced"
        reason = (
            f"MaxVio_global {max_vio_global:.3f} < {metrics_config.balanced_max_vio:g} "
            f"(metrics.balanced_max_vio), none starved"
        )
    else:
        verdict = "imbalanced"
        reason = (
            f"MaxVio_global {max_vio_global:.3f}"
            + (
                f" >= {metrics_config.balanced_max_vio:g} (metrics.balanced_max_vio)"
                if max_vio_global >= metrics_config.balanced_max_vio
                else ""
            )
            + f", {starved} starved"
        )
    balanced_from = last_unbalanced + 1
    steps_to_balance = balanced_from if steps_done and balanced_from < steps_done else None
    if verdict == "imbalanced" and steps_to_balance is not None:
        # Two different bars: say why "balanced at step N" and "imbalanced" do not contradict.
        reason += (
            f"; balanced from step {steps_to_balance} by the looser steps-to-balance bar "
            f"(MaxVio of the trailing {balance_window} steps < {threshold:g}, "
            f"metrics.balance_threshold)"
        )
    return {
        "variant": name,
        "steps": scenario.steps,
        "steps_done": steps_done,
        "partial": bool(partial),
        "max_vio_global": max_vio_global,
        "mean_max_vio_batch": sum_max_vio / steps_done if steps_done else nan,
        # A run stopped before its final window has no step there: fall back on the records.
        "final_max_vio_batch": (
            sum_max_vio_final / final_max_vio_steps
            if final_max_vio_steps
            else mean_of("max_vio_batch")
        ),
        "max_vio_noise_floor": noise_floor,
        "cv": final_stats["cv"],
        "entropy": final_stats["entropy"],
        "gini": final_stats["gini"],
        "starved": starved,
        "top10_share": final_stats["top10_share"],
        "drop_rate": run_drops[0] / (steps_done * assignments_per_step) if steps_done else nan,
        "token_drop_rate": run_drops[1] / (steps_done * n_tokens) if steps_done else nan,
        "fully_dropped_rate": run_drops[2] / (steps_done * n_tokens) if steps_done else nan,
        "final_drop_rate": (
            final_drops[0] / (final_window_steps * assignments_per_step)
            if final_window_steps
            else nan
        ),
        "capacity": None if capacity < 0 else int(capacity),
        "steps_to_balance": steps_to_balance,
        "balance_threshold": threshold,
        "balance_window": int(balance_window),
        "bias_oscillation": oscillation if oscillation is not None else nan,
        "fidelity": mean_of("fidelity"),
        "specialization": mean_of("specialization"),
        "quality": mean_of("quality"),
        "quality_ratio": mean_of("quality_ratio"),
        "final_window_steps": int(final_window_steps),
        "verdict": verdict,
        "verdict_reason": reason,
        "seconds": seconds,
        "steps_per_second": steps_done / seconds if seconds > 0 else nan,
    }


def simulate(scenario, *, progress: bool = False, on_variant=None, should_stop=None) -> Result:
    """Run every variant of a scenario on one shared token stream.

    Parameters
    ----------
    scenario : Scenario, dict or path
        Anything :func:`moesim.load_scenario` accepts.
    progress : bool
        Show a rich progress bar per variant.
    on_variant : callable(Result), optional
        Called after each variant finishes (the CLI saves results there, so an interrupted run
        keeps the variants it finished).
    should_stop : callable() -> bool, optional
        Polled every step; see :func:`simulate_variant`.

    Returns
    -------
    Result
        ``.summary`` (per variant) and ``.history`` (tidy columns), plus per-expert arrays.
    """
    from moesim.scenario import expand_variants, load_scenario

    scenario = load_scenario(scenario)
    variants = expand_variants(scenario)
    result = Result(scenario=scenario)
    with progress_bar(progress) as bar:
        for name, variant in variants:
            # Every variant's stream comes from the scenario's one seed, so variants with the
            # same tokens config see the same tokens (common random numbers).
            task = bar.add_task(name, total=variant.steps) if bar is not None else None

            def on_step(done, task=task):
                if bar is not None:
                    bar.update(task, completed=done)

            try:
                outcome = simulate_variant(variant, name, on_step=on_step, should_stop=should_stop)
            except KeyboardInterrupt:
                result.partial = True
                break
            result.variants.append(outcome)
            if outcome.partial:
                result.partial = True
            if on_variant is not None:
                on_variant(result)
            if outcome.partial:
                break
    return result
