"""The learning router section (docs/model.md §5)."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from moesim.scenario.schema.base import _Section


class LearningConfig(_Section):
    """Router learning (docs/model.md §5); off = fixed router.

    The defaults are the calibrated model of docs/model.md §5.1-§5.3: the loss in nats of
    experts of finite capacity, AdamW with a warm-up and a cosine decay, and the two constants
    fitted on the Loss-Free paper (`rate`, `routing_sensitivity`). `reward: competence_affinity`
    with `optimizer: sgd`, `rate: 10`, `schedule: constant` and `warmup_steps: 0` is the model of
    moesim 0.1, bit for bit.
    """

    enabled: bool = Field(False, description="Train the router centroids.")
    rate: float = Field(
        3e-4,
        ge=0,
        le=1e6,
        description="Peak learning rate of the centroids, per step (fitted on Loss-Free "
        "Table 2, bias u=1e-3 -> MaxVio_global 0.04: docs/model.md §5.3).",
    )
    reward: Literal["capacity_nats", "competence_affinity"] = Field(
        "capacity_nats",
        description="What the router learns from (moesim.kernels.rewards.REWARD_MODELS): "
        "capacity_nats = the loss in nats of the routed mixture, experts of finite capacity, "
        "measured on held-out tokens (docs/model.md §5.1); competence_affinity = moesim 0.1's "
        "unitless reward, competence (rich get richer) x affinity to the expert's specialty.",
    )
    optimizer: Literal["adamw", "sgd"] = Field(
        "adamw",
        description="Router optimizer (docs/model.md §5.2): adamw = AdamW with `adam_*`, "
        "`weight_decay` and the `schedule`; sgd = a plain gradient step of size `rate`.",
    )
    schedule: Literal["cosine", "constant"] = Field(
        "cosine",
        description="Learning rate after the linear warm-up: cosine decay to `rate_floor` x "
        "`rate` at the last step, or constant.",
    )
    warmup_steps: int = Field(
        50, ge=0, le=100_000_000, description="Linear learning-rate warm-up, in steps (0: none)."
    )
    rate_floor: float = Field(
        0.1, ge=0, le=1, description="Cosine schedule: final rate as a fraction of `rate`."
    )
    adam_beta1: float = Field(0.9, ge=0, lt=1, description="AdamW first-moment decay.")
    adam_beta2: float = Field(0.95, ge=0, lt=1, description="AdamW second-moment decay.")
    adam_eps: float = Field(1e-8, gt=0, le=1, description="AdamW denominator guard.")
    weight_decay: float = Field(
        0.1, ge=0, le=10, description="AdamW decoupled weight decay (times the current rate)."
    )
    routing_sensitivity: float = Field(
        4e-3,
        gt=0,
        le=1e6,
        description="capacity_nats: D, nats of LM loss between a token served by perfectly "
        "matched experts and by experts that know nothing of it (fitted on Loss-Free Table 2, "
        "aux alpha=1e-3 -> MaxVio_global 0.72: docs/model.md §5.3).",
    )
    eval_tokens: int = Field(
        1024,
        ge=1,
        le=1 << 24,
        description="capacity_nats: held-out tokens per recorded step for the loss in nats.",
    )
    competence_tokens: float = Field(
        1e5, gt=0, le=1e12, description="tau: tokens for an expert to reach 63% competence."
    )
    knowledge_ema: float = Field(
        0.01, gt=0, le=1, description="rho: EMA rate of an expert's specialty direction."
    )
