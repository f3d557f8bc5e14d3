"""Router learning (docs/model.md §5): the reward model, auxiliary losses and z-loss, as one
gradient step on the router's centroids per routed step."""

from __future__ import annotations

import numpy as np

from moesim._jit import n_chunks_for
from moesim.kernels.learning import (
    REWARD_MODELS,
    _aux_counts,
    _router_gradient,
    combined_aux_coefficients,
    reusable_zeros,
)
from moesim.kernels.routing import RouterSpec


class RouterLearner:
    """Router learning state and step (docs/model.md §5); inert when ``learning.enabled`` is off.

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
