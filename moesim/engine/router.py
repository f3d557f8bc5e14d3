"""The router a scenario describes: its options for the kernels, its capacity and its start.

The one place where the engine turns the scenario's ``router`` section into the kernels'
:class:`RouterSpec` (docs/model.md §2) and its ``capacity`` section into a per-expert capacity
(§3).
"""

from __future__ import annotations

import numpy as np

from moesim.kernels.capacity import expert_capacity
from moesim.kernels.routing import RouterSpec, resolve_router_spec
from moesim.kernels.step import NO_CAPACITY


def router_spec_for(scenario) -> RouterSpec:
    """The routing options of ``scenario``, checked and with the DeepSeek defaults filled in."""
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
    """Router centroids ``W`` (E, d) float32: N(0, 1) * init_scale (docs/model.md §2).

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
