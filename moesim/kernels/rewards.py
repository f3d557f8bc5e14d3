"""What the router learns from (docs/model.md §5, §5.1): the reward and loss models.

A model turns a step's routing into a reward per assignment (``R``'s ``r_tk``, or minus a loss's
derivative with respect to the gate weight), knows the best any routing could earn, and learns
from the tokens its experts were given. :data:`REWARD_MODELS` maps the names ``learning.reward``
takes to the classes; the gradients with respect to the logits are in
:mod:`moesim.kernels.learning`.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from numba import prange

from moesim._jit import CHUNK_TOKENS, n_chunks_for, njit, njit_parallel
from moesim.kernels.learning import reusable_zeros
from moesim.kernels.numerics import NORM_EPS


@njit
def _token_norm(tokens, t):
    """Euclidean norm of token ``t`` (float64), guarded away from zero."""
    total = 0.0
    for j in range(tokens.shape[1]):
        total += np.float64(tokens[t, j]) ** 2
    return math.sqrt(total) + NORM_EPS


#: How a token matches an expert (``kind`` of the kernels below): the reward of moesim 0.1's
#: model, ``competence * (1 + cos) / 2`` (docs/model.md §5), or the calibrated loss model's
#: ``competence * max(0, cos)`` against the expert's knowledge (§5.1).
AFFINITY, CAPACITY = 0, 1


@njit
def _match(kind, tokens, t, norm, competence, knowledge, e):
    """Token ``t``'s match with expert ``e``: ``c_e (1 + <x_t, m_e> / |x_t|) / 2`` (AFFINITY,
    ``m_e`` of unit norm) or ``c_e max(0, <x_t, k_e> / |x_t|)`` (CAPACITY, ``|k_e| <= 1``)."""
    dot = 0.0
    for j in range(tokens.shape[1]):
        dot += np.float64(tokens[t, j]) * knowledge[e, j]
    if kind == AFFINITY:
        return competence[e] * 0.5 * (1.0 + dot / norm)
    return competence[e] * max(0.0, dot / norm)


@njit_parallel
def _assignment_rewards(kind, scale, tokens, indices, keep, competence, knowledge, rewards):
    """``rewards[t, k] = scale * match(t, i_tk)`` for kept assignments, else 0 (a dropped one
    earns nothing)."""
    n_tokens, top_k = indices.shape
    for c in prange((n_tokens + CHUNK_TOKENS - 1) // CHUNK_TOKENS):
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            norm = _token_norm(tokens, t)
            for k in range(top_k):
                if keep[t, k]:
                    e = indices[t, k]
                    rewards[t, k] = scale * _match(kind, tokens, t, norm, competence, knowledge, e)
                else:
                    rewards[t, k] = 0.0


@njit_parallel
def _best_rewards(kind, scale, tokens, competence, knowledge, best):
    """``best[t] = scale * max_e match(t, e)``: the reward of token ``t``'s best single expert at
    full weight.

    The gate-weighted mean reward of the chosen experts cannot exceed it, so quality / best is
    in [0, 1]: 1 means the router sends each token's whole gate weight to its best expert.
    """
    n_tokens = tokens.shape[0]
    n_experts = competence.shape[0]
    for c in prange((n_tokens + CHUNK_TOKENS - 1) // CHUNK_TOKENS):
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            norm = _token_norm(tokens, t)
            highest = 0.0
            for e in range(n_experts):
                highest = max(highest, _match(kind, tokens, t, norm, competence, knowledge, e))
            best[t] = scale * highest


@njit_parallel
def _token_direction_sums(tokens, indices, keep, chunk_sums):
    """``chunk_sums[c, e]``: sum of unit token directions kept by expert ``e`` in chunk ``c``."""
    n_tokens, top_k = indices.shape
    dim = tokens.shape[1]
    for c in prange(chunk_sums.shape[0]):
        for t in range(c * CHUNK_TOKENS, min(n_tokens, (c + 1) * CHUNK_TOKENS)):
            norm = _token_norm(tokens, t)
            for k in range(top_k):
                if keep[t, k]:
                    e = indices[t, k]
                    for j in range(dim):
                        chunk_sums[c, e, j] += tokens[t, j] / norm


class RewardModel(Protocol):
    """What the router learns from (docs/model.md §5): register an implementation in
    :data:`REWARD_MODELS` under the name ``learning.reward`` selects.

    Rewards are per assignment, 0 for dropped ones; ``best`` bounds the gate-weighted mean
    reward of any routing of a token (the denominator of the quality ratio).
    """

    @classmethod
    def from_config(
        cls, n_experts: int, dim: int, learning, rng: np.random.Generator
    ) -> RewardModel:
        """A fresh model for ``n_experts`` experts and tokens of dimension ``dim``.

        ``learning`` is the scenario's ``LearningConfig``; ``rng`` is the reward model's own
        stream (docs/model.md §1, "Randomness").
        """
        ...

    def rewards(self, tokens, indices, keep) -> np.ndarray:
        """``r`` (T, K) float64 for tokens (T, d), chosen ``indices`` (T, K), ``keep`` (T, K)."""
        ...

    def best(self, tokens) -> np.ndarray:
        """(T,) float64: the largest reward any expert would earn for each token."""
        ...

    def observe(self, tokens, indices, keep, kept_counts) -> None:
        """Learn from the step's kept assignments; ``kept_counts`` (E,) int64."""
        ...


