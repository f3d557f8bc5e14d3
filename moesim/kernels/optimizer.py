"""Router optimizers (model.md 5.2): plain gradient steps or AdamW with a warm-up/cosine schedule.

The router is an (E, d) matrix, so the update is plain NumPy in float64: a few thousand
elementwise operations per step, far below the cost of the gradient kernel. Every operation is
elementwise on arrays whose values do not depend on the thread count, so the update is
deterministic and independent of ``NUMBA_NUM_THREADS``.

Sign convention: the optimizers *minimise*. The learner hands them ``gradient = dL/dW`` of the
loss it minimises (``L = -J`` for the reward-ascent form of model.md 5).
"""

from __future__ import annotations

import math

import numpy as np


def learning_rate_at(
    step: int,
    total_steps: int,
    peak: float,
    warmup_steps: int,
    schedule: str,
    floor_fraction: float,
) -> float:
    """Learning rate of optimizer step ``step`` (0-based) of a run of ``total_steps``.

    Parameters
    ----------
    step : int
        Index of the update being made, 0-based.
    total_steps : int
        Updates in the whole run (the cosine reaches its floor at the last one).
    peak : float
        Learning rate after warm-up (per update, in the router's parameter units).
    warmup_steps : int
        Linear warm-up from ``peak / warmup_steps`` to ``peak`` over these updates (0: none).
    schedule : {"constant", "cosine"}
        After warm-up: constant, or cosine decay from ``peak`` to ``floor_fraction * peak``.
    floor_fraction : float
        Final learning rate as a fraction of ``peak`` (cosine only).

    Returns
    -------
    float
        The learning rate for this update.
    """
    if warmup_steps > 0 and step < warmup_steps:
        # (step + 1) so the first update is not a no-op, as in the usual linear warm-up.
        return peak * (step + 1) / warmup_steps
    if schedule == "constant":
        return peak
    decay_steps = max(1, total_steps - warmup_steps - 1)
    progress = min(1.0, max(0.0, (step - warmup_steps) / decay_steps))
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return peak * (floor_fraction + (1.0 - floor_fraction) * cosine)


class GradientDescent:
    """``W -= rate * dL/dW`` (the historical rule of model.md 5, written as descent on -J)."""

    def __init__(self, shape: tuple[int, ...]):
        self.shape = tuple(shape)

    def update(self, parameters: np.ndarray, gradient: np.ndarray, rate: float) -> None:
        """Update ``parameters`` (E, d, any float dtype) in place from ``gradient`` (E, d)."""
        parameters += (-rate * gradient).astype(parameters.dtype)


class AdamW:
    """AdamW (Loshchilov & Hutter) with decoupled weight decay, as PyTorch's ``AdamW``.

    ``m = b1 m + (1 - b1) g``, ``v = b2 v + (1 - b2) g^2``, bias-corrected ``m_hat, v_hat``;
    ``W -= rate * (m_hat / (sqrt(v_hat) + eps) + weight_decay * W)``. The decay multiplies the
    current rate (PyTorch semantics), so the schedule scales it too.

    The moments are float64 master state; ``parameters`` may be float32 (the router's dtype), in
    which case the step is computed in float64 and rounded once.
    """

    def __init__(
        self,
        shape: tuple[int, ...],
        beta1: float = 0.9,
        beta2: float = 0.95,
        eps: float = 1e-8,
        weight_decay: float = 0.1,
    ):
        self.beta1 = float(beta1)
        self.beta2 = float(beta2)
        self.eps = float(eps)
        self.weight_decay = float(weight_decay)
        self.first_moment = np.zeros(shape, dtype=np.float64)
        self.second_moment = np.zeros(shape, dtype=np.float64)
        self.steps_taken = 0

    def update(self, parameters: np.ndarray, gradient: np.ndarray, rate: float) -> None:
        """One AdamW step on ``parameters`` (E, d) in place; ``gradient`` is dL/dW (E, d)."""
        gradient = np.asarray(gradient, dtype=np.float64)
        self.steps_taken += 1
        self.first_moment *= self.beta1
        self.first_moment += (1.0 - self.beta1) * gradient
        self.second_moment *= self.beta2
        self.second_moment += (1.0 - self.beta2) * gradient * gradient
        first_hat = self.first_moment / (1.0 - self.beta1**self.steps_taken)
        second_hat = self.second_moment / (1.0 - self.beta2**self.steps_taken)
        current = parameters.astype(np.float64)
        step = first_hat / (np.sqrt(second_hat) + self.eps) + self.weight_decay * current
        parameters[...] = (current - rate * step).astype(parameters.dtype)


def make_optimizer(learning, shape: tuple[int, ...]):
    """The optimizer ``learning.optimizer`` names, for parameters of ``shape``."""
    if learning.optimizer == "adamw":
        return AdamW(
            shape,
            beta1=learning.adam_beta1,
            beta2=learning.adam_beta2,
            eps=learning.adam_eps,
            weight_decay=learning.weight_decay,
        )
    return GradientDescent(shape)


def reference_adamw(parameters, gradients, rates, beta1, beta2, eps, weight_decay):
    """NumPy twin of :class:`AdamW` written as the textbook loop over steps, for tests.

    Parameters
    ----------
    parameters : ndarray (E, d) float64
        Initial parameters.
    gradients : sequence of ndarray (E, d)
        ``dL/dW`` at each step (taken as given, not recomputed).
    rates : sequence of float
        Learning rate of each step.

    Returns
    -------
    ndarray (E, d) float64
        Parameters after all steps.
    """
    w = np.array(parameters, dtype=np.float64)
    m = np.zeros_like(w)
    v = np.zeros_like(w)
    for t, (g, lr) in enumerate(zip(gradients, rates, strict=True), start=1):
        w = w - lr * weight_decay * w
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        w = w - lr * m_hat / (np.sqrt(v_hat) + eps)
    return w
