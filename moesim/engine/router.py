"""The router a scenario describes: its options for the kernels, its capacity and its start.

The one place where the engine turns the scenario's ``router`` section into the kernels'
:class:`RouterSpec` (docs/model.md §2) and its ``capacity`` section into a per-expert capacity
(§3).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels.capacity import expert_capacity
from moesim.kernels.logits import router_logits
from moesim.kernels.noisy import _noisy_logits_chunks
from moesim.kernels.routing import RouterSpec, resolve_router_spec
from moesim.kernels.step import NO_CAPACITY


def router_spec_for(scenario) -> RouterSpec:
    """The routing options of ``scenario``, checked and with the DeepSeek defaults filled in;
    float32 scores from token stream version 2 on (the engine's logits are float32)."""
    router = scenario.router
    normalize = router.normalize
    if router.algorithm in ("expert_choice", "sinkhorn"):
        normalize = False  # their gates are the scores themselves (docs/model.md §2.3-§2.4)
    spec = resolve_router_spec(
        router.experts,
        top_k=router.top_k,
        score=router.score,
        n_groups=router.groups,
        topk_groups=router.topk_groups,
        group_score_topk=router.group_score_topk,
        normalize=normalize,
        route_scale=router.route_scale,
        bias_mode=scenario.balance.bias.mode,
        has_bias=scenario.balance.bias.enabled,
    )
    return spec._replace(float32_scores=scenario.tokens.stream_version >= 2)


def capacity_for(scenario, spec: RouterSpec) -> int:
    """Assignments each expert may keep per step, or ``NO_CAPACITY`` when ``capacity.factor``
    is null (docs/model.md §3)."""
    factor = scenario.capacity.factor
    if factor is None:
        return NO_CAPACITY
    return expert_capacity(
        scenario.tokens.tokens_per_step, spec.top_k, scenario.router.experts, factor
    )


def initial_centroids(router_config, dim: int, seed: np.random.SeedSequence) -> np.ndarray:
    """Router centroids ``W`` (E, d) float32: N(0, 1) * init_scale (docs/model.md §2), or zeros
    with ``zero_init`` (noisy top-K, §2.1).

    ``init_skew`` adds a common component to the first 1/16 of the experts (at least one) along
    the mean token direction, so they start with higher logits for every token: the seed of a
    rich-get-richer collapse.
    """
    if router_config.zero_init:
        # Noisy top-K as Shazeer et al. start it: no signal, only the gate noise.
        return np.zeros((router_config.experts, dim), dtype=np.float32)
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((router_config.experts, dim)) * router_config.init_scale
    if router_config.init_skew > 0:
        favoured = max(1, router_config.experts // 16)
        direction = rng.standard_normal(dim)
        centroids[:favoured] += router_config.init_skew * direction / np.linalg.norm(direction)
    return centroids.astype(np.float32)


class NoisyGate:
    """The noise half of noisy top-K gating (docs/model.md §2.1): ``W_noise`` and the step's
    noisy logits ``H = x W_g + eps * softplus(x W_noise)``.

    ``W_noise`` (E, d) float32 is N(0, 1) * ``init_scale`` from its own seed, or zeros with
    ``router.zero_init``; the noise ``eps`` comes from a stream keyed by the same seed, one per
    step and token (``kernels/noisy.py``). The learner reads ``noise_logits`` and ``noisy`` of
    the last step and updates ``weights`` in place.
    """

    def __init__(self, router_config, dim: int, seed: np.random.SeedSequence):
        weights_seed, key_seed = seed.spawn(2)
        shape = (router_config.experts, dim)
        if router_config.zero_init:
            self.weights = np.zeros(shape, dtype=np.float32)
        else:
            rng = np.random.default_rng(weights_seed)
            self.weights = (rng.standard_normal(shape) * router_config.init_scale).astype(
                np.float32
            )
        self.key = np.uint64(key_seed.generate_state(1, np.uint64)[0])
        self.noise_logits: np.ndarray | None = None
        self.noisy: np.ndarray | None = None

    def noisy_logits(self, tokens: np.ndarray, clean: np.ndarray, step: int) -> np.ndarray:
        """``H`` (T, E) of step ``step``'s tokens (T, d) from their clean logits (T, E)."""
        self.noise_logits = router_logits(tokens, self.weights)
        self.noisy = np.empty_like(clean)
        _noisy_logits_chunks(clean, self.noise_logits, self.key, step, self.noisy)
        return self.noisy


def noisy_gate_for(scenario, dim: int, seed: np.random.SeedSequence) -> NoisyGate | None:
    """The scenario's :class:`NoisyGate`, or None unless ``router.algorithm`` is noisy_top_k."""
    if scenario.router.algorithm != "noisy_top_k":
        return None
    return NoisyGate(scenario.router, dim, seed)
