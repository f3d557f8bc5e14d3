"""Router learning (docs/model.md §5): the loss (or reward) model, auxiliary losses and z-loss,
one optimizer step on the router's centroids per routed step, and the held-out measurement."""

from __future__ import annotations

import copy

import numpy as np

from moesim import tokens as token_stream
from moesim._jit import n_chunks_for
from moesim.kernels.learning import (
    _aux_counts,
    _router_gradient,
    combined_aux_coefficients,
    reusable_zeros,
)
from moesim.kernels.logits import router_logits
from moesim.kernels.noisy import _noisy_router_gradient, balance_sums, cv_squared_and_gradient
from moesim.kernels.numerics import NORM_EPS
from moesim.kernels.optimizer import learning_rate_at, make_optimizer
from moesim.kernels.rewards import REWARD_MODELS
from moesim.kernels.routing import SCORE_SIGMOID, SCORE_SOFTMAX, RouterSpec
from moesim.kernels.step import NO_CAPACITY, run_routing_step


class RouterLearner:
    """Router learning state and step (docs/model.md §5); inert when ``learning.enabled`` is off.

    Holds the loss model, the optimizer, the aux-loss window counts and, for a model in nats,
    a held-out token stream. ``step`` updates the centroids in place and returns the step's
    measurements when asked to.
    """

    def __init__(
        self,
        scenario,
        spec: RouterSpec,
        dim: int,
        seed: np.random.SeedSequence,
        stream=None,
        extra_aux=None,
    ):
        # extra_aux(counts (E,), routed, T) -> (row (1, E), weights (E,)): more losses of the
        # aux form sum_j w_j P_j (DeepSeek-V2's device losses, engine/deployment.py).
        self.extra_aux = extra_aux
        self.enabled = bool(scenario.learning.enabled)
        self.steps = scenario.steps
        self.spec = spec
        self.learning = scenario.learning
        self.aux_terms = scenario.balance.aux.switch_terms()
        # Noisy top-K's importance and load weights (docs/model.md §5.5), 0 when off.
        shazeer = dict(scenario.balance.aux.shazeer_terms())
        self.importance_weight = shazeer.get("importance", 0.0)
        self.load_weight = shazeer.get("load", 0.0)
        self.global_aux = any(kind == "global" for kind, _ in self.aux_terms)
        self.z_loss = float(scenario.balance.aux.z_loss)
        self.seq_len = scenario.tokens.seq_len
        self.window = scenario.balance.bias.every
        n_experts = scenario.router.experts
        # Aux affinities: normalised sigmoid for sigmoid routers, else softmax over all experts.
        self.aux_score_code = SCORE_SIGMOID if spec.score_code == SCORE_SIGMOID else SCORE_SOFTMAX
        self.window_counts = np.zeros(n_experts, dtype=np.int64)
        self.window_tokens = 0
        self._chunk_gradients: np.ndarray | None = None  # kept between steps (reusable_zeros)
        self._chunk_noise_gradients: np.ndarray | None = None  # noisy top-K's W_noise
        self.eval_stream = None
        if not self.enabled:
            return
        model = REWARD_MODELS[self.learning.reward]
        self.reward = model.from_config(n_experts, dim, self.learning, np.random.default_rng(seed))
        self.optimizer = make_optimizer(self.learning, (n_experts, dim))
        # W_noise of noisy top-K learns with an optimizer (and moments) of its own.
        noisy = scenario.router.algorithm == "noisy_top_k"
        self.noise_optimizer = make_optimizer(self.learning, (n_experts, dim)) if noisy else None
        if hasattr(self.reward, "token_losses") and stream is not None:
            # Held-out tokens (docs/model.md §5.1): the same domains and weights, noise and
            # domain draws from a key of their own, so the router never learns from them. A
            # deep copy, so a random-walk drift advances its own state, not the training one's.
            (eval_seed,) = seed.spawn(1)
            self.eval_stream = copy.deepcopy(stream)
            self.eval_stream.key = np.uint64(eval_seed.generate_state(1, np.uint64)[0])

    @property
    def measures_held_out(self) -> bool:
        """Whether a recorded step measures the loss on a held-out batch."""
        return self.eval_stream is not None

    def held_out_tokens(self, step: int) -> np.ndarray:
        """The held-out batch (``learning.eval_tokens``, d) of step ``step``."""
        tokens, _ = token_stream.generate(self.eval_stream, step, self.learning.eval_tokens)
        return tokens

    def held_out_loss(self, centroids, bias, has_bias: bool, step: int, tokens=None) -> dict:
        """Loss in nats of the current router on a held-out batch (docs/model.md §5.1).

        ``eval_loss`` is the mean loss (nats above a perfectly served token; lower is better)
        and ``eval_regret`` the mean regret against each token's best single expert (nats), on
        ``learning.eval_tokens`` tokens the router never learns from, routed with the bias as in
        training and without capacity drops (evaluation drops nothing). ``tokens`` are the
        held-out batch as this layer sees it (the first layer's :meth:`held_out_tokens` carried
        along the token paths); the learner's own batch when omitted.
        """
        if tokens is None:
            tokens = self.held_out_tokens(step)
        logits = router_logits(tokens, centroids)
        routed = run_routing_step(logits, bias, has_bias, self.spec, NO_CAPACITY, 0)
        losses = self.reward.token_losses(
            tokens, routed.indices, routed.weights, routed.keep, self.spec.route_scale
        )
        oracle = self.reward.sensitivity - self.reward.best(tokens)
        return {"eval_loss": float(losses.mean()), "eval_regret": float((losses - oracle).mean())}

    def training_quality(self, tokens, routed, rewards) -> dict:
        """The reward model's quality on the training batch (``competence_affinity``)."""
        weight_sums = routed.weights.astype(np.float64).sum(axis=1)
        per_token = (routed.weights * rewards).sum(axis=1) / np.maximum(weight_sums, NORM_EPS)
        quality = float(per_token.mean())
        best = float(self.reward.best(tokens).mean())
        return {"quality": quality, "quality_ratio": quality / best if best > 0 else np.nan}

    def step(
        self,
        tokens,
        logits,
        routed,
        centroids,
        step: int,
        *,
        measure: bool,
        bias=None,
        held_out=None,
        gate=None,
    ):
        """One optimizer step on ``L = -R + L_aux + L_z``; updates ``centroids`` in place.

        ``bias`` is the expert bias of this step (None without one): the held-out batch
        (``held_out``, or the learner's own when None) is routed with it. ``gate`` is noisy
        top-K's :class:`~moesim.engine.router.NoisyGate` (None for the other algorithms): then
        ``routed`` was routed on its noisy logits, the importance and load losses join ``L``
        and its ``W_noise`` is updated too. Returns the step's measurements (empty unless
        ``measure``).
        """
        if not self.enabled:
            return {}
        measured = {}
        if measure and self.eval_stream is not None:
            # Before this step's update, like a validation pass between two steps.
            has_bias = bias is not None
            if not has_bias:
                bias = np.zeros(logits.shape[1], dtype=np.float32)
            measured = self.held_out_loss(centroids, bias, has_bias, step, held_out)
        rewards = self.reward.rewards(tokens, routed.indices, routed.keep)
        if measure and self.eval_stream is None:
            measured = self.training_quality(tokens, routed, rewards)
        coefficients = self._aux_coefficients(logits, step, measured if measure else None, routed)
        if gate is None:
            gradient, lse_sq = self._gradient(tokens, logits, routed, rewards, coefficients)
        else:
            gradient, noise_gradient, lse_sq = self._noisy_gradient(
                tokens, logits, routed, rewards, coefficients, gate, step, bias,
                measured if measure else None,
            )  # fmt: skip
            self._update(gate.weights, noise_gradient, step, self.noise_optimizer)
        self._update(centroids, gradient, step, self.optimizer)
        self.reward.observe(tokens, routed.indices, routed.keep, routed.kept)
        if measure and self.z_loss > 0:
            measured["z_loss"] = self.z_loss * lse_sq / logits.shape[0]
        return measured

    def _aux_coefficients(
        self, logits, step: int, measured: dict | None, routed=None
    ) -> np.ndarray:
        """Per-sequence aux coefficients of this step (empty without an aux loss); adds the aux
        loss's value to ``measured`` when given."""
        n_tokens, n_experts = logits.shape
        if not self.aux_terms and self.extra_aux is None:
            return np.empty((0, n_experts))
        n_sequences = -(-n_tokens // self.seq_len)
        counts = np.zeros((n_sequences, n_experts), dtype=np.int64)
        affinity_sums = np.zeros((n_sequences, n_experts))
        top_k = self.spec.top_k
        _aux_counts(logits, self.aux_score_code, top_k, self.seq_len, counts, affinity_sums)
        if self.global_aux:
            if step % self.window == 0:
                self.window_counts[:] = 0
                self.window_tokens = 0
            self.window_counts += counts.sum(axis=0)
            self.window_tokens += n_tokens
        coefficients, fractions = combined_aux_coefficients(
            self.aux_terms,
            top_k,
            counts,
            n_tokens,
            self.seq_len,
            self.window_counts,
            self.window_tokens,
        )
        extra_weights = None
        if self.extra_aux is not None:
            row, extra_weights = self.extra_aux(counts.sum(axis=0), routed, n_tokens)
            coefficients = row if coefficients is None else coefficients + row
        if measured is not None:
            total = 0.0
            for (kind, alpha), term_fractions in zip(self.aux_terms, fractions, strict=True):
                if kind == "sequence":
                    mean_affinity = affinity_sums / self.seq_len
                    loss = (term_fractions * mean_affinity).sum(axis=1).mean()
                else:
                    loss = (term_fractions[0] * affinity_sums.sum(axis=0) / n_tokens).sum()
                total += alpha * float(loss)
            if extra_weights is not None:
                total += float((extra_weights * affinity_sums.sum(axis=0)).sum() / n_tokens)
            measured["aux_loss"] = total
        return coefficients

    def _gradient(self, tokens, logits, routed, rewards, coefficients):
        """``dJ/dW`` (E, d) float64 of ``J = R - L_aux - L_z``, and the sum of squared
        log-sum-exps (the z-loss's value times the token count over beta)."""
        n_tokens, n_experts = logits.shape
        n_chunks = n_chunks_for(n_tokens)
        chunk_gradients = self._chunk_gradients = reusable_zeros(
            self._chunk_gradients, (n_chunks, n_experts, tokens.shape[1])
        )
        chunk_lse_sq = np.zeros(n_chunks)
        spec = self.spec
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
        return chunk_gradients.sum(axis=0), float(chunk_lse_sq.sum())

    def _noisy_gradient(
        self, tokens, logits, routed, rewards, coefficients, gate, step, bias, measured
    ):
        """``dJ/dW_g`` and ``dJ/dW_noise`` (E, d) float64 of noisy top-K (docs/model.md §5.5),
        with the importance and load losses, and the z-loss's sum of squared logsumexps. Adds
        the two losses' values to ``measured['aux_loss']`` when ``measured`` is a record's."""
        n_tokens, n_experts = logits.shape
        has_bias = bias is not None
        if not has_bias:
            bias = np.zeros(n_experts, dtype=logits.dtype)
        no_term = np.empty(0)
        importance_coefficients = load_coefficients = no_term
        if self.importance_weight > 0 or self.load_weight > 0:
            importance, load = balance_sums(
                gate.noisy, logits, gate.noise_logits, bias, has_bias, routed.indices
            )
            importance_loss, importance_coefficients = cv_squared_and_gradient(
                importance, self.importance_weight
            )
            load_loss, load_coefficients = cv_squared_and_gradient(load, self.load_weight)
            if self.importance_weight == 0:
                importance_coefficients = no_term
            if self.load_weight == 0:
                load_coefficients = no_term
            if measured is not None:
                measured["aux_loss"] = measured.get("aux_loss", 0.0) + importance_loss + load_loss
        n_chunks = n_chunks_for(n_tokens)
        shape = (n_chunks, n_experts, tokens.shape[1])
        chunk_gate = self._chunk_gradients = reusable_zeros(self._chunk_gradients, shape)
        chunk_noise = self._chunk_noise_gradients = reusable_zeros(
            self._chunk_noise_gradients, shape
        )
        chunk_lse_sq = np.zeros(n_chunks)
        _noisy_router_gradient(
            logits, gate.noisy, gate.noise_logits, tokens, routed.indices, rewards, gate.key,
            step, bias, has_bias, self.spec.route_scale, self.aux_score_code, coefficients,
            self.seq_len, self.z_loss, importance_coefficients, load_coefficients, chunk_gate,
            chunk_noise, chunk_lse_sq,
        )  # fmt: skip
        # Chunks are summed in a fixed order: the update does not depend on the thread count.
        return chunk_gate.sum(axis=0), chunk_noise.sum(axis=0), float(chunk_lse_sq.sum())

    def _update(self, centroids, gradient, step: int, optimizer) -> None:
        """One step of ``optimizer`` on ``centroids`` (W_g, or noisy top-K's W_noise) at this
        step's scheduled rate (docs/model.md §5.2)."""
        learning = self.learning
        rate = learning_rate_at(
            step,
            self.steps,
            learning.rate,
            learning.warmup_steps,
            learning.schedule,
            learning.rate_floor,
        )
        if learning.optimizer == "sgd":
            # Written out (not GradientDescent.update): bit-identical with moesim 0.1's runs.
            centroids += (rate * gradient).astype(np.float32)
        else:
            # The optimizers minimise: hand them dL/dW = -dJ/dW.
            optimizer.update(centroids, -gradient, rate)