class _ExpertMemory:
    """What both models remember of each expert: the tokens it was trained on (its competence)
    and its knowledge, an EMA (rate ``knowledge_ema``) of the unit directions of its kept tokens.
    """

    #: Norm of an untrained expert's random knowledge direction.
    INITIAL_KNOWLEDGE = 1.0
    #: How a token matches an expert (:data:`AFFINITY` or :data:`CAPACITY`).
    MATCH = AFFINITY
    #: Rewards are ``reward_scale * match``.
    reward_scale = 1.0

    def __init__(
        self,
        n_experts: int,
        dim: int,
        competence_tokens: float,
        knowledge_ema: float,
        rng: np.random.Generator,
    ):
        self.competence_tokens = float(competence_tokens)
        self.knowledge_ema = float(knowledge_ema)
        self.processed = np.zeros(n_experts, dtype=np.float64)
        self._chunk_sums: np.ndarray | None = None  # observe's scratch, kept between steps
        knowledge = rng.standard_normal((n_experts, dim))
        self.knowledge = (
            self.INITIAL_KNOWLEDGE * knowledge / np.linalg.norm(knowledge, axis=1, keepdims=True)
        )

    def rewards(self, tokens, indices, keep) -> np.ndarray:
        out = np.empty(indices.shape, dtype=np.float64)
        _assignment_rewards(self.MATCH, self.reward_scale, tokens, indices, keep,
                            self.competence, self.knowledge, out)  # fmt: skip
        return out

    def best(self, tokens) -> np.ndarray:
        out = np.empty(tokens.shape[0], dtype=np.float64)
        _best_rewards(self.MATCH, self.reward_scale, tokens, self.competence, self.knowledge, out)
        return out

    @property
    def competence(self) -> np.ndarray:
        """``1 - exp(-N_i / competence_tokens)`` (E,): grows with the tokens trained on."""
        return -np.expm1(-self.processed / self.competence_tokens)

    def _moved_knowledge(self, tokens, indices, keep, kept_counts):
        """The experts that kept tokens this step (E,) bool, and their knowledge moved toward
        the mean unit direction of those tokens (A, d), not yet stored."""
        n_experts, dim = self.knowledge.shape
        chunk_sums = self._chunk_sums = reusable_zeros(
            self._chunk_sums, (n_chunks_for(tokens.shape[0]), n_experts, dim)
        )
        _token_direction_sums(tokens, indices, keep, chunk_sums)
        sums = chunk_sums.sum(axis=0)
        active = kept_counts > 0
        mean_direction = sums[active] / kept_counts[active, None]
        moved = (1 - self.knowledge_ema) * self.knowledge[active] + (
            self.knowledge_ema * mean_direction
        )
        return active, moved


class CompetenceAffinityReward(_ExpertMemory):
    """docs/model.md §5: ``r_ti = competence_i * affinity_ti`` (a :class:`RewardModel`).

    ``competence_i = 1 - exp(-N_i / competence_tokens)`` with ``N_i`` the tokens expert ``i``
    has processed (rich get richer); ``affinity_ti = (1 + cos(x_t, m_i)) / 2`` with ``m_i`` an
    EMA (rate ``knowledge_ema``) of the unit directions of the tokens it processed.
    """

    @classmethod
    def from_config(cls, n_experts, dim, learning, rng) -> CompetenceAffinityReward:
        return cls(n_experts, dim, learning.competence_tokens, learning.knowledge_ema, rng)

    def observe(self, tokens, indices, keep, kept_counts) -> None:
        active, moved = self._moved_knowledge(tokens, indices, keep, kept_counts)
        norms = np.linalg.norm(moved, axis=1, keepdims=True)
        self.knowledge[active] = moved / np.maximum(norms, NORM_EPS)
        self.processed += kept_counts


# ----------------------------------------------------------------------------------------------
# The loss model in nats: experts of finite capacity (model.md 5.1)


class CapacityNatsLoss(_ExpertMemory):
    """model.md 5.1: the LM loss of the routed mixture in nats, experts of finite capacity.

    A token ``t`` routed to experts ``i_1..i_K`` with gate weights ``w`` (the router's own,
    divided by ``route_scale`` so a normalised gate sums to one) has the loss, in nats above the
    loss of a perfectly served token,

        ``l_t = D * (1 - sum_k w_tk q_{t, i_k})``,  ``q_ti = c_i * max(0, <x_t/|x_t|, k_i>)``,

    * ``D`` (``routing_sensitivity``): how many nats of LM loss routing controls; the fitted
      constant that sets how strongly the LM loss pulls on the router against ``alpha``;
    * ``c_i = 1 - exp(-N_i / competence_tokens)``: competence grows with the tokens an expert
      has been trained on (rich get richer: what makes an unbalanced router collapse);
    * ``k_i``: the expert's knowledge, an EMA (rate ``knowledge_ema``) of the *unnormalised*
      mean unit direction of the tokens it processed, ``|k_i| <= 1``. This is the finite
      capacity: one direction per expert. An expert fed one domain holds that domain's mean
      direction (norm = the domain's concentration); one fed ``n`` unrelated domains holds their
      average, about ``1/sqrt(n)`` as long and pointing at none of them, so its match with a
      token of any one of them falls about as ``1/n``. Collapse (few experts, many domains each)
      and a very strong aux loss (uniform routing: every expert sees every domain) both turn
      experts into generalists and cost nats; the bias only moves borderline tokens.

    The router learns from ``rewards = D q`` (``-dl/dw``) through the existing gate-weight
    gradient; the reported loss is measured on a held-out batch (``RouterLearner``).
    """

    #: Norm of an untrained expert's random knowledge: it knows a little of one random direction.
    INITIAL_KNOWLEDGE = 0.1
    MATCH = CAPACITY

    def __init__(
        self,
        n_experts: int,
        dim: int,
        competence_tokens: float,
        knowledge_ema: float,
        routing_sensitivity: float,
        rng: np.random.Generator,
    ):
        super().__init__(n_experts, dim, competence_tokens, knowledge_ema, rng)
        self.sensitivity = float(routing_sensitivity)
        self.reward_scale = self.sensitivity  # rewards = D q = -dl/dw

    @classmethod
    def from_config(cls, n_experts, dim, learning, rng) -> CapacityNatsLoss:
        return cls(
            n_experts,
            dim,
            learning.competence_tokens,
            learning.knowledge_ema,
            learning.routing_sensitivity,
            rng,
        )

    def token_losses(self, tokens, indices, weights, keep, route_scale: float) -> np.ndarray:
        """``l_t`` (T,) in nats for a routing (``weights`` the router's own gate weights)."""
        rewards = self.rewards(tokens, indices, keep)
        mixture = (weights.astype(np.float64) * rewards).sum(axis=1) / route_scale
        return self.sensitivity - mixture

    def observe(self, tokens, indices, keep, kept_counts) -> None:
        active, moved = self._moved_knowledge(tokens, indices, keep, kept_counts)
        # No renormalisation: the knowledge's length is what the expert can do for each domain.
        self.knowledge[active] = moved
        self.processed += kept_counts


#: Reward models by the name ``learning.reward`` gives; the engine looks the model up here.
#: The scenario schema lists the same names (a test keeps the two in step).
REWARD_MODELS: dict[str, type[RewardModel]] = {
    "competence_affinity": CompetenceAffinityReward,
    "capacity_nats": CapacityNatsLoss,
}
